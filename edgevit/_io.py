"""Atomic writes: a file or a folder appears complete or not at all, and nothing is replaced unasked."""

from __future__ import annotations

import contextlib
import hashlib
import os
import re
import shutil
import tempfile
from pathlib import Path
from typing import Iterator

from edgevit.errors import OutputExistsError


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file, or of a folder (an .mlpackage): every file's relative path and bytes, in sorted order."""
    path = Path(path)
    h = hashlib.sha256()
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f_path in files:
        if path.is_dir():
            h.update(str(f_path.relative_to(path)).encode() + b"\0")
        with open(f_path, "rb") as f:
            while block := f.read(chunk):
                h.update(block)
    return h.hexdigest()


def path_bytes(path: str | os.PathLike) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def read_json(path: str | os.PathLike):
    """Parse a JSON file; a syntax error becomes a ConfigError naming the file."""
    import json

    from edgevit.errors import ConfigError

    try:
        return json.loads(Path(path).read_text())
    except json.JSONDecodeError as e:
        raise ConfigError(f"{path} is not valid JSON: {e}") from e


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def check_writable(dest: Path, overwrite: bool, what: str = "output", *, replaceable=None) -> None:
    """Refuse an existing ``dest`` unless ``overwrite``; with ``replaceable`` (a predicate), ``overwrite`` only
    replaces what it accepts, so a folder the user owns is never deleted by a typo in ``--out``."""
    if not dest.exists():
        return
    if not overwrite:
        raise OutputExistsError(f"{what} {dest} already exists; pass --overwrite (overwrite=True) to replace it, "
                                "or choose another path")
    if replaceable is not None and not replaceable(dest):
        raise OutputExistsError(f"{what} {dest} exists and is not an edgevit artifact folder (no edgevit "
                                "manifest.json in it), so --overwrite will not replace it: nothing was changed. "
                                "Choose another --out, or remove it yourself if you mean to")


def is_artifact_folder(path: Path) -> bool:
    """A folder ``edgevit convert`` wrote: it holds a manifest.json with our format_version and artifact keys."""
    manifest = path / "manifest.json"
    if not path.is_dir() or not manifest.is_file():
        return False
    try:
        import json

        data = json.loads(manifest.read_text())
    except (OSError, UnicodeDecodeError, ValueError):
        return False
    return isinstance(data, dict) and "format_version" in data and "artifact" in data


@contextlib.contextmanager
def atomic_file(dest: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield a temporary path beside ``dest``; on success it is renamed onto ``dest``, on failure removed."""
    dest = Path(dest)
    check_writable(dest, overwrite)
    dest.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent)
    os.close(fd)
    tmp = Path(tmp)
    try:
        yield tmp
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the file the usual permissions
        os.replace(tmp, dest)
    finally:
        if tmp.exists():
            tmp.unlink()


def _exchange(a: Path, b: Path) -> bool:
    """Atomically swap two paths (Linux renameat2 RENAME_EXCHANGE); False where the OS or file system cannot."""
    import ctypes
    import sys

    if not sys.platform.startswith("linux"):
        return False
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        renameat2 = libc.renameat2
    except (OSError, AttributeError):
        return False
    at_fdcwd, rename_exchange = -100, 2
    renameat2.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    return renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, owned by someone else
        return True
    return True


def clean_stale_staging(dest: Path) -> list[Path]:
    """Remove staging folders of ``dest`` left by runs that were killed (SIGKILL, power loss): their owner's pid no
    longer exists. Returns what was removed; a live run's folder is left alone."""
    import logging
    import re

    removed = []
    if not dest.parent.is_dir():
        return removed
    pattern = re.compile(rf"^\.{re.escape(dest.name)}\.(\d+)\.\w+\.(partial|old)$")
    for leftover in dest.parent.iterdir():
        m = pattern.match(leftover.name)
        if m and leftover.is_dir() and not _pid_alive(int(m.group(1))):
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover)
            logging.getLogger(__name__).warning("removed %s, left by an interrupted run (pid %s)", leftover,
                                                m.group(1))
    return removed


_TEMP = re.compile(r"^edgevit-[a-z0-9]+-(\d+)-\w+$")


def temp_dir(what: str) -> tempfile.TemporaryDirectory:
    """A private temporary folder ``TMPDIR/edgevit-<what>-<pid>-<random>``, removed when the ``with`` block ends.
    The pid in the name lets a later run remove what a killed run left (``clean_stale_temp``)."""
    return tempfile.TemporaryDirectory(prefix=f"edgevit-{what}-{os.getpid()}-")


def clean_stale_temp() -> list[Path]:
    """Remove the temporary folders (``temp_dir``) of edgevit runs that were killed: their pid no longer exists."""
    import logging

    removed = []
    try:
        root = Path(tempfile.gettempdir())
        entries = list(root.iterdir())
    except OSError:
        return removed
    for leftover in entries:
        m = _TEMP.match(leftover.name)
        if m and not _pid_alive(int(m.group(1))) and leftover.is_dir() and not leftover.is_symlink():
            shutil.rmtree(leftover, ignore_errors=True)
            removed.append(leftover)
            logging.getLogger(__name__).info("removed %s, left by a killed run (pid %s)", leftover, m.group(1))
    return removed


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike, *, overwrite: bool = False, replaceable=is_artifact_folder) -> Iterator[Path]:
    """Yield an empty staging folder beside ``dest``; on success it replaces ``dest``, on failure it is removed.

    An existing ``dest`` is replaced only with ``overwrite``, only if ``replaceable`` accepts it (by default: an
    edgevit artifact folder), and only once the new folder is complete. The checks run again at the swap, so a
    folder that appeared meanwhile is not replaced unasked; the swap itself is an atomic exchange where the OS
    offers one (Linux), so ``dest`` is the old or the new folder at every instant.
    """
    dest = Path(dest)
    check_writable(dest, overwrite, "output folder", replaceable=replaceable)
    if dest.exists() and not dest.is_dir():
        raise OutputExistsError(f"{dest} exists and is not a folder; choose another --out")
    dest.parent.mkdir(parents=True, exist_ok=True)
    clean_stale_staging(dest)
    # the owner's pid in the name lets a later run tell a killed run's leftovers from a live run's folder
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".partial", dir=dest.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())
        check_writable(dest, overwrite, "output folder", replaceable=replaceable)  # again: it may have appeared
        if not dest.exists():
            try:
                os.rename(staging, dest)  # fails rather than replace a folder created in between
            except OSError as e:
                raise OutputExistsError(f"output folder {dest} appeared while converting; nothing was replaced. "
                                        "Pass --overwrite to replace it, or choose another --out") from e
        elif _exchange(staging, dest):
            shutil.rmtree(staging, ignore_errors=True)  # now holds the old folder
        else:  # no atomic exchange here: a short window in which dest is missing
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.{os.getpid()}.", suffix=".old", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
            os.replace(staging, dest)
            shutil.rmtree(old, ignore_errors=True)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
