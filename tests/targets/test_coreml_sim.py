"""The CoreML simulator, op by op, against PyTorch: each case converts a small torch module with coremltools and
checks (1) that the ML program really contains the op under test and (2) that the simulator's output matches
PyTorch's. CoreML predict cannot run on Linux; on macOS the last test compares with it too."""

import warnings

import numpy as np
import pytest
import torch
from torch import nn

from edgevit.targets.coreml.ops import UnsupportedOpError
from edgevit.targets.coreml.simulator import CoreMLSimulator
from edgevit.targets.coreml.simulator import can_predict
from tests.numerics import assert_fp32_close

ct = pytest.importorskip("coremltools")


def convert(module, shape, tmp_path, precision="fp32", name="m"):
    module = module.eval()
    x = torch.randn(*shape, generator=torch.Generator().manual_seed(0))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(module, (x,), strict=False).run_decompositions({})
        ml = ct.convert(ep, inputs=[ct.TensorType(name="x", shape=shape, dtype=np.float32)],
                        outputs=[ct.TensorType(name="y", dtype=np.float32)], convert_to="mlprogram",
                        minimum_deployment_target=ct.target.iOS16,
                        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32)
    path = tmp_path / f"{name}.mlpackage"
    ml.save(str(path))
    with torch.no_grad():
        ref = module(x).numpy()
    return CoreMLSimulator(path), x.numpy(), ref


class Lambda(nn.Module):
    def __init__(self, fn):
        super().__init__()
        self.fn = fn

    def forward(self, x):
        return self.fn(x)


def _bn():
    bn = nn.BatchNorm2d(4)
    bn.running_mean.uniform_(-1, 1)
    bn.running_var.uniform_(0.5, 2)
    bn.weight.data.uniform_(0.5, 1.5)
    bn.bias.data.uniform_(-1, 1)
    return bn


