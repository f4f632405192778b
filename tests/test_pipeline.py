"""The convert steps on their own: option checks before any model is built, checkpoint preprocessing, golden
batches of different pictures, the resize-check picture, and what the CoreML metadata states."""

from __future__ import annotations

import json
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from edgevit.cli import main
from edgevit.config import ConvertConfig
from edgevit.errors import ConfigError, ParityError
from edgevit.manifest import read_golden, read_manifest
from edgevit.models import save_weights
from edgevit.models.factory import build_model
from edgevit.pipeline import convert, plan
from edgevit.preprocess import Preprocess, golden_image
from edgevit.targets import get_target

TINY = "nextvit_test_tiny"
DIGITS = "nextvit_digits"


def _unlabeled_eval_dir(root: Path) -> Path:
    folder = root / "eval"
    for name in ("cats", "dogs"):
        (folder / name).mkdir(parents=True)
        for i in range(2):
            golden_image((64, 64), seed=i).save(folder / name / f"{i}.png")
    return folder


def test_accuracy_budget_with_unlabeled_eval_folder_fails_before_any_model(tmp_path, capsys, monkeypatch):
    """Subfolders that are not the model's labels: a named error with the layout to use, before the model loads
    (it used to export 7 times and then say the budget was not met)."""
    import edgevit.pipeline as pipeline

    def no_model(*a, **k):
        raise AssertionError("the model must not be built for a bad option")

    monkeypatch.setattr(pipeline, "build_model", no_model)
    evals = _unlabeled_eval_dir(tmp_path)
    code = main(["convert", "--model", DIGITS, "--target", "onnx", "--precision", "int8", "--eval-dir", str(evals),
                 "--max-accuracy-drop", "0.5", "--out", str(tmp_path / "o")])
    err = capsys.readouterr().err
    assert code == 2
    assert "needs labeled evaluation images" in err and "cats" in err and "DIR/<class name>/*.png" in err
    assert "--min-agreement" in err and not (tmp_path / "o").exists()


def test_evaluation_class_outside_the_model_is_an_error(tmp_path):
    from edgevit.errors import ConfigError
    from edgevit.quantize.calibration import folder_labels

    folder = tmp_path / "eval"
    for name in ("3", "12"):
        (folder / name).mkdir(parents=True)
        golden_image((64, 64)).save(folder / name / "a.png")
    with pytest.raises(ConfigError, match=r"class folders \[12\] but the model has 10 classes"):
        folder_labels(folder, [str(i) for i in range(10)], 10)


# ---------------------------------------------------------------------------------------------------------------
# preprocessing from the checkpoint


def _checkpoint_with_sidecar(tmp_path: Path, pretrained_cfg: dict) -> Path:
    from edgevit.models import create_model, randomize_

    weights = save_weights(randomize_(create_model(TINY), seed=3), tmp_path / "finetuned.safetensors")
    (tmp_path / "finetuned.json").write_text(json.dumps({"pretrained_cfg": pretrained_cfg}))
    return weights


STATS = {"input_size": [3, 96, 80], "crop_pct": 1.0, "interpolation": "bilinear", "mean": [0.5, 0.4, 0.3],
         "std": [0.2, 0.25, 0.3]}


def test_plan_reads_the_checkpoint_sidecar_and_options_override_it(tmp_path):
    weights = _checkpoint_with_sidecar(tmp_path, STATS)
    p = plan(ConvertConfig(model=TINY, weights=str(weights), target="onnx", out=str(tmp_path / "o")))
    assert p.pre.size == (96, 80) and p.pre.crop_pct == 1.0 and p.pre.interpolation == "bilinear"
    assert p.pre.mean == (0.5, 0.4, 0.3) and p.pre.std == (0.2, 0.25, 0.3)
    assert {k: v for k, v in p.pre_sources.items() if k != "geometry"} == dict.fromkeys(
        ("img_size", "crop_pct", "interpolation", "mean", "std"), "checkpoint sidecar finetuned.json")
    # a sidecar without preprocess_geometry gets timm's eval transform; one that states it is obeyed
    assert p.pre.geometry == "timm-eval" and p.pre_sources["geometry"] == "edgevit default (timm's eval transform)"
    p2 = plan(ConvertConfig(model=TINY, weights=str(weights), target="onnx", out=str(tmp_path / "o"),
                            mean=(0.1, 0.2, 0.3), img_size=64))
    assert p2.pre.mean == (0.1, 0.2, 0.3) and p2.pre.size == (64, 64) and p2.pre.std == (0.2, 0.25, 0.3)
    assert p2.pre_sources["mean"] == "option --mean" and p2.pre_sources["img_size"] == "option --img-size"
    assert p2.pre_sources["std"] == "checkpoint sidecar finetuned.json"


