"""--opset does what it says: the file carries the requested opset at both ends of the supported range, and an
opset the exporter cannot really produce is refused up front instead of being written as something else."""

import onnx
import onnxruntime as ort
import pytest
import torch

from edgevit.config import MAX_OPSET, MIN_OPSET, ConvertConfig
from edgevit.errors import ConfigError, ExportError
from edgevit.models.factory import build_model
from edgevit.targets.base import IOSpec
from edgevit.targets.onnx.export import export_onnx


@pytest.fixture(scope="module")
def shipped():
    return build_model(model="nextvit_digits", weights=None, random_init=True).eval()


def _declared_opset(path) -> int:
    return next(o.version for o in onnx.load(str(path)).opset_import if o.domain in ("", "ai.onnx"))


@pytest.mark.parametrize("opset", [MIN_OPSET, MAX_OPSET])
def test_supported_range_ends_are_written_and_run(shipped, tmp_path, opset):
    x = torch.rand(1, 3, 64, 64)
    path = tmp_path / "m.onnx"
    export_onnx(shipped, x, path, IOSpec(input_name="x", input_shape=(1, 3, 64, 64), output_names=("y",)),
                opset=opset)
    assert _declared_opset(path) == opset
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        want = shipped(x).numpy()
    assert abs(got - want).max() <= 1e-4 * max(1.0, abs(want).max())


def test_an_opset_the_exporter_silently_keeps_at_18_is_an_export_error(shipped, tmp_path):
    # below the supported range torch's converter logs a failure and returns the opset-18 model unchanged
    with pytest.raises(ExportError, match="wrote opset 18, not the requested 17"):
        export_onnx(shipped, torch.rand(1, 3, 64, 64), tmp_path / "m.onnx",
                    IOSpec(input_name="x", input_shape=(1, 3, 64, 64), output_names=("y",)), opset=17)


@pytest.mark.parametrize("opset", [MIN_OPSET - 1, MAX_OPSET + 1])
def test_out_of_range_opset_is_refused_before_any_work(opset):
    with pytest.raises(ConfigError, match=f"pass --opset {MIN_OPSET} to {MAX_OPSET}"):
        ConvertConfig(model="nextvit_digits", target="onnx", opset=opset, out="out/x")


def test_the_upper_bound_is_onnxruntimes(shipped, tmp_path):
    # one past MAX_OPSET exports but onnxruntime refuses to load it: the bound is the runtime's, not a guess
    path = tmp_path / "m.onnx"
    export_onnx(shipped, torch.rand(1, 3, 64, 64), path,
                IOSpec(input_name="x", input_shape=(1, 3, 64, 64), output_names=("y",)), opset=MAX_OPSET + 1)
    with pytest.raises(Exception, match="opset"):
        ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
