"""Atomic writes: a file or a folder appears complete or not at all, and nothing is replaced unasked."""

from __future__ import annotations

import contextlib
import hashlib
import os
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


def check_writable(dest: Path, overwrite: bool, what: str = "output") -> None:
    if dest.exists() and not overwrite:
        raise OutputExistsError(f"{what} {dest} already exists; pass --overwrite (overwrite=True) to replace it, "
                                "or choose another path")


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


@contextlib.contextmanager
def atomic_dir(dest: str | os.PathLike, *, overwrite: bool = False) -> Iterator[Path]:
    """Yield an empty staging folder beside ``dest``; on success it replaces ``dest``, on failure it is removed.

    An existing ``dest`` is replaced only with ``overwrite``, and only once the new folder is complete, so an
    interrupted run leaves the old folder as it was.
    """
    dest = Path(dest)
    check_writable(dest, overwrite, "output folder")
    if dest.exists() and not dest.is_dir():
        raise OutputExistsError(f"{dest} exists and is not a folder; choose another --out")
    dest.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".partial", dir=dest.parent))
    try:
        yield staging
        os.chmod(staging, 0o777 & ~_umask())
        if dest.exists():
            old = Path(tempfile.mkdtemp(prefix=f".{dest.name}.", suffix=".old", dir=dest.parent))
            os.rmdir(old)
            os.replace(dest, old)
            os.replace(staging, dest)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, dest)
    finally:
        if staging.exists():
            shutil.rmtree(staging, ignore_errors=True)
