"""The Android demo's Linux checks (android_demo/ci/check.sh): aapt2 link, Kotlin compile against the real
ExecuTorch and ONNX Runtime Java APIs, stand-ins checked against the Android API, ktlint, JVM core tests.

Tools come from npm and Debian on first use; in CI a missing tool fails the test, it is never skipped."""

import os
import shutil
import subprocess
import sys
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
    assert "litert stand-ins: " in out and ", 0 failed" in out.split("litert stand-ins: ")[1].splitlines()[0]
    assert "compiled " in out and "core: " in out
    core = out.split("core: ")[1].splitlines()[0]
    assert core.endswith(" 0 failed") and int(core.split()[0]) >= 12


def test_the_litert_api_check_rejects_a_member_the_real_api_lacks(tmp_path):
    """The LiteRT stand-ins are only as good as their check: a stand-in method LiteRT's Java API does not have
    (here a made-up Options.setUseGpu) must fail it, by name."""
    if shutil.which("javac") is None:
        if os.environ.get("CI"):
            pytest.fail("javac is missing in CI")
        pytest.skip("javac is not installed here")
    src = tmp_path / "src/org/tensorflow/lite"
    src.mkdir(parents=True)
    (src / "Interpreter.java").write_text(
        "package org.tensorflow.lite;\n"
        "public final class Interpreter {\n"
        "  private Interpreter() { }\n"
        "  public static class Options {\n"
        "    public Options() { }\n"
        "    public Options setNumThreads(int n) { return this; }\n"
        "    public Options setUseGpu(boolean on) { return this; }\n"
        "  }\n"
        "}\n")
    subprocess.run(["javac", "-d", str(tmp_path / "classes"), str(src / "Interpreter.java")], check=True)
    r = subprocess.run([sys.executable, str(REPO / "android_demo/ci/check_litert_api.py"), str(tmp_path / "classes")],
                       capture_output=True, text=True)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "org.tensorflow.lite.Interpreter$Options: org.tensorflow.lite.Interpreter$Options setUseGpu(boolean)" \
        in r.stdout
    assert "3 members checked, 1 failed" in r.stdout


def test_fixture_matches_what_convert_writes_today(artifacts):
    """The committed app fixture must be what `edgevit convert` produces now (same keys, same golden input); the
    run's shared conversion of the shipped model to ExecuTorch fp32 (tests/artifacts.py) is what it writes today."""
    import json

    from edgevit.manifest import read_manifest

    folder = artifacts.reference("executorch", "xnnpack")
    today = read_manifest(folder)
    fixture = REPO / "tests/data/app_fixture/digits_xnnpack"
    committed = json.loads((fixture / "manifest.json").read_text())
    assert set(committed) == set(today)
    assert committed["input"] == today["input"] and committed["preprocess"] == today["preprocess"]
    assert (fixture / "golden/input.bin").read_bytes() == (folder / "golden/input.bin").read_bytes()
    assert (fixture / "golden/image.png").read_bytes() == (folder / "golden/image.png").read_bytes()
