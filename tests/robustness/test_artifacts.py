"""Principles 2, 3, 5 and 6 through the CLI on a real artifact: --overwrite replaces only an artifact folder,
--opset is what the file carries, a tampered artifact fails verify with exit 3 (and every other command that reads a
folder refuses it), and a second conversion writes the same bytes."""

import json
from pathlib import Path

import pytest

from tests.robustness.conftest import cli, expect, staging_leftovers, tree_digest


def test_opset_is_read_back_from_the_file(reference, tmp_path):
    manifest = json.loads((reference / "manifest.json").read_text())
    # read back from the ONNX file the .ort was converted from (the default is 18)
    assert manifest["ort"]["opset"] == 20


def test_overwrite_replaces_an_artifact_and_writes_the_same_bytes(reference, artifact, tmp_path):
    before = tree_digest(artifact)
    (artifact / "model.ort").write_bytes(b"stale")  # something the new run must replace
    r = cli("convert", "--model", "nextvit_digits", "--target", "ort", "--opset", "20", "--overwrite",
            "--out", artifact)
    expect(r, 0)
    after = tree_digest(artifact)
    # byte-identical to the reference converted into another folder, manifest apart (it records timings)
    assert {k: v for k, v in after.items() if k != "manifest.json"} == \
        {k: v for k, v in before.items() if k != "manifest.json"}
    assert staging_leftovers(artifact.parent) == []


TAMPER = {  # case: (change, words the message must contain)
    "edited input shape": (lambda d: _edit_manifest(d, lambda m: m["input"].__setitem__("shape", [1, 3, 96, 96])),
                           "integrity"),
    "edited preprocessing": (lambda d: _edit_manifest(d, lambda m: m["preprocess"].__setitem__("mean", [0, 0, 0])),
                             "integrity"),
    "flipped artifact byte": (lambda d: _flip(d / "model.ort", 5000), "model.ort was changed after conversion"),
    "flipped golden byte": (lambda d: _flip(d / "golden" / "input.bin", 100), "input.bin"),
    "missing golden file": (lambda d: (d / "golden" / "input.bin").unlink(), "golden/input.bin is missing"),
    "missing artifact": (lambda d: (d / "model.ort").unlink(), "the artifact model.ort is missing"),
    "golden file a symlink out of the folder": (lambda d: _link_out(d, "golden/input.bin"), "outside the folder"),
    "artifact a symlink out of the folder": (lambda d: _link_out(d, "model.ort"), "outside the folder"),
    "symlink loop": (lambda d: (d / "loop").symlink_to("loop"), "loop is a symlink loop"),
    "edited tolerance row": (lambda d: _edit_manifest(d, lambda m: m["parity"]["tolerance"].__setitem__(
        "target", "coreml")), "tolerance_row"),
    "golden shape edited and sealed again": (lambda d: _edit_manifest(d, lambda m: m["golden"]["input"].__setitem__(
        "shape", [2, 3, 64, 64]), reseal=True), "golden/input.bin holds"),
    "input shape a string, sealed again": (lambda d: _edit_manifest(d, lambda m: m["input"].__setitem__(
        "shape", "1x3x64x64"), reseal=True), "not four positive sizes"),
    "outputs emptied, sealed again": (lambda d: _edit_manifest(d, lambda m: m.__setitem__("outputs", []),
                                                               reseal=True), "not a list of named outputs"),
    "golden output shape negative, sealed again": (lambda d: _edit_manifest(d, lambda m: m["golden"]["outputs"][0]
                                                   .__setitem__("shape", [1, -10]), reseal=True), "positive sizes"),
    "golden section a list, sealed again": (lambda d: _edit_manifest(d, lambda m: m.__setitem__("golden", []),
                                                                     reseal=True), "damaged"),
    "input dtype a type no app knows, sealed again": (lambda d: _edit_manifest(d, lambda m: m["input"].__setitem__(
        "dtype", "int4"), reseal=True), "manifest key input.dtype"),
    "preprocess interpolation edited, sealed again": (lambda d: _edit_manifest(
        d, lambda m: m["preprocess"].__setitem__("interpolation", "lanczos"), reseal=True),
        "manifest key preprocess.interpolation"),
    "manifest not JSON": (lambda d: (d / "manifest.json").write_text("{not json"), "not valid JSON"),
    "manifest emptied": (lambda d: (d / "manifest.json").write_text("{}"), "lacks required keys"),
}


