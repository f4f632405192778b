"""Atomic output folders: nothing the user owns is replaced, and the swap leaves the old or the new folder."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from edgevit._io import _exchange, atomic_dir, is_artifact_folder
from edgevit.cli import main
from edgevit.errors import OutputExistsError


def _artifact_folder(path: Path, marker: str) -> Path:
    path.mkdir(parents=True)
    (path / "manifest.json").write_text(json.dumps({"format_version": 1, "artifact": "model.onnx"}))
    (path / "marker.txt").write_text(marker)
    return path


def test_overwrite_refuses_a_folder_that_is_not_an_artifact_folder(tmp_path, capsys, monkeypatch):
    """--out pointed at a source tree by mistake: --overwrite must not delete it (it used to), and the refusal comes
    before any model is built."""
    import edgevit.pipeline as pipeline

    monkeypatch.setattr(pipeline, "build_model", lambda **k: (_ for _ in ()).throw(AssertionError("built")))
    project = tmp_path / "project"
    (project / "src").mkdir(parents=True)
    (project / "src" / "main.py").write_text("print('mine')\n")
    code = main(["convert", "--model", "nextvit_test_tiny", "--random-init", "--target", "onnx", "--out",
                 str(project), "--overwrite"])
    err = capsys.readouterr().err
    assert code == 7 and "not an edgevit artifact folder" in err and "nothing was changed" in err
    assert (project / "src" / "main.py").read_text() == "print('mine')\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["project"]  # no staging folder left


def test_is_artifact_folder(tmp_path):
    assert is_artifact_folder(_artifact_folder(tmp_path / "a", "x"))
    (tmp_path / "b").mkdir()
    (tmp_path / "b" / "manifest.json").write_text("{not json")
    assert not is_artifact_folder(tmp_path / "b")
    (tmp_path / "c").mkdir()
    (tmp_path / "c" / "manifest.json").write_text(json.dumps({"name": "some other tool"}))
    assert not is_artifact_folder(tmp_path / "c") and not is_artifact_folder(tmp_path / "missing")


def test_a_folder_that_appears_during_the_run_is_not_replaced(tmp_path):
    dest = tmp_path / "out"
    with pytest.raises(OutputExistsError, match="appeared|already exists"):
        with atomic_dir(dest) as staging:
            (staging / "new.txt").write_text("new")
            _artifact_folder(dest, "someone else's")  # created while "converting", no --overwrite
    assert (dest / "marker.txt").read_text() == "someone else's"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_overwrite_swaps_in_the_new_folder_and_leaves_nothing_behind(tmp_path):
    dest = _artifact_folder(tmp_path / "out", "old")
    with atomic_dir(dest, overwrite=True) as staging:
        (staging / "manifest.json").write_text(json.dumps({"format_version": 1, "artifact": "model.pte"}))
        (staging / "marker.txt").write_text("new")
    assert (dest / "marker.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_exchange_swaps_two_folders_atomically_on_linux(tmp_path):
    a = _artifact_folder(tmp_path / "a", "A")
    b = _artifact_folder(tmp_path / "b", "B")
    if not _exchange(a, b):
        pytest.skip("this file system has no renameat2 RENAME_EXCHANGE; atomic_dir falls back to two renames")
    assert (a / "marker.txt").read_text() == "B" and (b / "marker.txt").read_text() == "A"


def test_leftovers_of_killed_runs_are_removed_and_live_ones_kept(tmp_path):
    from edgevit._io import clean_stale_staging

    dest = tmp_path / "out"
    dead = tmp_path / ".out.999999999.abc123.partial"  # no such pid
    live = tmp_path / f".out.{1}.def456.partial"  # pid 1 always exists
    other = tmp_path / ".another.999999999.abc.partial"
    for d in (dead, live, other):
        d.mkdir()
    assert clean_stale_staging(dest) == [dead]
    assert not dead.exists() and live.exists() and other.exists()


_KILLED = """
import os, signal, sys
from edgevit._io import temp_dir
held = temp_dir("probe")  # never cleaned up: the process dies first
folder = held.name
open(os.path.join(folder, "half-written"), "w").write("x")
print(folder, flush=True)
os.kill(os.getpid(), signal.SIGKILL)
"""


def test_temporary_folders_of_killed_runs_are_removed_by_the_next_command(tmp_path, monkeypatch):
    """Issue 32: SIGKILL left TMPDIR/edgevit-ort* folders behind. A child makes its temporary folder and is killed;
    the next edgevit command removes it, and leaves a live process's folder (this one's) alone."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "TMPDIR": str(tmp_path), "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    child = subprocess.run([sys.executable, "-c", _KILLED], env=env, capture_output=True, text=True, timeout=120)
    assert child.returncode == -9
    left = Path(child.stdout.strip())
    assert left.parent == tmp_path and left.is_dir()
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setattr("tempfile.tempdir", None)  # tempfile caches the folder it chose: choose again from TMPDIR
    from edgevit._io import temp_dir

    with temp_dir("live") as live:
        assert main(["models"]) == 0
        assert not left.exists() and Path(live).is_dir()