def test_a_sidecar_states_the_resize_geometry_it_was_trained_with(tmp_path):
    weights = _checkpoint_with_sidecar(tmp_path, {**STATS, "preprocess_geometry": "edgevit-v1"})
    p = plan(ConvertConfig(model=TINY, weights=str(weights), target="onnx", out=str(tmp_path / "o")))
    assert p.pre.geometry == "edgevit-v1" and p.pre_sources["geometry"] == "checkpoint sidecar finetuned.json"
    assert p.pre.to_manifest()["geometry"] == "edgevit-v1"
    (tmp_path / "b").mkdir()
    bad = _checkpoint_with_sidecar(tmp_path / "b", {**STATS, "preprocess_geometry": "squash"})
    with pytest.raises(ConfigError, match="preprocess_geometry must be one of timm-eval, edgevit-v1"):
        plan(ConvertConfig(model=TINY, weights=str(bad), target="onnx", out=str(tmp_path / "o2")))


def test_hub_tag_sets_384_and_crop_1_when_offline(monkeypatch):
    import huggingface_hub

    from edgevit.models.pretrained import resolve_preprocess

    def offline(**kw):
        raise OSError("offline")

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", offline)
    values, sources = resolve_preprocess(model_default_size=224, weights="timm/nextvit_small.bd_in1k_384")
    assert values["img_size"] == (384, 384) and values["crop_pct"] == 1.0
    assert sources["img_size"] == "hub tag bd_in1k_384"
    values, sources = resolve_preprocess(model_default_size=224, weights="timm/nextvit_small.bd_in1k")
    assert values["img_size"] == (224, 224) and values["crop_pct"] == 0.95
    assert sources["crop_pct"].startswith("edgevit default")


def test_hub_config_json_wins_over_the_tag(monkeypatch, tmp_path):
    import huggingface_hub

    from edgevit.models.pretrained import resolve_preprocess

    config = tmp_path / "config.json"
    config.write_text(json.dumps({"architecture": "nextvit_small", "pretrained_cfg": dict(STATS, crop_pct=0.9)}))
    seen = {}

    def download(repo_id, filename):
        seen[repo_id] = filename
        return str(config)

    monkeypatch.setattr(huggingface_hub, "hf_hub_download", download)
    from edgevit.models import pretrained

    monkeypatch.setattr(pretrained, "hub_unreachable", lambda: None)  # the hub answers (there is none here)
    values, sources = resolve_preprocess(model_default_size=224, weights="timm/nextvit_small.bd_in1k_384")
    assert seen == {"timm/nextvit_small.bd_in1k_384": "config.json"}
    assert values["img_size"] == (96, 80) and values["crop_pct"] == 0.9 and values["mean"] == (0.5, 0.4, 0.3)
    assert sources["mean"] == "hub timm/nextvit_small.bd_in1k_384/config.json"


@pytest.mark.parametrize("target", ["onnx", "coreml"])
def test_finetuned_statistics_reach_the_artifact(tmp_path, target):
    """The sidecar's own mean/std/size: the golden input is preprocessed with them, and the CoreML image input
    has them baked in (its parity against PyTorch on those statistics would fail with ImageNet's)."""
    weights = _checkpoint_with_sidecar(tmp_path, STATS)
    kw = {"precision": "fp32"} if target == "coreml" else {}
    result = convert(ConvertConfig(model=TINY, weights=str(weights), target=target, out=str(tmp_path / target),
                                   **kw))
    m = result.manifest
    assert result.parity_passed
    assert m["preprocess"]["mean"] == [0.5, 0.4, 0.3] and m["preprocess"]["std"] == [0.2, 0.25, 0.3]
    assert m["preprocess"]["size"] == [96, 80] and m["preprocess"]["interpolation"] == "bilinear"
    assert m["preprocess"]["sources"]["mean"] == "checkpoint sidecar finetuned.json"
    x, outs = read_golden(result.out_dir, m)
    with Image.open(result.out_dir / m["golden"]["image"]) as img:
        raw = np.asarray(img.convert("RGB"), np.float32).transpose(2, 0, 1)
    h, w = 96, 80
    left, top = (img.width - w) // 2, (img.height - h) // 2
    raw = raw[:, top:top + h, left:left + w][None]
    norm = (raw / 255.0 - np.float32([0.5, 0.4, 0.3]).reshape(1, 3, 1, 1)) / np.float32([0.2, 0.25, 0.3]).reshape(
        1, 3, 1, 1)
    np.testing.assert_allclose(x, raw if target == "coreml" else norm, rtol=0, atol=1e-5)
    net = build_model(model=TINY, weights=str(weights), random_init=False)
    with torch.no_grad():
        ref = net(torch.from_numpy(norm.astype(np.float32))).numpy()
    np.testing.assert_allclose(outs["logits"], ref, rtol=0, atol=1e-4 * np.abs(ref).max())


