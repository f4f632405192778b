"""One error hierarchy for edgevit.

Every error says what failed, where, and how to fix it. Each class carries the process exit code the CLI
maps it to, so the code table lives here and nowhere else:

====  ==========================  ===========================================================
code  class                       meaning
====  ==========================  ===========================================================
0     -                           success
1     (any other exception)       internal error: a bug, please report it
2     ConfigError                 bad option, recipe, model name, target or precision
3     ParityError                 an artifact's outputs differ from PyTorch beyond tolerance
4     CheckpointError             a weights file cannot be read, is unsafe, or does not match
5     MissingDependencyError      an optional toolchain is not installed
6     ExportError                 a toolchain failed to export or lower the model
7     OutputExistsError           the output folder exists and --overwrite was not given
====  ==========================  ===========================================================
"""

from __future__ import annotations


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


class ModelInputError(EdgeVitError, ValueError):
    """An input tensor has a shape the model cannot take."""

    exit_code = 2