def _edit_manifest(folder, change, reseal=False):
    m = json.loads((folder / "manifest.json").read_text())
    change(m)
    if reseal:  # what someone who knows the seal's recipe can do: it is a checksum, not a signature
        from edgevit.manifest import content_sha256

        m["integrity"]["content_sha256"] = content_sha256(m, tuple(m["integrity"]["sealed_keys"]))
    (folder / "manifest.json").write_text(json.dumps(m, indent=2))


def _link_out(folder, name):
    """Replace ``name`` with a symlink to an identical copy outside the folder (the bytes still hash right)."""
    outside = folder.parent / f"outside-{name.replace('/', '-')}"
    outside.write_bytes((folder / name).read_bytes())
    (folder / name).unlink()
    (folder / name).symlink_to(outside)


def _truncate(path):
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])


def _flip(path, offset):
    data = bytearray(path.read_bytes())
    data[offset % len(data)] ^= 0x01
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("case", sorted(TAMPER))
def test_tampered_artifact_fails_verify_with_exit_3(artifact, case):
    change, words = TAMPER[case]
    change(artifact)
    r = cli("verify", artifact)
    assert r.returncode == 3 and "Traceback" not in r.stdout + r.stderr, r.stdout + r.stderr
    assert words.lower() in (r.stdout + r.stderr).lower(), r.stdout + r.stderr


IMAGES = Path(__file__).resolve().parents[2] / "edgevit" / "assets" / "digits" / "eval" / "3"
READERS = {"bench": ["--runs", "1", "--warmup", "0", "--no-memory"], "drift": [],
           "evaluate": ["--inline", "--images", IMAGES], "verify": ["--images", IMAGES]}
DAMAGE = {"flipped artifact byte": lambda d: _flip(d / "model.ort", 7000),
          "truncated artifact": lambda d: _truncate(d / "model.ort")}


@pytest.mark.parametrize("damage", sorted(DAMAGE))
@pytest.mark.parametrize("command", sorted(READERS))
def test_every_command_that_reads_a_folder_refuses_a_damaged_one(artifact, command, damage):
    """Issue 32: drift and evaluate measured a damaged model (exit 0) or crashed on a truncated one; every command
    that reads a folder opens it through the one integrity check (manifest.open_artifact)."""
    DAMAGE[damage](artifact)
    expect(cli(command, artifact, *READERS[command]), 3, "model.ort was changed after conversion", "re-convert")


@pytest.mark.parametrize("command", sorted(READERS))
def test_an_untouched_copy_passes_every_reader(artifact, command):
    # the control for the tests above: the same commands pass on the copy left alone
    expect(cli(command, artifact, *READERS[command]), 0)


def test_verify_images_works_on_the_shipped_model_without_weights(artifact, tmp_path):
    import numpy as np

    from tests.robustness.images import png

    pics = tmp_path / "pics"
    pics.mkdir()
    for i in range(3):
        png(pics / f"{i}.png", np.full((70, 90, 3), 60 * i, np.uint8))
    expect(cli("verify", artifact, "--images", pics), 0)


def test_drift_runs_on_the_ort_reference_and_refuses_a_non_artifact(reference, tmp_path):
    # the .ort reference is int8-free but at opset 20: drift re-traces the model at the artifact's own opset
    r = cli("drift", reference, "--json")
    expect(r, 0)
    report = json.loads(r.stdout)
    assert report["blocks"][0]["unit"] == "stem" and report["first_over_budget"] is None
    assert len(report["blocks"]) == 8
    # its long steps are named on stderr as they start and end (the JSON on stdout stays clean)
    assert "edgevit: PyTorch reference, block by block done in" in r.stderr
    assert "edgevit: block outputs in onnxruntime" in r.stderr and "done in" in r.stderr
    expect(cli("drift", tmp_path), 2, "not an edgevit artifact folder")