def test_shipped_model_preprocessing_comes_from_its_sidecar(tmp_path):
    p = plan(ConvertConfig(model=DIGITS, target="onnx", out=str(tmp_path / "o")))
    assert set(p.pre_sources.values()) == {"checkpoint sidecar nextvit_digits.json"}
    assert p.pre.size == (64, 64) and p.pre.crop_pct == 0.95


# ---------------------------------------------------------------------------------------------------------------
# golden batches


@pytest.mark.parametrize("target", ["onnx", "ort", "executorch", "coreml"])
def test_batch_2_golden_pictures_differ_and_parity_holds(tmp_path, target):
    kw = {"input_type": "tensor"} if target == "coreml" else {}  # a CoreML image input is one picture
    result = convert(ConvertConfig(model=TINY, random_init=True, target=target, batch=2, out=str(tmp_path / "o"),
                                   **kw))
    m = result.manifest
    x, outs = read_golden(result.out_dir, m)
    assert x.shape[0] == 2 and not np.array_equal(x[0], x[1])
    out = next(iter(outs.values()))
    assert not np.allclose(out[0], out[1])
    assert m["golden"]["images"] == ["golden/image.png", "golden/image_1.png"]
    assert result.parity_passed and m["parity"]["sets"]["golden"][0]["samples"] == 2


def test_an_artifact_that_mixes_batch_entries_fails_parity(tmp_path, monkeypatch):
    target = get_target("onnx")
    real_load = type(target).load

    def swapped(self, path, spec, threads=None):
        run = real_load(self, path, spec, threads=threads)
        return lambda x: [o[::-1].copy() for o in run(x)]

    monkeypatch.setattr(type(target), "load", swapped)
    with pytest.raises(ParityError):
        convert(ConvertConfig(model=TINY, random_init=True, target="onnx", batch=2, out=str(tmp_path / "o")))


def test_resize_check_picture_needs_resizing_and_matches_python(tmp_path):
    result = convert(ConvertConfig(model=TINY, random_init=True, target="onnx", out=str(tmp_path / "o")))
    m = result.manifest
    rc = m["golden"]["resize_check"]
    with Image.open(result.out_dir / rc["image"]) as img:
        assert (img.width, img.height) == (rc["width"], rc["height"])
        pre = Preprocess.from_manifest(m["preprocess"])
        assert pre.resized_size(img.width, img.height) != img.size  # the app must really resize it
        expect = pre(img)[None]
    got = np.fromfile(result.out_dir / rc["input"]["file"], dtype="<f4").reshape(rc["input"]["shape"])
    np.testing.assert_array_equal(got, expect)


# ---------------------------------------------------------------------------------------------------------------
# CoreML metadata


def test_coreml_metadata_states_only_what_is_known(tmp_path):
    ct = pytest.importorskip("coremltools")
    shipped = convert(ConvertConfig(model=DIGITS, target="coreml", eval_count=20, out=str(tmp_path / "a")))
    meta = ct.models.MLModel(str(shipped.out_dir / "model.mlpackage"), skip_model_load=True).get_spec() \
        .description.metadata
    assert "random" not in meta.shortDescription and "verified" not in meta.shortDescription
    assert "nextvit_digits.safetensors" in meta.shortDescription and "simulator" in meta.shortDescription
    assert meta.license.startswith("not stated") and meta.author.startswith("not stated")
    assert meta.userDefined["edgevit.weights_sha256"] == shipped.manifest["weights_sha256"]
    stated = convert(ConvertConfig(model=DIGITS, target="coreml", license="MIT", author="Jane Doe", eval_count=20,
                                   out=str(tmp_path / "b")))
    meta = ct.models.MLModel(str(stated.out_dir / "model.mlpackage"), skip_model_load=True).get_spec() \
        .description.metadata
    assert meta.license == "MIT" and meta.author == "Jane Doe"
    assert stated.manifest["provenance"]["license"] == "MIT"
