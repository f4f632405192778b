"""convert + verify with the real runtimes (onnxruntime, ExecuTorch) on the tiny config."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import torch

from edgevit._io import sha256_file
from edgevit.cli import main
from edgevit.config import ConvertConfig, load_recipe
from edgevit.models.factory import build_model
from edgevit.pipeline import convert
from edgevit.errors import ConfigError, ExportError, OutputExistsError, ParityError
from edgevit.manifest import REQUIRED_KEYS, read_golden, read_manifest
from edgevit.models import save_weights
from edgevit.preprocess import golden_image
from edgevit.targets import get_target
from edgevit.verify import verify_dir

TINY = "nextvit_test_tiny"
REPO = Path(__file__).resolve().parents[1]


def tiny_cfg(tmp_path, target, **kw):
    return ConvertConfig(model=TINY, random_init=True, target=target, out=str(tmp_path / target), **kw)


def run_in_runtime(target: str, folder: Path, x: np.ndarray) -> list[np.ndarray]:
    """Run the artifact with its runtime's own API, not through edgevit's runner."""
    manifest = json.loads((folder / "manifest.json").read_text())
    path = str(folder / manifest["artifact"])
    if target in ("onnx", "ort"):
        import onnxruntime as ort

        sess = ort.InferenceSession(path, providers=["CPUExecutionProvider"])
        return sess.run(None, {"image": x})
    from executorch.runtime import Runtime

    method = Runtime.get().load_program(path).load_method("forward")
    return [o.numpy() for o in method.execute([torch.from_numpy(x)])]


@pytest.fixture(scope="module")
def converted(artifacts):
    """One tiny conversion per target, shared by the structural tests below (and the run's other tests that read
    the same conversion: tests/artifacts.py); a test that changes one works on a copy."""
    out = {}
    for t in ("onnx", "ort", "executorch"):
        folder = artifacts.get(model=TINY, random_init=True, target=t)
        m = read_manifest(folder)
        out[t] = SimpleNamespace(out_dir=folder, manifest=m, parity_passed=m["parity"]["passed"])
    return out


@pytest.mark.parametrize("target", ["onnx", "ort", "executorch"])
def test_convert_matches_pytorch_in_real_runtime(converted, tiny_model, target):
    result = converted[target]
    folder = result.out_dir
    assert result.parity_passed
    x = np.random.default_rng(1).normal(size=(1, 3, 64, 64)).astype(np.float32)
    out = run_in_runtime(target, folder, x)[0]
    with torch.no_grad():
        ref = tiny_model(torch.from_numpy(x)).numpy()
    rel = np.abs(out - ref).max() / np.abs(ref).max()
    assert rel < 2e-4
    assert out.argmax() == ref.argmax()


@pytest.mark.parametrize("target,suffix", [("onnx", ".onnx"), ("ort", ".ort"), ("executorch", ".pte")])
def test_manifest_schema(converted, target, suffix):
    folder = converted[target].out_dir
    m = read_manifest(folder)
    assert set(REQUIRED_KEYS) <= set(m)
    assert m["artifact"].endswith(suffix) and (folder / m["artifact"]).is_file()
    assert m["artifact_sha256"] == sha256_file(folder / m["artifact"])
    assert m["input"] == {"name": "image", "shape": [1, 3, 64, 64], "dtype": "float32", "layout": "NCHW",
                          "pixels": "normalized", "type": "tensor"}
    assert set(m["preprocess"]) >= {"mean", "std", "resize", "crop_pct", "interpolation", "color"}
    assert m["preprocess"]["mean"] == [0.485, 0.456, 0.406] and m["preprocess"]["interpolation"] == "bicubic"
    assert m["outputs"] == [{"name": "logits", "shape": [1, 10]}]
    assert m["parity"]["passed"] is True and m["parity"]["sets"]["golden"][0]["top1_agreement"] == 1.0
    assert "torch" in m["versions"] and len(m["weights_sha256"]) == 64
    # the golden pair reproduces: its input is the preprocessed golden image, its output PyTorch's
    x, outs = read_golden(folder, m)
    assert x.shape == (1, 3, 64, 64) and outs["logits"].shape == (1, 10)
    from PIL import Image

    from edgevit.preprocess import Preprocess

    with Image.open(folder / m["golden"]["image"]) as img:
        np.testing.assert_array_equal(Preprocess.for_size((64, 64))(img)[None], x)
    with torch.no_grad():
        ref = build_model(model=TINY, weights=None, random_init=True)(torch.from_numpy(x)).numpy()
    np.testing.assert_array_equal(outs["logits"], ref)


def test_ort_mobile_outputs(converted):
    m = read_manifest(converted["ort"].out_dir)
    details = m["ort"]
    config = converted["ort"].out_dir / details["required_operators_config"]
    text = config.read_text()
    assert "ai.onnx" in text and "Conv" in text and "Softmax" in text
    assert details["mobile_usability"]["checked"] is True
    assert "model.required_operators.config" in m["files"]


def test_executorch_delegation_report(converted):
    d = read_manifest(converted["executorch"].out_dir)["executorch"]["delegation"]
    assert d["delegated_subgraphs"] >= 1 and d["delegated_nodes"] > 0
    assert d["operators"]["aten_convolution_default"]["portable"] == 0
    assert d["operators"]["aten_convolution_default"]["delegated"] > 0
    assert d["portable_nodes"] == sum(d["portable_operators"].values())


@pytest.mark.parametrize("target", ["onnx", "ort", "executorch"])
def test_verify_passes_and_fails(converted, tmp_path, target, capsys):
    folder = converted[target].out_dir
    assert main(["verify", str(folder)]) == 0
    assert "PASS" in capsys.readouterr().out
    # a reference that no longer matches the artifact must fail with exit code 3
    import shutil

    broken = tmp_path / "broken"
    shutil.copytree(folder, broken)
    m = read_manifest(broken)
    ref_file = broken / m["golden"]["outputs"][0]["file"]
    ref = np.fromfile(ref_file, dtype="<f4")
    (ref + 0.05 * np.abs(ref).max()).astype("<f4").tofile(ref_file)
    assert main(["verify", str(broken), "--json"]) == 3
    report = json.loads(capsys.readouterr().out)
    assert report["passed"] is False and report["failures"]


def test_verify_detects_changed_artifact(converted, tmp_path):
    import shutil

    from edgevit.errors import IntegrityError

    folder = tmp_path / "copy"
    shutil.copytree(converted["onnx"].out_dir, folder)
    with open(folder / "model.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(IntegrityError, match="artifact_sha256"):
        verify_dir(folder)


def _tampered_copy(src: Path, dst: Path, how: str) -> Path:
    import shutil

    shutil.copytree(src, dst)
    m = json.loads((dst / "manifest.json").read_text())
    if how == "flip artifact byte":
        data = bytearray((dst / "model.onnx").read_bytes())
        data[len(data) // 2] ^= 0xFF
        (dst / "model.onnx").write_bytes(bytes(data))
    elif how == "flip golden input byte":
        data = bytearray((dst / "golden/input.bin").read_bytes())
        data[7] ^= 0x01
        (dst / "golden/input.bin").write_bytes(bytes(data))
    elif how == "edit manifest preprocess":
        m["preprocess"]["mean"] = [0.5, 0.5, 0.5]
        (dst / "manifest.json").write_text(json.dumps(m))
    elif how == "edit manifest input shape":
        m["input"]["shape"] = [1, 3, 32, 32]
        (dst / "manifest.json").write_text(json.dumps(m))
    elif how == "delete golden output":
        (dst / "golden/logits.bin").unlink()
    elif how == "delete artifact":
        (dst / "model.onnx").unlink()
    return dst


@pytest.mark.parametrize("how,text", [
    ("flip artifact byte", "the artifact model.onnx was changed after conversion"),
    ("flip golden input byte", "golden/input.bin was changed after conversion"),
    ("edit manifest preprocess", "manifest.json was edited after conversion"),
    ("edit manifest input shape", "manifest.json was edited after conversion"),
    ("delete golden output", "golden/logits.bin is missing"),
    ("delete artifact", "the artifact model.onnx is missing"),
])
def test_tampered_folders_fail_verify_with_exit_3_and_a_named_message(converted, tmp_path, capsys, how, text):
    folder = _tampered_copy(converted["onnx"].out_dir, tmp_path / "t", how)
    assert main(["verify", str(folder)]) == 3
    captured = capsys.readouterr()
    assert text in captured.out + captured.err
    assert "Traceback" not in captured.err


def test_bench_refuses_a_changed_artifact(converted, tmp_path, capsys):
    folder = _tampered_copy(converted["onnx"].out_dir, tmp_path / "t", "flip artifact byte")
    assert main(["bench", str(folder), "--runs", "1", "--warmup", "0", "--no-memory"]) == 3
    assert "artifact_sha256" in capsys.readouterr().err


def _write_images(folder: Path) -> None:
    folder.mkdir()
    golden_image((80, 120), seed=1).save(folder / "a.png")
    golden_image((50, 40), seed=2).convert("L").save(folder / "b.jpg")
    golden_image((64, 64), seed=3).convert("RGBA").save(folder / "c.webp")
    (folder / "broken.png").write_bytes(b"not a png")


def test_images_parity_and_verify_rebuilds_reference(tmp_path):
    images = tmp_path / "imgs"
    _write_images(images)
    result = convert(tiny_cfg(tmp_path, "onnx", images=str(images), dynamic_batch=True))
    sets = result.manifest["parity"]["sets"]
    assert sets["images"][0]["samples"] == 3  # the unreadable file is skipped
    assert result.manifest["input"]["shape"] == ["batch", 3, 64, 64]
    report = verify_dir(result.out_dir, images=images)
    assert report.passed and report.sets["images"][0].samples == 3
    out = run_in_runtime("onnx", result.out_dir, np.zeros((3, 3, 64, 64), np.float32))[0]
    assert out.shape == (3, 10)


def test_features_mode_exports_four_named_maps(tmp_path):
    result = convert(tiny_cfg(tmp_path, "onnx", features=True, img_size=(96, 64)))
    m = result.manifest
    assert [o["name"] for o in m["outputs"]] == ["stage1", "stage2", "stage3", "stage4"]
    assert [o["shape"] for o in m["outputs"]] == [[1, 32, 24, 16], [1, 128, 12, 8], [1, 160, 6, 4],
                                                  [1, 192, 3, 2]]
    assert m["parity"]["passed"]
    assert m["parity"]["sets"]["golden"][0]["top1_agreement"] is None


@pytest.mark.parametrize("layout,suffix", [("official", ".pth"), ("timm", ".safetensors")])
def test_checkpoint_layouts_convert_to_same_artifact_outputs(tmp_path, tiny_model, layout, suffix):
    weights = save_weights(tiny_model, tmp_path / f"w{suffix}", layout=layout)
    result = convert(ConvertConfig(model=TINY, weights=str(weights), target="onnx", out=str(tmp_path / "o")))
    assert result.parity_passed
    x = np.random.default_rng(7).normal(size=(1, 3, 64, 64)).astype(np.float32)
    with torch.no_grad():
        ref = tiny_model(torch.from_numpy(x)).numpy()
    out = run_in_runtime("onnx", result.out_dir, x)[0]
    assert np.abs(out - ref).max() / np.abs(ref).max() < 2e-4
    assert result.manifest["source"]["weights"] == str(weights.resolve())


def test_parity_failure_keeps_nothing(tmp_path, monkeypatch):
    target = get_target("onnx")
    real_load = type(target).load

    def drifting_load(self, path, manifest, threads=None):
        run = real_load(self, path, manifest, threads=threads)
        return lambda x: [o + 0.01 * np.abs(o).max() for o in run(x)]

    monkeypatch.setattr(type(target), "load", drifting_load)
    cfg = tiny_cfg(tmp_path, "onnx")
    with pytest.raises(ParityError, match="max rel error"):
        convert(cfg)
    assert not (tmp_path / "onnx").exists()
    assert list(tmp_path.iterdir()) == []
    result = convert(cfg.replace(keep_failed=True))
    assert not result.parity_passed and read_manifest(result.out_dir)["parity"]["passed"] is False


def test_failed_export_leaves_existing_output_untouched(tmp_path, monkeypatch):
    cfg = tiny_cfg(tmp_path, "onnx")
    convert(cfg)
    before = sha256_file(tmp_path / "onnx" / "manifest.json")

    def failing_export(self, model, example, out_dir, io_spec, cfg, **kw):
        (out_dir / "model.onnx").write_bytes(b"half written")
        raise ExportError("injected failure")

    monkeypatch.setattr(type(get_target("onnx")), "export", failing_export)
    with pytest.raises(ExportError, match="injected"):
        convert(cfg.replace(overwrite=True))
    assert sha256_file(tmp_path / "onnx" / "manifest.json") == before
    assert sorted(p.name for p in tmp_path.iterdir()) == ["onnx"]


def test_existing_output_needs_overwrite(tmp_path, capsys):
    (tmp_path / "onnx").mkdir()
    (tmp_path / "onnx" / "keep.txt").write_text("mine")
    with pytest.raises(OutputExistsError):
        convert(tiny_cfg(tmp_path, "onnx"))
    code = main(["convert", "--model", TINY, "--random-init", "--target", "onnx", "--out", str(tmp_path / "onnx")])
    assert code == 7 and "--overwrite" in capsys.readouterr().err
    assert (tmp_path / "onnx" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize("args,code,text", [
    (["--target", "tvm"], 2, "supported targets: coreai, coreml, executorch, litert, onnx, ort, tensorrt"),
    (["--target", "onnx", "--precision", "int3"], 2, "supported: fp32"),
    (["--target", "executorch", "--delegate", "vulkan"], 2, "supported: xnnpack"),
    (["--target", "onnx", "--opset", "13"], 2, "pass --opset 18 to 26"),
])
def test_bad_options_exit_2(tmp_path, capsys, args, code, text):
    assert main(["convert", "--model", TINY, "--random-init", "--out", str(tmp_path / "o"), *args]) == code
    assert text in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_no_weights_is_a_clear_error(tmp_path, capsys):
    assert main(["convert", "--model", TINY, "--target", "onnx", "--out", str(tmp_path / "o")]) == 2
    assert "--random-init" in capsys.readouterr().err


def test_bad_checkpoint_exit_4(tmp_path, capsys):
    bad = tmp_path / "w.pth"
    bad.write_bytes(b"garbage")
    assert main(["convert", "--model", TINY, "--weights", str(bad), "--target", "onnx",
                 "--out", str(tmp_path / "o")]) == 4


def test_recipe_unknown_key_names_closest(tmp_path):
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: nextvit_small\ntarget: onnx\nprecison: fp32\n")
    with pytest.raises(ConfigError, match="unknown key 'precison'; did you mean 'precision'"):
        load_recipe(recipe)


def test_every_shipped_recipe_is_valid():
    recipes = sorted((REPO / "conversion_recipes").glob("*.yaml"))
    assert len(recipes) >= 10
    for r in recipes:
        cfg = ConvertConfig.from_dict(load_recipe(r), where=str(r))
        get_target(cfg.target).check(cfg.precision, cfg.delegate)


def test_cli_flags_override_recipe_and_json_summary(tmp_path, capsys):
    recipe = tmp_path / "r.yaml"
    recipe.write_text(f"model: {TINY}\nrandom_init: true\ntarget: executorch\nout: {tmp_path / 'from_recipe'}\n")
    out = tmp_path / "from_flag"
    assert main(["convert", "--recipe", str(recipe), "--target", "ort", "--out", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out)
    assert summary["target"] == "ort" and summary["parity"]["passed"] is True
    assert Path(summary["out"]) == out and not (tmp_path / "from_recipe").exists()


def test_cli_json_is_clean_stdout(tmp_path):
    r = subprocess.run([sys.executable, "-m", "edgevit", "convert", "--model", TINY, "--random-init", "--target",
                        "onnx", "--out", str(tmp_path / "o"), "--json"], capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stderr
    summary = json.loads(r.stdout)
    assert summary["artifact"] == "model.onnx" and summary["details"]["op_counts"]["Conv"] > 0
    assert "export onnx" in r.stderr  # progress goes to stderr


@pytest.mark.slow  # full-size: Next-ViT-S
@pytest.mark.parametrize("target", ["onnx", "ort", "executorch"])
def test_nextvit_small_converts_and_verifies(tmp_path, target):
    result = convert(ConvertConfig(model="nextvit_small", random_init=True, target=target,
                                   out=str(tmp_path / target)))
    assert result.parity_passed
    assert verify_dir(result.out_dir).passed
    assert result.manifest["input"]["shape"] == [1, 3, 224, 224]
    assert result.manifest["outputs"][0]["shape"] == [1, 1000]


def _onnx_graph_facts(path: Path):
    import onnx

    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    shapes = {v.name: [d.dim_value for d in v.type.tensor_type.shape.dim]
              for v in list(model.graph.value_info) + list(model.graph.input) + list(model.graph.output)}
    ops = [n.op_type for n in model.graph.node]
    transposed = [int(np.prod(shapes[n.input[0]])) for n in model.graph.node if n.op_type == "Transpose"]
    return ops, transposed


def test_deployed_onnx_graph_has_no_batchnorm_and_no_full_map_transpose(converted, tmp_path):
    ops, transposed = _onnx_graph_facts(converted["onnx"].out_dir / "model.onnx")
    assert "BatchNormalization" not in ops
    # tiny config at 64x64: NTB maps are 96ch x 8x8 (sr 4), 128ch x 4x4 (sr 2), 160ch x 2x2 (sr 1). Only the
    # keys are transposed: pooled to 4 tokens for sr > 1; for sr = 1 the keys are the whole (stride-32) map.
    assert sorted(transposed) == sorted([96 * 4, 128 * 4, 160 * 4])
    assert [t < 96 * 64 for t in transposed[:1]] == [True]
    original = convert(tiny_cfg(tmp_path, "onnx", rewrite=False))
    ops0, transposed0 = _onnx_graph_facts(original.out_dir / "model.onnx")
    assert ops0.count("BatchNormalization") == 12  # the exporter folds conv+BN itself, not the pre-BNs
    assert ops0.count("Transpose") > 3 * len(transposed)
    assert max(transposed0) >= 96 * 64  # the original rearranges whole token maps
    assert original.manifest["rewrite"]["passes"] == [] and original.parity_passed


def test_deployed_executorch_has_every_op_in_xnnpack(converted):
    m = read_manifest(converted["executorch"].out_dir)
    assert m["executorch"]["delegation"]["portable_nodes"] == 0
    assert m["executorch"]["delegation"]["delegated_subgraphs"] == 1
    counts = m["rewrite"]["op_counts"]
    assert counts["original"]["batch_norm"] == 31 and "batch_norm" not in counts["deployed"]
    assert [p["name"] for p in m["rewrite"]["passes"]] == ["fold_conv_bn", "merge_pre_bn", "delegate_friendly_ops"]
    assert all(p["parity"]["max_rel"] < 5e-5 for p in m["rewrite"]["passes"])


def test_verify_images_on_the_shipped_model_needs_no_weights(tmp_path, capsys):
    """An artifact of the shipped model names no weights file: verify --images rebuilds it from the package."""
    import shutil

    from edgevit.models.factory import embedded_data

    images = tmp_path / "imgs"
    images.mkdir()
    for f in sorted(Path(embedded_data("nextvit_digits", "eval")).rglob("*.png"))[:5]:
        shutil.copy(f, images / f"{f.parent.name}_{f.name}")
    out = tmp_path / "digits"
    assert main(["convert", "--model", "nextvit_digits", "--target", "onnx", "--out", str(out)]) == 0
    capsys.readouterr()
    assert main(["verify", str(out), "--images", str(images)]) == 0
    assert "images" in capsys.readouterr().out
