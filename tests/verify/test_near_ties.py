"""A correct fp16 artifact of a model with a deliberate near-tie passes and shows its near-ties; the same artifact
checked against a model whose head was perturbed (a real flip) fails on top-1 agreement."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import torch

from edgevit.config import ConvertConfig
from edgevit.models.factory import build_model, embedded_data
from edgevit.pipeline import convert
from edgevit.verify.parity import verify_dir

A, B = 3, 8  # the two classes made to tie


def _near_tie_weights(tmp_path):
    """The shipped digits model with classes A and B nearly equal and above every other class on every picture."""
    from safetensors.torch import save_file

    net = build_model(model="nextvit_digits", weights=None, random_init=False)
    sd = {k: v.clone().contiguous() for k, v in net.state_dict().items()}
    w, b = sd["head.fc.weight"], sd["head.fc.bias"]
    g = torch.Generator().manual_seed(0)
    w[B] = w[A] * (1 + 1e-4 * torch.randn(w.shape[1], generator=g))  # margins ~1e-4 of the logits
    b[B] = b[A]
    b[A] += 40.0
    b[B] += 40.0
    path = tmp_path / "near_tie.safetensors"
    save_file(sd, str(path))
    return path


@pytest.fixture(scope="module")
def near_tie_fp16(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("near_tie")
    images = tmp / "images"
    images.mkdir()
    for i, f in enumerate(sorted(p for p in Path(embedded_data("nextvit_digits", "eval"))
                                 .rglob("*.png"))[:40]):
        shutil.copy(f, images / f"{i:02d}.png")
    weights = _near_tie_weights(tmp)
    result = convert(ConvertConfig(model="nextvit_digits", weights=str(weights), target="onnx", precision="fp16",
                                   images=str(images), out=str(tmp / "fp16")))
    return result, weights, images


def test_a_correct_fp16_artifact_with_near_ties_passes_and_shows_them(near_tie_fp16):
    result, _, _ = near_tie_fp16
    assert result.parity_passed
    m = result.manifest["parity"]["sets"]["images"][0]
    # fp16 rounding flips some of the tied pictures: every flip is reported, each one a near-tie
    assert m["top1_agreement"] < 1.0
    flips = round((1.0 - m["top1_agreement"]) * m["samples"])
    assert m["near_ties"] == flips >= 1
    # the golden picture was chosen for a clear margin where one exists; here every picture is tied, so the
    # widest margin was taken and recorded
    assert result.manifest["golden"]["top2_margin_rel"][0] < 2e-2


def test_the_same_artifact_against_a_real_flip_fails(near_tie_fp16):
    result, weights, images = near_tie_fp16
    from safetensors.torch import load_file

    sd = load_file(str(weights))
    net = build_model(model="nextvit_digits", weights=None, random_init=False)
    net.load_state_dict(sd)
    net.eval()
    flipped = build_model(model="nextvit_digits", weights=None, random_init=False)
    sd["head.fc.bias"][0] += 120.0  # class 0, ~40 logits below the tied pair, now wins every picture
    flipped.load_state_dict(sd)
    flipped.eval()

    def runner(x):
        with torch.no_grad():
            return [flipped(torch.from_numpy(np.asarray(x))).numpy()]

    report = verify_dir(result.out_dir, images=images, weights=str(weights), runner=runner, runtime="perturbed head",
                        raise_on_failure=False)
    assert not report.passed
    got = report.sets["images"][0]
    assert got.top1_agreement == 0.0 and got.near_ties == 0  # every flip is far beyond the row's error
    assert any("images logits: top-1 agreement" in f for f in report.failures)
