"""The Android demo's Linux checks (android_demo/ci/check.sh): aapt2 link, Kotlin compile against the real
ExecuTorch and ONNX Runtime Java APIs, stand-ins checked against the Android API, ktlint, JVM core tests.

Tools come from npm and Debian on first use; in CI a missing tool fails the test, it is never skipped."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]


def test_android_demo_checks():
    for tool in ("java", "javac", "npm"):
        if shutil.which(tool) is None:
            if os.environ.get("CI"):
                pytest.fail(f"{tool} is missing in CI")
            pytest.skip(f"{tool} is not installed here")
    r = subprocess.run(["bash", str(REPO / "android_demo/ci/check.sh")], capture_output=True, text=True,
                       timeout=1500, env={**os.environ, "PYTHON": os.environ.get("PYTHON", str(REPO / ".venv/bin/python"))})
    out = r.stdout + r.stderr
    assert r.returncode == 0, out[-6000:]
    assert "stand-ins: " in out and ", 0 failed" in out.split("stand-ins: ")[1].splitlines()[0]
    assert "compiled " in out and "core: " in out
    core = out.split("core: ")[1].splitlines()[0]
    assert core.endswith(" 0 failed") and int(core.split()[0]) >= 12


def test_fixture_matches_what_convert_writes_today(tmp_path):
    """The committed app fixture must be what `edgevit convert` produces now (same keys, same golden input)."""
    import json

    from edgevit.config import ConvertConfig
    from edgevit.pipeline import convert

    result = convert(ConvertConfig(model="nextvit_digits", target="executorch", out=str(tmp_path / "fx")))
    fixture = REPO / "tests/data/app_fixture/digits_xnnpack"
    committed = json.loads((fixture / "manifest.json").read_text())
    assert set(committed) == set(result.manifest)
    assert committed["input"] == result.manifest["input"] and committed["preprocess"] == result.manifest["preprocess"]
    assert (fixture / "golden/input.bin").read_bytes() == (result.out_dir / "golden/input.bin").read_bytes()
    assert (fixture / "golden/image.png").read_bytes() == (result.out_dir / "golden/image.png").read_bytes()
