"""CoreML target on the tiny config: conversion variants, simulator parity, the mean/std folding."""

import json
from types import SimpleNamespace

import numpy as np

import pytest
import torch

from edgevit.cli import main
from edgevit.config import ConvertConfig
from edgevit.errors import ConfigError
from edgevit.manifest import read_golden, read_manifest
from edgevit.models.factory import build_model
from edgevit.pipeline import convert
from edgevit.preprocess import IMAGENET_MEAN, IMAGENET_STD
from edgevit.verify import verify_dir
from edgevit.targets.coreml.simulator import CoreMLSimulator

ct = pytest.importorskip("coremltools")
TINY = "nextvit_test_tiny"


def cfg(tmp_path, name, **kw):
    return ConvertConfig(model=TINY, random_init=True, target="coreml", out=str(tmp_path / name), **kw)


@pytest.fixture(scope="module")
def image_fp16(artifacts):
    folder = artifacts.get(model=TINY, random_init=True, target="coreml")
    return SimpleNamespace(out_dir=folder, manifest=read_manifest(folder))


def test_default_is_fp16_image_input_with_metadata(image_fp16):
    m = image_fp16.manifest
    assert m["precision"] == "fp16" and m["parity"]["passed"]
    assert m["input"]["type"] == "image" and m["input"]["pixels"] == "raw_rgb_0_255"
    assert m["coreml"]["normalization_in_model"] and m["coreml"]["min_ios"] == 16
    assert m["coreml"]["compute_units"] == "all"
    assert "simulator" in m["parity"]["runtime"]
    spec = ct.models.MLModel(str(image_fp16.out_dir / "model.mlpackage"), skip_model_load=True).get_spec()
    assert spec.description.input[0].type.WhichOneof("Type") == "imageType"
    assert spec.description.input[0].type.imageType.colorSpace == ct.proto.FeatureTypes_pb2.ImageFeatureType.RGB
    meta = spec.description.metadata
    # nothing invented about random weights: author/license unstated unless --author/--license (test_pipeline.py)
    assert meta.author.startswith("not stated") and meta.license.startswith("not stated") and meta.versionString
    assert "deterministic random init (seed 0)" in meta.shortDescription
    embedded = json.loads(meta.userDefined["edgevit.manifest"])
    assert embedded["preprocess"]["mean"] == list(IMAGENET_MEAN)


def test_image_input_takes_raw_pixels_and_folds_mean_std(image_fp16):
    """Raw 0-255 pixels into the artifact == PyTorch on (x/255 - mean)/std, computed here independently."""
    folder = image_fp16.out_dir
    m = read_manifest(folder)
    raw, _ = read_golden(folder, m)
    assert raw.min() >= 0 and raw.max() > 1.5 and raw.max() <= 255 and np.all(raw == np.round(raw))
    mean = np.asarray(IMAGENET_MEAN, np.float32).reshape(1, 3, 1, 1)
    std = np.asarray(IMAGENET_STD, np.float32).reshape(1, 3, 1, 1)
    normalized = (raw / 255.0 - mean) / std
    with torch.no_grad():
        ref = build_model(model=TINY, weights=None, random_init=True)(torch.from_numpy(normalized)).numpy()
    out = CoreMLSimulator(folder / "model.mlpackage").run({"image": raw})["logits"]
    assert np.abs(out - ref).max() / np.abs(ref).max() < 2e-2  # fp16 table row
    assert out.argmax() == ref.argmax()
    # and feeding normalized values instead of pixels gives something else entirely
    wrong = CoreMLSimulator(folder / "model.mlpackage").run({"image": normalized})["logits"]
    assert np.abs(wrong - ref).max() / np.abs(ref).max() > 0.1


