"""Artifacts built once per test run: each conversion (model, target, precision and every other option) is made
by the first test that asks for it, on whichever xdist worker that test runs, and read by every later test.

The key is the whole set of options the test passes, written out: two tests share an artifact only when they ask
for exactly the same conversion, and a test cannot get one made with other options. The shared folder is for
reading; a test that tampers with an artifact asks for its own copy (``copy``). Since CI runs as root, file
permissions cannot enforce that, so every hand-out first checks the folder's bytes against what the conversion
wrote, and a test that changed a shared artifact fails the next test that asks for it, naming both.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

from filelock import FileLock

from edgevit._io import sha256_file

REFERENCE = "nextvit_digits"
REPO = Path(__file__).resolve().parents[1]
# the reference conversion of every (target, delegate, precision) as the README's table promises it: the shipped
# model, accuracy measured on 150 held-out pictures, the iOS version each CoreML scheme needs (coreml_quant.check)
MIN_IOS = {"int8": 17, "pal4": 18}


class Artifacts:
    """``get(**options)`` -> the folder of ``convert(ConvertConfig(**options))``, made once per run."""

    def __init__(self, root: Path):
        self.root = root
        root.mkdir(parents=True, exist_ok=True)

    def get(self, **options) -> Path:
        return self._once({"api": options}, lambda out: self._convert(options, out))

    def cli(self, *args: str) -> Path:
        """The folder of ``edgevit convert ARGS --out FOLDER`` run as a user would (a child process)."""
        args = tuple(map(str, args))
        return self._once({"cli": list(args)}, lambda out: self._run_cli(args, out))

    def reference(self, target: str, delegate: str | None = None, precision: str = "fp32") -> Path:
        """The shipped reference model converted to one README combination (tests/targets/test_matrix.py)."""
        return self.get(**self.reference_options(target, delegate, precision))

    @staticmethod
    def reference_options(target: str, delegate: str | None = None, precision: str = "fp32") -> dict:
        kw = {"min_ios": MIN_IOS.get(precision, 16)} if "coreml" in (target, delegate) else {}
        return {"model": REFERENCE, "target": target, "delegate": delegate, "precision": precision,
                "eval_count": 150, **kw}

    def copy(self, dest: Path, folder: Path) -> Path:
        """A private, writable copy of a shared artifact, for a test that changes it."""
        shutil.copytree(folder, dest, symlinks=True)
        return dest

    def _once(self, key: dict, make) -> Path:
        text = json.dumps(key, sort_keys=True, default=str)
        slot = self.root / hashlib.sha256(text.encode()).hexdigest()[:16]
        out, record = slot / "artifact", slot / "made.json"
        with FileLock(str(slot) + ".lock"):
            if not record.exists():
                shutil.rmtree(slot, ignore_errors=True)
                slot.mkdir()
                make(out)
                record.write_text(json.dumps({"key": key, "tree": sha256_file(out), "by": _test_name()}, default=str))
            made = json.loads(record.read_text())
            if json.dumps(made["key"], sort_keys=True, default=str) != text:
                raise AssertionError(f"shared artifact {slot.name}: made for {made['key']}, asked for {key}")
            if sha256_file(out) != made["tree"]:
                raise AssertionError(f"the shared artifact {key} made by {made['by']} was changed by a test that ran "
                                     f"before {_test_name()}; a test that changes an artifact must use "
                                     f"artifacts.copy(tmp_path / ..., folder)")
        return out

    @staticmethod
    def _convert(options: dict, out: Path) -> None:
        from edgevit.config import ConvertConfig
        from edgevit.pipeline import convert

        convert(ConvertConfig(**options, out=str(out)))

    @staticmethod
    def _run_cli(args: tuple[str, ...], out: Path) -> None:
        env = {**os.environ, "PYTHONPATH": str(REPO)}
        r = subprocess.run([sys.executable, "-m", "edgevit", "convert", *args, "--out", str(out)],
                           capture_output=True, text=True, env=env, timeout=600)
        if r.returncode != 0:
            raise AssertionError(f"edgevit convert {' '.join(args)} exited {r.returncode}: {r.stderr[-3000:]}")


def _test_name() -> str:
    return os.environ.get("PYTEST_CURRENT_TEST", "?").rsplit(" ", 1)[0]
