"""Regenerate tests/data/app_fixture: the manifest and golden files of the shipped model converted for each app
engine (the artifacts themselves are not kept). tests/apps checks that the fixture is what convert writes today.

    .venv/bin/python tools/make_app_fixture.py
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
FIXTURE = REPO / "tests/data/app_fixture"
FOLDERS = {"digits_xnnpack": {"target": "executorch"}, "digits_coreml": {"target": "coreml"},
           "digits_litert_nhwc": {"target": "litert", "layout": "nhwc"}}


def main() -> int:
    from edgevit.config import ConvertConfig
    from edgevit.pipeline import convert

    with tempfile.TemporaryDirectory() as tmp:
        for name, kw in FOLDERS.items():
            result = convert(ConvertConfig(model="nextvit_digits", out=str(Path(tmp) / name), **kw))
            dest = FIXTURE / name
            shutil.rmtree(dest, ignore_errors=True)
            dest.mkdir(parents=True)
            shutil.copy(result.out_dir / "manifest.json", dest / "manifest.json")
            shutil.copytree(result.out_dir / "golden", dest / "golden")
            print(f"wrote {dest}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
