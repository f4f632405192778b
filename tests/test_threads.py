"""EDGEVIT_THREADS: the thread count of the runtimes edgevit starts when a command gives none."""

import pytest

from edgevit._native import THREADS_ENV, default_threads
from edgevit.errors import ConfigError


def test_an_explicit_count_wins_then_the_variable_then_the_runtime_default(monkeypatch):
    monkeypatch.delenv(THREADS_ENV, raising=False)
    assert default_threads(None) is None and default_threads(3) == 3
    monkeypatch.setenv(THREADS_ENV, "2")
    assert default_threads(None) == 2 and default_threads(5) == 5


@pytest.mark.parametrize("raw", ["0", "-1", "two", "1.5"])
def test_a_bad_value_is_named_with_the_fix(monkeypatch, raw):
    monkeypatch.setenv(THREADS_ENV, raw)
    with pytest.raises(ConfigError, match=f"{THREADS_ENV}=.*positive whole number.*unset it"):
        default_threads(None)


def test_onnxruntime_sessions_take_the_variable(monkeypatch, tmp_path):
    import onnx
    from onnx import TensorProto, helper

    from edgevit.targets.onnx.runtime import make_session

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1])])
    path = tmp_path / "relu.onnx"
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)], ir_version=8), str(path))
    monkeypatch.setenv(THREADS_ENV, "3")
    assert make_session(path).get_session_options().intra_op_num_threads == 3
    assert make_session(path, threads=1).get_session_options().intra_op_num_threads == 1
