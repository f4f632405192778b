"""One error hierarchy for edgevit.

Every error says what failed, where, and how to fix it. Each class carries the process exit code the CLI maps it
to, and ``EXIT_CODES`` below is the one table of what each code means: the CLI's ``--help`` epilog is made from it
and ``tests/test_cli.py`` checks README's table against it, row for row, both ways.
"""

from __future__ import annotations

# (code, meaning): the one exit-code table (module docstring)
EXIT_CODES: tuple[tuple[int, str], ...] = (
    (0, "success"),
    (1, "internal error (a bug: please report it)"),
    (2, "bad option, recipe, model name, target or precision"),
    (3, "parity failure: the artifact's outputs differ from PyTorch beyond tolerance; or the artifact folder was "
        "changed after conversion (integrity)"),
    (4, "checkpoint cannot be read, is unsafe, holds non-finite values, or does not match the model"),
    (5, "an optional toolchain is not installed"),
    (6, "a toolchain failed to export or lower the model"),
    (7, "output exists and `--overwrite` was not given, or it is not an edgevit artifact folder"),
    (8, "no space left on the device (disk full or quota) while writing: nothing partial was kept"),
    (130, "interrupted (Ctrl-C or SIGTERM): nothing partial was kept"),
)


def exit_codes_help() -> str:
    """The table as the CLI's help epilog prints it."""
    return "exit codes:\n" + "".join(f"  {code:<3}  {meaning.replace('`', '')}\n" for code, meaning in EXIT_CODES)


class EdgeVitError(Exception):
    """Base of every error edgevit raises on purpose."""

    exit_code = 1


class ConfigError(EdgeVitError, ValueError):
    """An option, recipe, model name, target or precision is invalid."""

    exit_code = 2


class ParityError(EdgeVitError):
    """An artifact's outputs differ from the PyTorch reference beyond the tolerance table."""

    exit_code = 3


class IntegrityError(EdgeVitError):
    """An artifact folder no longer matches its manifest (a file changed, missing, or the manifest edited)."""

    exit_code = 3


class CheckpointError(EdgeVitError):
    """A weights file cannot be read or does not fit the model."""

    exit_code = 4


class UnsafeCheckpointError(CheckpointError):
    """A checkpoint holds pickled objects beyond plain tensors; it was not executed."""


class CheckpointMismatchError(CheckpointError):
    """A checkpoint's keys or shapes do not match the model."""

    def __init__(self, message: str, *, layout: str, missing: list[str], unexpected: list[str],
                 mismatched: list[tuple[str, tuple, tuple]]):
        super().__init__(message)
        self.layout = layout
        self.missing = missing
        self.unexpected = unexpected
        self.mismatched = mismatched


class MissingDependencyError(EdgeVitError, ImportError):
    """An optional toolchain is missing; the message names the extra to install."""

    exit_code = 5


class ExportError(EdgeVitError):
    """A toolchain failed to export, lower or serialize the model."""

    exit_code = 6


class OutputExistsError(EdgeVitError, FileExistsError):
    """The output location exists and overwriting was not requested."""

    exit_code = 7


class NoSpaceError(EdgeVitError, OSError):
    """The disk (or the user's quota) filled up while edgevit wrote an output or a temporary file."""

    exit_code = 8


def no_space(error: BaseException) -> OSError | None:
    """The "no space left" (ENOSPC, EDQUOT) error behind ``error``, following its causes, else None: a toolchain
    that fills the disk raises its own error with the OSError as its cause or context."""
    import errno

    seen = set()
    while error is not None and id(error) not in seen:
        seen.add(id(error))
        if isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT):
            return error
        error = error.__cause__ or error.__context__
    return None


class ModelInputError(EdgeVitError, ValueError):
    """An input tensor has a shape the model cannot take."""

    exit_code = 2