CASES = {
    # name: (module, input shape, op the program must contain)
    "conv3x3": (nn.Conv2d(4, 8, 3, padding=1), (1, 4, 9, 7), "conv"),
    "conv_grouped_strided": (nn.Conv2d(8, 8, 3, stride=2, padding=1, groups=4), (2, 8, 9, 10), "conv"),
    "conv_dilated_nopad": (nn.Conv2d(4, 6, 3, dilation=2, bias=False), (1, 4, 11, 9), "conv"),
    "conv_1x1": (nn.Conv2d(6, 5, 1), (1, 6, 4, 4), "conv"),
    "avg_pool_ceil_exclude": (nn.AvgPool2d(2, 2, ceil_mode=True, count_include_pad=False), (1, 3, 7, 5), "avg_pool"),
    "avg_pool_even": (nn.AvgPool2d(2, 2), (1, 3, 8, 6), "avg_pool"),
    "avg_pool_pad_include": (nn.AvgPool2d(3, 2, padding=1, count_include_pad=True), (1, 2, 7, 7), "avg_pool"),
    "avg_pool1d": (nn.AvgPool1d(4, 4), (1, 3, 18), "avg_pool"),
    "max_pool": (nn.MaxPool2d(3, 2, padding=1), (1, 2, 7, 8), "max_pool"),
    "linear": (nn.Linear(6, 4), (3, 5, 6), "linear"),
    "matmul_t": (Lambda(lambda x: torch.bmm(x.transpose(1, 2), x)), (2, 5, 3), "matmul"),
    "softmax_axis1": (Lambda(lambda x: x.softmax(dim=1)), (2, 5, 3), "softmax"),
    "softmax_last": (Lambda(lambda x: (x * 3).softmax(dim=-1)), (2, 5, 3), "softmax"),
    "reshape_transpose": (Lambda(lambda x: x.reshape(2, 3, 10).permute(0, 2, 1).reshape(2, 30) + 1), (2, 3, 5, 2),
                          "transpose"),
    "concat": (Lambda(lambda x: torch.cat([x, x * 2, x[:, :1]], dim=1)), (1, 3, 2, 2), "concat"),
    "elementwise": (Lambda(lambda x: (x - 0.5) * 2 / (x.abs() + 1) + torch.maximum(x, x * 0.3)), (2, 6), "real_div"),
    "activations": (Lambda(lambda x: torch.relu(x) + torch.sigmoid(x) + torch.tanh(x) + torch.exp(x * 0.1)
                           + torch.sqrt(x.abs() + 1)), (3, 7), "sigmoid"),
    "reduce_mean": (Lambda(lambda x: x.mean(dim=(2, 3), keepdim=True) + x.mean(dim=1, keepdim=True)), (2, 3, 4, 5),
                    "reduce_mean"),
    "slice": (Lambda(lambda x: x[:, 1:, ::2, :3]), (2, 4, 6, 5), "slice_by_index"),
    "squeeze_unsqueeze": (Lambda(lambda x: x.unsqueeze(1).squeeze(-1) * 2), (2, 3, 1), "expand_dims"),
    "batch_norm": (_bn(), (2, 4, 3, 3), "batch_norm"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_simulator_matches_pytorch_fp32(case, tmp_path):
    module, shape, op_type = CASES[case]
    sim, x, ref = convert(module, shape, tmp_path)
    assert op_type in sim.op_counts(), f"{case}: the converted program has no {op_type} ({sim.op_counts()})"
    out = sim.run({"x": x})["y"]
    assert_fp32_close(out, ref)


def test_simulator_runs_enumerated_shapes_programs(tmp_path):
    """A program exported with symbolic height/width (multi-size CoreML, --img-sizes) computes its reshapes from
    ``shape`` -> ``gather`` (a scalar per dim) -> ``concat`` of scalars; the simulator runs it at each listed size."""
    module = Lambda(lambda x: x.reshape(x.shape[0], x.shape[1], -1).softmax(-1).reshape(x.shape) * 2).eval()
    x = torch.randn(1, 3, 64, 96)  # not 32: torch.export specializes a dim of 1 (32 x 1)
    dims = ({2: 32 * torch.export.Dim("h32", min=2, max=4), 3: 32 * torch.export.Dim("w32", min=2, max=4)},)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        ep = torch.export.export(module, (x,), dynamic_shapes=dims, strict=False).run_decompositions({})
        shapes = ct.EnumeratedShapes(shapes=[[1, 3, 64, 96], [1, 3, 128, 64]], default=[1, 3, 64, 96])
        ml = ct.convert(ep, inputs=[ct.TensorType(name="x", shape=shapes, dtype=np.float32)],
                        outputs=[ct.TensorType(name="y", dtype=np.float32)], convert_to="mlprogram",
                        minimum_deployment_target=ct.target.iOS16, compute_precision=ct.precision.FLOAT32)
    ml.save(str(tmp_path / "e.mlpackage"))
    sim = CoreMLSimulator(tmp_path / "e.mlpackage")
    assert {"gather", "concat"} <= set(sim.op_counts())
    for shape in ((1, 3, 64, 96), (1, 3, 128, 64)):
        xi = torch.randn(*shape)
        with torch.no_grad():
            assert_fp32_close(sim.run({"x": xi.numpy()})["y"], module(xi).numpy())


@pytest.mark.parametrize("case", ["conv_grouped_strided", "softmax_axis1", "linear", "avg_pool_ceil_exclude"])
def test_simulator_fp16_programs(case, tmp_path):
    module, shape, op_type = CASES[case]
    sim, x, ref = convert(module, shape, tmp_path, precision="fp16")
    assert sim.op_counts().get("cast", 0) >= 2  # fp32 in, fp16 compute, fp32 out
    out = sim.run({"x": x})["y"]
    # fp16 storage: ~3 significant digits
    np.testing.assert_allclose(out, ref, rtol=2e-3, atol=2e-3 * np.abs(ref).max())
    assert not np.array_equal(out, ref)  # and the rounding really happens


def test_unknown_op_is_named(tmp_path):
    with pytest.raises(UnsupportedOpError, match="atan"):
        convert(Lambda(lambda x: torch.atan(x)), (2, 3), tmp_path)


@pytest.mark.macos
@pytest.mark.skipif(not can_predict(), reason="CoreML predict needs macOS with coremltools' native runtime; "
                                             "on Linux the per-op tests above are the strongest check")
def test_simulator_matches_predict_on_macos(tmp_path):  # pragma: no cover - macOS only
    module, shape, _ = CASES["conv_grouped_strided"]
    sim, x, _ = convert(module, shape, tmp_path)
    pred = ct.models.MLModel(str(tmp_path / "m.mlpackage")).predict({"x": x})["y"]
    np.testing.assert_allclose(sim.run({"x": x})["y"], pred, rtol=1e-4, atol=1e-4)
