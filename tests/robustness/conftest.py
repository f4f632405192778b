"""The robustness suite drives the real CLI in a subprocess, as a user or an attacker would, on the shipped model.

Every test asserts the exit code the README promises, a message that names the problem, and no traceback: an
exit-1 path reachable with input is a bug."""

import hashlib
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def cli(*args, cwd=None, timeout=300, env=None) -> subprocess.CompletedProcess:
    environ = {**os.environ, "PYTHONPATH": str(REPO), **(env or {})}
    return subprocess.run([sys.executable, "-m", "edgevit", *map(str, args)], capture_output=True, text=True,
                          cwd=cwd, timeout=timeout, env=environ)


def expect(r: subprocess.CompletedProcess, code: int, *needles: str) -> None:
    """Exit ``code``, each needle in stderr (case-insensitive), no traceback anywhere."""
    out = r.stdout + r.stderr
    assert "Traceback" not in out, out[-3000:]
    assert r.returncode != 1, f"exit 1 is a bug: {out[-3000:]}"
    assert r.returncode == code, f"exit {r.returncode}, expected {code}: {out[-3000:]}"
    for needle in needles:
        assert needle.lower() in r.stderr.lower(), f"{needle!r} not in: {r.stderr[-3000:]}"


def tree_digest(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def staging_leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir() if p.name.endswith((".partial", ".old")))


@pytest.fixture(scope="session")
def reference(artifacts) -> Path:
    """One real CLI conversion of the shipped model (ORT Mobile at opset 20: a non-default opset, and the format
    whose bytes used to differ between runs), made once per test run (tests/artifacts.py). Tests copy it; none
    changes it."""
    return artifacts.cli("--model", "nextvit_digits", "--target", "ort", "--opset", "20")


@pytest.fixture
def artifact(reference, tmp_path) -> Path:
    """A private copy of the reference artifact."""
    dest = tmp_path / "art"
    shutil.copytree(reference, dest)
    return dest