@pytest.mark.parametrize("kw,outputs", [
    ({"precision": "fp32", "input_type": "tensor"}, ["logits"]),
    ({"precision": "fp32", "features": True}, ["stage1", "stage2", "stage3", "stage4"]),
    ({"precision": "fp16", "min_ios": 17}, ["logits"]),
])
def test_variants_convert_and_verify(tmp_path, kw, outputs):
    result = convert(cfg(tmp_path, "v", **kw))
    assert result.parity_passed
    if kw.get("input_type") == "tensor":
        assert "batch_norm" not in result.manifest["coreml"]["op_counts"]
    assert [o["name"] for o in result.manifest["outputs"]] == outputs
    report = verify_dir(result.out_dir)
    assert report.passed and "simulator" in report.runtime


def test_classifier_with_labels(tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("\n".join(f"class {i}" for i in range(10)))
    result = convert(cfg(tmp_path, "clf", labels=str(labels), precision="fp32", input_type="tensor"))
    m = result.manifest
    assert m["labels"][3] == "class 3" and m["outputs"][0]["name"] == "probabilities"
    spec = ct.models.MLModel(str(result.out_dir / "model.mlpackage"), skip_model_load=True).get_spec()
    assert spec.description.predictedFeatureName == "classLabel"
    x, gold = read_golden(result.out_dir, m)
    probs = gold["probabilities"]
    assert probs.sum() == pytest.approx(1.0, abs=1e-5)
    assert verify_dir(result.out_dir).passed


def test_layout_ops_counted_and_no_transposes(image_fp16):
    m = image_fp16.manifest
    counts = m["coreml"]["op_counts"]
    # every model BatchNorm was folded away before conversion, and the pixel normalisation is an exact
    # per-channel 1x1 conv (coremltools fuses a mul + add into a batch_norm with epsilon, scaling inputs by
    # 1/sqrt(1 + 1e-5))
    assert "batch_norm" not in counts and counts.get("transpose", 0) == 0
    # heads are split by channel slices and every activation stays rank 4; the only rank change is the
    # classifier's flatten of the pooled (B, C, 1, 1) map
    assert counts["slice_by_index"] > 0 and m["coreml"]["rank_changing_ops"] <= 1
    assert [p["name"] for p in m["rewrite"]["passes"]][2] == "bchw_attention_split"
    assert m["coreml"]["neural_engine_layout_ops"] == {k: v for k, v in counts.items()
                                                        if k in ("reshape", "transpose", "squeeze", "expand_dims",
                                                                 "slice_by_index", "slice_by_size", "split")}


def test_bad_coreml_options(tmp_path, capsys):
    for args, text in [(["--min-ios", "15"], "--min-ios must be one of 16, 17, 18"),
                       (["--compute-units", "gpu"], "--compute-units must be one of"),
                       (["--precision", "int4"], "supported: fp16, fp32")]:
        assert main(["convert", "--model", TINY, "--random-init", "--target", "coreml", "--out",
                     str(tmp_path / "o"), *args]) == 2
        assert text in capsys.readouterr().err
    with pytest.raises(ConfigError, match="fixed batch"):
        convert(cfg(tmp_path, "d", dynamic_batch=True))


def test_executorch_coreml_delegate(tmp_path):
    result = convert(ConvertConfig(model=TINY, random_init=True, target="executorch", delegate="coreml",
                                   precision="fp16", out=str(tmp_path / "etc")))
    d = result.manifest["executorch"]
    assert d["delegate"] == "coreml" and d["delegation"]["portable_nodes"] == 0
    assert d["delegation"]["delegated_subgraphs"] == 1
    assert "CoreML delegate payload" in result.manifest["parity"]["runtime"]
    assert verify_dir(result.out_dir).passed


def test_executorch_fp16_needs_coreml(tmp_path):
    with pytest.raises(ConfigError, match="fp16 is available with --delegate coreml"):
        convert(ConvertConfig(model=TINY, random_init=True, target="executorch", precision="fp16",
                              out=str(tmp_path / "x")))


@pytest.mark.slow  # full-size: Next-ViT-S
@pytest.mark.parametrize("precision", ["fp16", "fp32"])
def test_nextvit_small_coreml(tmp_path, precision):
    result = convert(ConvertConfig(model="nextvit_small", random_init=True, target="coreml", precision=precision,
                                   out=str(tmp_path / precision)))
    assert result.parity_passed and verify_dir(result.out_dir).passed
