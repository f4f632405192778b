"""Principle 1: every bad option, recipe value, path or image folder is refused up front with exit 2 and a message
that names the problem and the fix, before any model is built (the step printer's "load model" never appears)."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from tests.robustness.conftest import REPO, cli, expect, tree_digest
from tests.robustness.images import bomb_png, png

DIGITS = ("convert", "--model", "nextvit_digits")

RECIPES = [  # (recipe text, words the message must contain); each case seen in the field or its class
    ('overwrite: "false"', ["overwrite", "true or false"]),
    ('rewrite: "false"', ["rewrite", "true or false"]),
    ('batch: "two"', ["batch", "integer"]),
    ("img_size: [64]", ["img_size"]),
    ("seed: true", ["seed", "integer"]),
    ("out: 123", ["out", "text"]),
    ("opset: 18.7", ["opset", "integer"]),
    ("eval_count: -1", ["eval_count"]),
    ("max_accuracy_drop: .nan", ["max_accuracy_drop"]),
    ("mean: [0.5, 0.5]", ["mean"]),
    ("calib_count: 1e99", ["calib_count"]),
    ("targte: onnx", ["did you mean 'target'"]),
    ("- just\n- a list", ["mapping"]),
    ("target: [onnx", ["yaml"]),
]


@pytest.mark.parametrize("text,needles", RECIPES, ids=[r[0][:24] for r in RECIPES])
def test_bad_recipe_values_exit_2(tmp_path, text, needles):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: nextvit_digits\n{text}\n" if not text.startswith("-") else text)
    r = cli("convert", "--recipe", recipe, "--out", tmp_path / "o")
    expect(r, 2, *needles)
    assert "load model" not in r.stderr and not (tmp_path / "o").exists()


def test_recipe_overwrite_false_string_never_replaces_a_folder(tmp_path):
    # the field case: "false" counted as true and a user's file inside the folder was lost
    out = tmp_path / "o"
    out.mkdir()
    (out / "notes.txt").write_text("mine")
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f'model: nextvit_digits\nout: {out}\noverwrite: "false"\n')
    expect(cli("convert", "--recipe", recipe), 2, "overwrite")
    assert (out / "notes.txt").read_text() == "mine"


def test_binary_recipe_exit_2(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_bytes(bytes(range(256)) * 8)
    expect(cli("convert", "--recipe", recipe, "--out", tmp_path / "o"), 2, "not a YAML text file")


FLAGS = [
    (["--eval-count", "-1"], ["eval_count must be >= 1"]),
    (["--max-accuracy-drop", "-3"], ["max_accuracy_drop", "0 to 100"]),
    (["--img-size", "64x64x3"], ["not N or HxW"]),
    (["--img-size", "10000"], ["bound of 4096"]),
    (["--img-size", "16"], ["at least 32x32"]),
    (["--batch", "0"], ["batch must be >= 1"]),
    (["--batch", "100000"], ["bound of 256"]),
    (["--opset", "17"], ["pass --opset 18 to 26"]),
    (["--opset", "27"], ["pass --opset 18 to 26"]),
    (["--opset", "18.7"], ["invalid int value"]),
    (["--target", "tvm"], ["unknown target"]),
    (["--target", "onnx", "--precision", "int4"], ["int4"]),
    (["--target", "executorch", "--delegate", "coreml", "--precision", "int8"], ["--target coreml"]),
    (["--crop-pct", "0"], ["crop_pct"]),
    (["--mean", "1,2"], ["three numbers"]),
    (["--calib-count", "0"], ["calib_count"]),
    (["--labels", "/no/such/labels.txt"], ["does not exist"]),
    (["--eval-dir", "/no/such/dir"], ["does not exist"]),
    (["--min-agreement", "1.5"], ["min_agreement"]),
]


@pytest.mark.parametrize("flags,needles", FLAGS, ids=[" ".join(f[0]) for f in FLAGS])
def test_bad_flags_exit_2(tmp_path, flags, needles):
    r = cli(*DIGITS, *flags, "--out", tmp_path / "o")
    expect(r, 2, *needles)
    assert "load model" not in r.stderr


@pytest.mark.parametrize("weights", ["my_finetuned.pth", "checkpoints/best.safetensors", "model_final"])
def test_a_dry_run_with_a_missing_weights_file_is_not_checked_ok(tmp_path, weights):
    """A mistyped --weights path went to the Hugging Face hub as a repository id (five retries, 23 s here) and the
    dry run then said "every option checked" with exit 0. A value that names a local file must exist: exit 4, and
    with the hub made unreachable nothing is asked of it."""
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HUB_ETAG_TIMEOUT": "1"}  # a request would fail, loudly
    r = cli("convert", "--model", "nextvit_small", "--weights", weights, "--target", "coreml", "--out",
            tmp_path / "o", "--dry-run", cwd=tmp_path, env=env)
    expect(r, 4, f"weights file {weights} does not exist", "hub id such as timm/nextvit_small.bd_in1k")
    assert "every option checked" not in r.stdout and "127.0.0.1" not in r.stderr
    assert list(tmp_path.iterdir()) == []


def test_an_unreachable_hub_fails_at_once_naming_the_ways_out(tmp_path):
    """Issue 36: a hub id with no network spent 53.8 s on huggingface_hub's retries (five per file, config.json and
    the weights) before saying so. One short probe; the cache is still used when it holds the file."""
    env = {"HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")}  # nothing listens; empty cache
    r = cli("convert", "--model", "nextvit_small", "--weights", "timm/nextvit_small.bd_in1k", "--target", "onnx",
            "--out", tmp_path / "o", cwd=tmp_path, env=env)
    expect(r, 4, "http://127.0.0.1:9 cannot be reached", "HF_HUB_OFFLINE=1", "--weights PATH")
    assert "Retrying" not in r.stderr
    assert not (tmp_path / "o").exists()


def test_an_unreachable_hub_still_serves_what_its_cache_holds(tmp_path):
    """The probe must not take away huggingface_hub's cache: a file fetched earlier is used without a network."""
    snapshot = tmp_path / "hf" / "hub" / "models--org--tiny" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot / "model.safetensors").write_bytes(b"cached")
    (tmp_path / "hf" / "hub" / "models--org--tiny" / "refs").mkdir()
    (tmp_path / "hf" / "hub" / "models--org--tiny" / "refs" / "main").write_text("0" * 40)
    code = "from edgevit.models.checkpoint import resolve_source; print(resolve_source('org/tiny').read_bytes())"
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO, timeout=120,
                       env={**os.environ, "HF_ENDPOINT": "http://127.0.0.1:9", "HF_HOME": str(tmp_path / "hf")})
    assert r.returncode == 0 and r.stdout.strip() == "b'cached'", r.stderr[-2000:]
    assert "Retrying" not in r.stderr


