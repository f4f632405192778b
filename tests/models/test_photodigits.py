"""The deep trained reference model (tools/train_photodigits.py): Next-ViT-S's depth and block pattern at reduced
widths, shipped as fp16 safetensors with its held-out photographs, and an fp32 accuracy well below 100%."""

import json
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open

from edgevit.models.factory import build_model, embedded_data, embedded_weights
from edgevit.models.nextvit import get_config
from edgevit.models.pretrained import resolve_preprocess
from edgevit.preprocess import Preprocess
from edgevit.quantize.calibration import evaluation_set

MODEL = "nextvit_photodigits"


def test_it_has_next_vit_s_depth_pattern_and_sr_ratios():
    deep, small = get_config(MODEL), get_config("nextvit_small")
    kinds = [[k for k, _ in stage] for stage in deep.stage_plan()]
    assert kinds == [[k for k, _ in stage] for stage in small.stage_plan()]
    assert sum(map(len, kinds)) == 20 and deep.depths == small.depths and deep.sr_ratios == small.sr_ratios
    widths = [c for stage in deep.stage_plan() for _, c in stage]
    assert max(widths) < max(c for stage in small.stage_plan() for _, c in stage)  # reduced widths


def test_shipped_weights_are_fp16_and_at_most_16_mb():
    path = Path(embedded_weights(MODEL))
    assert path.stat().st_size <= 16 * 2**20
    with safe_open(str(path), "pt") as f:
        dtypes = {f.get_slice(k).get_dtype() for k in f.keys()}
    assert "F16" in dtypes and "F32" not in dtypes


def test_held_out_accuracy_through_the_shipped_files_matches_training_and_is_hard():
    """fp32 (fp16-stored weights) through the real path: shipped PNGs, the sidecar's preprocessing, the loader."""
    info = json.loads(Path(embedded_weights(MODEL)).with_suffix(".json").read_text())
    model = build_model(model=MODEL, weights=None, random_init=False)
    values, sources = resolve_preprocess(model_default_size=64, weights=embedded_weights(MODEL))
    assert values["crop_pct"] == 1.0 and "default" not in sources["crop_pct"]  # from the sidecar
    pre = Preprocess(size=values["img_size"], crop_pct=values["crop_pct"], interpolation=values["interpolation"],
                     mean=values["mean"], std=values["std"])
    labels = [str(i) for i in range(10)]
    data = evaluation_set(embedded_data(MODEL, "eval"), pre, labels, None)
    assert len(data.files) == info["held_out_images"] == 450
    with torch.no_grad():
        pred = np.concatenate([model(torch.from_numpy(data.normalized[i:i + 150])).argmax(1).numpy()
                               for i in range(0, len(data.normalized), 150)])
    top1 = float((pred == data.labels).mean())
    assert abs(top1 - info["held_out_top1"]) <= 1 / 450 + 1e-9
    assert 0.5 < top1 < 0.95  # far above chance (10%), well below 100%
