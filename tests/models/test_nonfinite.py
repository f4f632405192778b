"""Non-finite weights are refused when the checkpoint is read (exit 4, naming the tensor), not blamed later on a
rewrite pass or an exporter; the deploy passes check that what they make is finite."""

from __future__ import annotations

import subprocess
import sys

import pytest
import torch

from edgevit.errors import CheckpointError
from edgevit.models.factory import build_model


def _digits_state_dict():
    return {k: v.clone().contiguous() for k, v in
            build_model(model="nextvit_digits", weights=None, random_init=False).state_dict().items()}


@pytest.mark.parametrize("value", [float("nan"), float("inf"), -float("inf")])
def test_a_nan_or_inf_weight_is_refused_naming_the_tensor(tmp_path, value):
    from safetensors.torch import save_file

    from edgevit.models.checkpoint import read_state_dict

    sd = _digits_state_dict()
    name = "stages.1.blocks.0.mlp.conv1.weight" if "stages.1.blocks.0.mlp.conv1.weight" in sd else sorted(sd)[40]
    sd[name].view(-1)[3] = value
    path = tmp_path / "bad.safetensors"
    save_file(sd, str(path))
    with pytest.raises(CheckpointError, match=f"tensor {name} holds"):
        read_state_dict(path)


def test_a_negative_running_var_is_refused(tmp_path):
    from edgevit.models.checkpoint import read_state_dict

    sd = _digits_state_dict()
    name = next(k for k in sd if k.endswith("running_var"))
    sd[name][0] = -1.0
    path = tmp_path / "bad.pth"
    torch.save(sd, path)
    with pytest.raises(CheckpointError, match=f"{name} hold 1 negative variances"):
        read_state_dict(path)


@pytest.mark.parametrize("extra", [[], ["--no-rewrite"]])
def test_the_cli_exits_4_before_any_export(tmp_path, extra):
    from safetensors.torch import save_file

    sd = _digits_state_dict()
    name = sorted(k for k in sd if k.endswith("weight"))[0]
    sd[name].view(-1)[0] = float("nan")
    path = tmp_path / "nan.safetensors"
    save_file(sd, str(path))
    out = tmp_path / "out"
    r = subprocess.run([sys.executable, "-m", "edgevit.cli", "convert", "--model", "nextvit_digits", "--weights",
                        str(path), "--target", "onnx", "--out", str(out), *extra],
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 4, r.stderr
    assert f"tensor {name} holds 1 NaN" in r.stderr and "export" not in r.stderr.split("holds")[0].lower()
    assert not out.exists()


def test_a_bn_fold_that_overflows_is_named_as_the_weights_fault():
    from edgevit.rewrites import deploy

    net = build_model(model="nextvit_digits", weights=None, random_init=False)
    bn = next(m for m in net.modules() if isinstance(m, torch.nn.BatchNorm2d))
    with torch.no_grad():  # finite, but the fold's weight / sqrt(var + eps) overflows fp32
        bn.weight.fill_(3e38)
        bn.running_var.fill_(0.0)
        bn.eps = 1e-30
    with pytest.raises(CheckpointError, match="non-finite|holds"):
        deploy(net, "onnx")