def test_json_commands_print_their_error_as_json(tmp_path):
    """Issue 36: `convert --json` printed nothing on stdout when it failed; every --json command now prints one
    object naming the error (the message also goes to stderr as before)."""
    r = cli("convert", "--model", "nextvit_smal", "--target", "onnx", "--out", tmp_path / "o", "--json")
    expect(r, 2, "did you mean 'nextvit_small'")
    error = json.loads(r.stdout)["error"]
    assert error["exit_code"] == 2 and error["type"] == "ConfigError" and "nextvit_small" in error["message"]
    r = cli("verify", tmp_path, "--json")  # not an artifact folder
    expect(r, 2, "not an edgevit artifact folder")
    assert json.loads(r.stdout)["error"]["exit_code"] == 2


def test_unknown_model_suggests_the_name(tmp_path):
    expect(cli("convert", "--model", "nextvit_smal", "--out", tmp_path / "o"), 2, "did you mean 'nextvit_small'")


def test_out_under_a_file(tmp_path):
    (tmp_path / "f").write_text("x")
    expect(cli(*DIGITS, "--out", tmp_path / "f" / "o"), 2, "is a file, not a folder")


def test_out_is_the_working_folder(tmp_path):
    expect(cli(*DIGITS, "--out", ".", cwd=tmp_path), 2, "working folder")
    expect(cli(*DIGITS, "--out", "..", cwd=tmp_path), 2, "working folder")
    assert list(tmp_path.iterdir()) == []


