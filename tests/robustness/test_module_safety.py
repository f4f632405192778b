"""An artifact folder is data (issue 32): opening one never imports code. A whole model converted from a user
module (``--module FILE.py:FACTORY``) is rebuilt only from the module the user passes again on the command line,
which must hash to what the manifest sealed; the path the manifest names is never imported."""

from __future__ import annotations

import json
import shutil

import pytest

from tests.robustness.conftest import REPO, cli, expect

EXAMPLE = REPO / "examples" / "detector" / "detector.py"
IMAGES = REPO / "edgevit" / "assets" / "digits" / "eval" / "3"
# the commands that rebuild a whole model's PyTorch reference from its user module
REBUILDING_COMMANDS = [["verify", "--images", IMAGES], ["drift"], ["evaluate", "--inline", "--images", IMAGES]]
EVIL = """from pathlib import Path
Path(__file__).with_name("RAN").write_text("code from the artifact folder ran")
def build_tiny():
    raise SystemExit(0)
"""


@pytest.fixture(scope="module")
def detector_artifact(artifacts):
    return artifacts.cli("--model", "nextvit_test_tiny", "--module", f"{EXAMPLE}:build_tiny", "--random-init",
                         "--img-size", "96x160", "--target", "onnx")


def _copy(src, tmp_path):
    dest = tmp_path / "art"
    shutil.copytree(src, dest)
    return dest


def test_the_module_is_sealed_with_its_hash(detector_artifact):
    import hashlib

    m = json.loads((detector_artifact / "manifest.json").read_text())
    assert m["source"]["module_sha256"] == hashlib.sha256(EXAMPLE.read_bytes()).hexdigest()
    assert "source" in m["integrity"]["sealed_keys"]


@pytest.mark.parametrize("command", REBUILDING_COMMANDS)
def test_commands_that_rebuild_the_reference_need_module_on_the_command_line(detector_artifact, tmp_path, command):
    art = _copy(detector_artifact, tmp_path)
    args = [command[0], art, *command[1:]]
    expect(cli(*args), 2, "--module", "never imports")
    if command[0] == "verify":  # with the module the artifact was made from, it runs (drift and evaluate take the
        expect(cli(*args, "--module", f"{EXAMPLE}:build_tiny"), 0)  # same path: tests/models/test_user_module.py)


@pytest.mark.parametrize("command", REBUILDING_COMMANDS)
def test_a_manifest_pointing_at_code_in_the_folder_never_runs_it(detector_artifact, tmp_path, command):
    art = _copy(detector_artifact, tmp_path)
    (art / "evil.py").write_text(EVIL)
    m = json.loads((art / "manifest.json").read_text())
    m["source"]["module"] = f"{art / 'evil.py'}:build_tiny"
    (art / "manifest.json").write_text(json.dumps(m, indent=2))
    r = cli(command[0], art, *command[1:])
    assert r.returncode in (2, 3), r.stderr[-2000:]
    assert not (art / "RAN").exists()
    # a plain verify (golden pair only) reports the edit too: the source is sealed
    r = cli("verify", art)
    assert r.returncode == 3 and "edited after conversion" in r.stdout + r.stderr, r.stdout[-2000:]
    assert not (art / "RAN").exists()


def test_a_different_module_than_the_sealed_one_is_refused(detector_artifact, tmp_path):
    art = _copy(detector_artifact, tmp_path)
    other = tmp_path / "detector.py"
    other.write_text(EXAMPLE.read_text() + "\n# changed\n")
    expect(cli("verify", art, "--images", IMAGES, "--module", f"{other}:build_tiny"), 3, "module_sha256")


def test_module_on_an_artifact_without_one_is_refused(artifact):
    expect(cli("verify", artifact, "--images", IMAGES, "--module", f"{EXAMPLE}:build_tiny"), 2,
           "not converted from a user module")