def test_out_that_cannot_be_written(tmp_path):
    # a pseudo file system refuses new files even to root (os.access would say yes to root)
    expect(cli(*DIGITS, "--out", "/proc/edgevit-out"), 2, "cannot be written", "choose another folder")
    if os.geteuid() != 0:  # root ignores permission bits; the check above covers root
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o555)
        expect(cli(*DIGITS, "--out", locked / "o"), 2, "cannot be written")


def test_out_names_no_file_system_takes(tmp_path):
    """Issue 32: a 300-character and a non-UTF-8 --out gave tracebacks."""
    expect(cli(*DIGITS, "--out", tmp_path / ("a" * 300)), 2, "300 bytes long", "at most 223 bytes")
    expect(cli(*DIGITS, "--out", tmp_path / os.fsdecode(b"bad\xff\xfename")), 2, "not valid UTF-8")
    assert list(tmp_path.iterdir()) == []


_NO_TEMP = """
import sys, tempfile
tempfile._candidate_tempdir_list = lambda: ["/proc/edgevit-no-temp"]  # /proc refuses new files, even to root
from edgevit.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_no_writable_temporary_folder(tmp_path):
    """Issue 32: no writable temporary folder gave a traceback. As root every real folder is writable, so Python's
    list of candidate folders is pointed at one in /proc (which refuses files to root too) for this child."""
    r = subprocess.run([sys.executable, "-c", _NO_TEMP, "verify", str(tmp_path)], capture_output=True, text=True,
                       cwd="/proc", env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    expect(r, 2, "no writable temporary folder", "set TMPDIR")


def _small_disk(folder, size: int):
    """A tmpfs of ``size`` bytes at ``folder`` (mounting needs root; elsewhere the test is skipped so)."""
    folder.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(folder)],
                                           capture_output=True).returncode != 0:
        pytest.skip("filling a disk needs a small tmpfs, which only root can mount here")


@pytest.mark.parametrize("room", ["nothing", "the artifact alone"])
def test_a_full_disk_is_named_and_leaves_nothing(artifacts, tmp_path, room):
    """Issue 32: a disk that fills while the artifact, the golden files or the manifest are written gave a
    traceback. The disk holds 64 KiB, or the artifact (the run's shared conversion of the same model) and 64 KiB:
    then the golden files (184 KiB) are what no longer fits."""
    artifact = artifacts.reference("onnx") / "model.onnx"
    disk = tmp_path / "small"
    _small_disk(disk, 65536 if room == "nothing" else artifact.stat().st_size + 65536)
    try:
        expect(cli("convert", "--model", "nextvit_digits", "--target", "onnx", "--out", disk / "o"), 8,
               "no space left on the device", "nothing partial was kept")
        assert list(disk.iterdir()) == []
    finally:
        subprocess.run(["umount", str(disk)], check=True)


def _labeled(root, names, n=2):
    for name in names:
        for i in range(n):
            png((root / name).mkdir(parents=True, exist_ok=True) or root / name / f"{i}.png",
                np.full((40, 40, 3), 40 * i, np.uint8))
    return root


def test_budget_with_folders_that_are_not_the_models_labels(tmp_path):
    # the field case: 7 exports and 77 s, then "budget not met"
    ev = _labeled(tmp_path / "ev", ["cats", "dogs"])
    r = cli(*DIGITS, "--target", "onnx", "--precision", "int8", "--eval-dir", ev, "--max-accuracy-drop", "0.5",
            "--out", tmp_path / "o")
    expect(r, 2, "cats", "--min-agreement", "DIR/<class name>")
    assert "load model" not in r.stderr


def test_evaluation_labels_outside_the_models_classes(tmp_path):
    ev = _labeled(tmp_path / "ev", ["3", "12"])
    r = cli(*DIGITS, "--target", "onnx", "--precision", "int8", "--eval-dir", ev, "--out", tmp_path / "o")
    expect(r, 2, "[12]", "10 classes")
    assert "load model" not in r.stderr


@pytest.mark.parametrize("flag", ["--calib-dir", "--eval-dir", "--images"])
def test_decompression_bomb_in_any_image_folder(tmp_path, flag):
    folder = tmp_path / "imgs"
    folder.mkdir()
    png(folder / "a.png", np.full((40, 40, 3), 100, np.uint8))
    bomb_png(folder / "z_bomb.png", 40000, 40000)
    extra = ["--target", "onnx", "--precision", "int8"] if flag != "--images" else []
    r = cli(*DIGITS, *extra, flag, folder, "--out", tmp_path / "o")
    expect(r, 2, "z_bomb.png", "decompression bomb")
    assert "load model" not in r.stderr


def test_folder_without_images(tmp_path):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no pictures")
    expect(cli(*DIGITS, "--images", tmp_path / "empty", "--out", tmp_path / "o"), 2, "holds no images")


def test_dry_run_builds_nothing(tmp_path):
    r = cli(*DIGITS, "--target", "ort", "--dry-run", "--out", tmp_path / "o")
    expect(r, 0)
    assert "nothing built" in r.stdout and not (tmp_path / "o").exists() and list(tmp_path.iterdir()) == []


def test_unsafe_checkpoint_is_refused_and_never_run(tmp_path):
    import pickle

    marker = tmp_path / "pwned"

    class Exploit:
        def __reduce__(self):
            return (os.system, (f"touch {marker}",))

    ckpt = tmp_path / "evil.pth"
    ckpt.write_bytes(pickle.dumps({"state_dict": Exploit()}))
    r = cli(*DIGITS, "--weights", ckpt, "--out", tmp_path / "o")
    expect(r, 4, "evil.pth")
    assert not marker.exists() and not (tmp_path / "o").exists()


def test_damaged_checkpoint_exit_4(tmp_path):
    ckpt = tmp_path / "cut.safetensors"
    ckpt.write_bytes(b"\x10\x00\x00\x00\x00\x00\x00\x00{\"a\":")
    expect(cli(*DIGITS, "--weights", ckpt, "--out", tmp_path / "o"), 4, "cut.safetensors")


def test_existing_folder_is_kept_without_overwrite(tmp_path):
    out = tmp_path / "o"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    before = tree_digest(out)
    expect(cli(*DIGITS, "--out", out), 7, "already exists", "--overwrite")
    assert tree_digest(out) == before


def test_overwrite_refuses_a_folder_that_is_not_an_artifact(tmp_path):
    # the field case: --overwrite deleted a folder holding src/main.py
    out = tmp_path / "project"
    (out / "src").mkdir(parents=True)
    (out / "src" / "main.py").write_text("print('hello')\n")
    before = tree_digest(out)
    expect(cli(*DIGITS, "--overwrite", "--out", out), 7, "not an edgevit artifact folder", "nothing was changed")
    assert tree_digest(out) == before


@pytest.mark.parametrize("target,module", [("coreml", "coremltools"), ("executorch", "executorch"),
                                           ("onnx", "onnxscript")])
def test_dry_run_says_a_missing_toolchain_as_the_real_run_would(tmp_path, monkeypatch, capsys, target, module):
    """Issue 32: --dry-run exited 0 where the real run exited 5. The toolchain is looked up, not imported."""
    import importlib.util

    from edgevit.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == module else real(name, *a))
    rc = main(["convert", "--model", "nextvit_digits", "--target", target, "--dry-run", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert rc == 5 and f"needs {module}" in err and "pip install" in err, err
    assert not (tmp_path / "o").exists()


def test_a_binary_labels_file_and_a_huge_info_size_are_named_errors(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_bytes(bytes(range(256)) * 4)
    expect(cli(*DIGITS, "--labels", labels, "--dry-run", "--out", tmp_path / "o"), 2, "not UTF-8")
    expect(cli("info", "--model", "nextvit_small", "--img-size", "10000"), 2, "exceeds 4096")


def test_a_litert_cache_holding_another_json_value_is_recounted(tmp_path, monkeypatch):
    """Issue 32: a cache file holding [] made every LiteRT conversion a traceback."""
    import json

    import torch

    from edgevit.models import create_model
    from edgevit.targets.litert.export import cached_transposes as transpose_count

    monkeypatch.setenv("EDGEVIT_CACHE", str(tmp_path))
    (tmp_path / "litert_transposes.json").write_text("[]")
    count = transpose_count(create_model("nextvit_test_tiny").eval(), torch.zeros(1, 3, 64, 64), "nchw")
    assert count >= 0 and isinstance(json.loads((tmp_path / "litert_transposes.json").read_text()), dict)
