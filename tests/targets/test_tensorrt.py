"""TensorRT target. The CPU side is real and runs here: the TensorRT-ready ONNX (ModelOpt AutoCast fp16, ModelOpt
int8 Q/DQ) in ONNX Runtime against PyTorch, Polygraphy lint, the operator check against the TensorRT ONNX parser's
list, the build settings, exit 5 for the engine without a GPU. The engine itself needs an NVIDIA GPU with TensorRT:
those tests are marked ``gpu`` and skip here with that reason (on the server: ``pytest -m gpu
tests/targets/test_tensorrt.py``). Every precision on the shipped reference model is in test_matrix.py."""

import json
import os
import textwrap

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from edgevit.config import ConvertConfig
from edgevit.errors import ConfigError
from edgevit.manifest import read_golden, read_manifest
from edgevit.pipeline import convert
from edgevit.targets.base import RuntimeSpec
from edgevit.targets.onnx.runtime import make_session
from edgevit.targets.tensorrt.checks import check_operators, operator_table, polygraphy_lint
from edgevit.targets.tensorrt.engine import engine_problems
from tests.robustness.conftest import REPO, cli, expect

pytestmark = pytest.mark.filterwarnings("ignore::DeprecationWarning")

NO_ENGINE = engine_problems()
gpu = pytest.mark.skipif(bool(NO_ENGINE), reason="needs an NVIDIA GPU with TensorRT (pip install "
                         f"'edgevit[tensorrt]'); here: {'; '.join(NO_ENGINE)}. On the server: "
                         "pytest -m gpu tests/targets/test_tensorrt.py")


@pytest.fixture(scope="module")
def digits_trt(tmp_path_factory):
    """The shipped reference model as a TensorRT folder: fp16 (AutoCast), profile batch 1-8, opt 2."""
    out = tmp_path_factory.mktemp("trt") / "digits_fp16"
    convert(ConvertConfig(model="nextvit_digits", target="tensorrt", precision="fp16", batch=2, max_batch=8,
                          eval_count=60, out=str(out)))
    return out


def _model(nodes, inputs, outputs, inits=(), opset=18):
    graph = helper.make_graph(nodes, "g", inputs, outputs, initializer=list(inits))
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)], ir_version=10)


def _save(model, path):
    onnx.save(model, str(path))
    return path


def test_fp16_folder_is_tensorrt_ready_and_matches_pytorch_in_onnxruntime(digits_trt):
    m = read_manifest(digits_trt)
    assert m["target"] == "tensorrt" and m["artifact"] == "model.onnx" and m["parity"]["passed"]
    assert m["parity"]["runtime"] == "onnxruntime" and m["input"]["shape"][0] == "batch"
    model = onnx.load(str(digits_trt / "model.onnx"))
    # fp32 graph input and output, fp16 inside: AutoCast put the precision into the graph
    assert model.graph.input[0].type.tensor_type.elem_type == TensorProto.FLOAT
    assert model.graph.output[0].type.tensor_type.elem_type == TensorProto.FLOAT
    conv_weights = [i for i in model.graph.initializer if i.name.endswith(".weight") and len(i.dims) == 4]
    assert conv_weights and all(w.data_type == TensorProto.FLOAT16 for w in conv_weights)
    t = m["tensorrt"]
    assert t["supported_operators"]["problems"] == [] and t["lint"]["passed"]
    assert t["supported_operators"]["op_counts"] == t["op_counts"]
    assert t["engine"] is None and "build-engine" in t["engine_note"]
    q = t["quantization"]
    assert q["fp16_data_max"] == 512.0 and q["calibration_images"] > 0
    assert all(k["why"] for k in q["kept_fp32"])


def test_build_settings_name_the_profile_the_workspace_and_the_trtexec_line(digits_trt):
    b = read_manifest(digits_trt)["tensorrt"]["build"]
    assert b["profile"] == {"input": "image", "min": [1, 3, 64, 64], "opt": [2, 3, 64, 64], "max": [8, 3, 64, 64]}
    line = b["trtexec"].split()
    assert line[0] == "trtexec" and "--onnx=model.onnx" in line and "--saveEngine=model.plan" in line
    assert {"--minShapes=image:1x3x64x64", "--optShapes=image:2x3x64x64", "--maxShapes=image:8x3x64x64",
            "--memPoolSize=workspace:4096M", "--stronglyTyped", "--timingCacheFile=timing.cache"} <= set(line)


def test_the_onnx_takes_every_batch_of_the_profile(digits_trt):
    """The engine's profile spans batch 1-8, so the ONNX must run at any of them, here in ONNX Runtime."""
    from edgevit.targets import get_target

    m = read_manifest(digits_trt)
    run = get_target("tensorrt").load(digits_trt / "model.onnx", RuntimeSpec.from_manifest(m))
    x, _ = read_golden(digits_trt, m)
    batch = np.concatenate([x, x, x])[:5]
    full = run(batch)[0]
    single = np.concatenate([run(batch[i:i + 1])[0] for i in range(5)])
    assert full.shape[0] == 5
    np.testing.assert_allclose(full, single, rtol=1e-2, atol=1e-2)


def test_autocast_keeps_overflowing_nodes_in_fp32_and_says_why(tmp_path):
    """x -> Mul(1000) -> Add(1): on inputs of magnitude <= 1 the product reaches ~1000 > 512, so AutoCast must keep
    the Mul (and the Add reading it) in fp32 and name the range; scaled by 10 nothing overflows."""
    from edgevit.quantize.tensorrt_quant import convert_fp16

    def model(scale):
        nodes = [helper.make_node("Mul", ["x", "s"], ["y"], name="scale_up"),
                 helper.make_node("Add", ["y", "one"], ["z"], name="shift")]
        inits = [numpy_helper.from_array(np.array(scale, np.float32), "s"),
                 numpy_helper.from_array(np.array(1.0, np.float32), "one")]
        return _model(nodes, [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])],
                      [helper.make_tensor_value_info("z", TensorProto.FLOAT, ["batch", 4])], inits)

    calib = np.random.default_rng(0).uniform(-1, 1, (16, 4)).astype(np.float32)
    calib[0, 0] = 1.0  # the largest input: Mul's output reaches 1000 exactly there
    hot = convert_fp16(_save(model(1000.0), tmp_path / "hot.onnx"), tmp_path / "hot16.onnx", calib,
                       input_name="x", opset=18)
    kept = {k["node"]: k["why"] for k in hot["kept_fp32"]}
    assert "scale_up" in kept and "out of range" in kept["scale_up"] and "1000" in kept["scale_up"]
    cool = convert_fp16(_save(model(10.0), tmp_path / "cool.onnx"), tmp_path / "cool16.onnx", calib,
                        input_name="x", opset=18)
    assert cool["kept_fp32"] == []
    out = make_session(tmp_path / "hot16.onnx").run(None, {"x": calib})[0]
    np.testing.assert_allclose(out, calib * 1000 + 1, rtol=1e-6)  # kept in fp32: exact


def test_modelopt_int8_leaves_onnxruntime_quantization_unpatched(tmp_path):
    """ModelOpt's int8 path monkeypatches onnxruntime.quantization process-wide; edgevit runs it in a child so that
    an ONNX Runtime int8 conversion later in the same process still works (it failed in CI before)."""
    from onnxruntime.quantization.calibrate import CalibraterBase, MinMaxCalibrater

    from edgevit.quantize.tensorrt_quant import quantize_int8

    before = (CalibraterBase.__init__, MinMaxCalibrater.collect_data, MinMaxCalibrater.compute_data)
    rng = np.random.default_rng(0)
    inits = [numpy_helper.from_array(rng.standard_normal(shape).astype(np.float32) * 0.1, name)
             for name, shape in (("w1", (32, 16, 3, 3)), ("b1", (32,)), ("w2", (32, 32, 3, 3)), ("b2", (32,)))]
    conv = _model([helper.make_node("Conv", ["x", "w1", "b1"], ["h"], name="conv1", pads=[1, 1, 1, 1]),
                   helper.make_node("Relu", ["h"], ["r"], name="relu"),
                   helper.make_node("Conv", ["r", "w2", "b2"], ["y"], name="conv2", pads=[1, 1, 1, 1])],
                  [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 16, 8, 8])],
                  [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 32, 8, 8])], inits)
    calib = rng.standard_normal((8, 16, 8, 8)).astype(np.float32)
    info = quantize_int8(_save(conv, tmp_path / "conv.onnx"), tmp_path / "q.onnx", calib, method="minmax")
    assert info["quantize_linear_nodes"] > 0
    assert (CalibraterBase.__init__, MinMaxCalibrater.collect_data, MinMaxCalibrater.compute_data) == before


def test_operator_check_finds_what_the_tensorrt_parser_refuses(tmp_path):
    table = operator_table()
    refused = next(op for op, row in table["operators"].items() if not row["supported"])
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    clean = _model([helper.make_node("Relu", ["x"], ["y"], name="ok")], [x], [y])
    assert check_operators(_save(clean, tmp_path / "clean.onnx"))["problems"] == []

    bad_op = _model([helper.make_node(refused, ["x"], ["y"], name="bad")], [x], [y])
    assert any(refused in p for p in check_operators(_save(bad_op, tmp_path / "op.onnx"))["problems"])

    zp = [numpy_helper.from_array(np.array(0.1, np.float32), "s"), numpy_helper.from_array(np.array(3, np.int8), "z")]
    q = _model([helper.make_node("QuantizeLinear", ["x", "s", "z"], ["q"], name="q"),
                helper.make_node("DequantizeLinear", ["q", "s", "z"], ["y"], name="dq")], [x], [y], zp, opset=19)
    problems = check_operators(_save(q, tmp_path / "zp.onnx"))["problems"]
    assert any("zero point" in p and "'q'" in p for p in problems) and any("'dq'" in p for p in problems)

    axes = helper.make_tensor_value_info("axes", TensorProto.INT64, [1])
    red = _model([helper.make_node("ReduceMean", ["x", "axes"], ["y"], name="mean", keepdims=1)], [x, axes], [y])
    assert any("axes" in p for p in check_operators(_save(red, tmp_path / "axes.onnx"))["problems"])

    i8 = helper.make_tensor_value_info("x", TensorProto.INT8, [1, 4])
    y8 = helper.make_tensor_value_info("y", TensorProto.INT8, [1, 4])
    conv_int8 = _model([helper.make_node("Softmax", ["x"], ["y"], name="sm")], [i8], [y8])
    assert any("input type INT8" in p for p in check_operators(_save(conv_int8, tmp_path / "t.onnx"))["problems"])

    new = _model([helper.make_node("Relu", ["x"], ["y"])], [x], [y], opset=table["opset_max"] + 1)
    assert any("opset" in p for p in check_operators(_save(new, tmp_path / "new.onnx"))["problems"])


def test_polygraphy_lint_fails_a_broken_graph(tmp_path):
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 4])
    ok = polygraphy_lint(_save(_model([helper.make_node("Relu", ["x"], ["y"], name="r")], [x], [y]),
                               tmp_path / "ok.onnx"))
    assert ok["passed"] and ok["command"] == "polygraphy check lint ok.onnx"
    # the MatMul's inner dimensions disagree (4 vs 3): ONNX Runtime cannot run it
    w = numpy_helper.from_array(np.ones((3, 2), np.float32), "w")
    broken = _model([helper.make_node("MatMul", ["x", "w"], ["y"], name="mm")], [x],
                    [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 2])], [w])
    report = polygraphy_lint(_save(broken, tmp_path / "broken.onnx"))
    assert not report["passed"] and (report["failing_nodes"] or report["errors"])


def test_options_are_checked_before_anything_is_built(tmp_path):
    with pytest.raises(ConfigError, match="--max-batch 2 is smaller than --batch 4"):
        from edgevit.pipeline import plan

        plan(ConvertConfig(model="nextvit_digits", target="tensorrt", batch=4, max_batch=2, out=str(tmp_path / "a")))
    with pytest.raises(ConfigError, match="--max-batch .recipe key max_batch. is an option of tensorrt; target onnx"):
        plan(ConvertConfig(model="nextvit_digits", target="onnx", max_batch=8, out=str(tmp_path / "b")))
    with pytest.raises(ConfigError, match="percentile"):
        plan(ConvertConfig(model="nextvit_digits", target="tensorrt", precision="int8", calib_method="percentile",
                           out=str(tmp_path / "c")))


def test_missing_modelopt_exits_5_before_anything_is_built(tmp_path):
    (tmp_path / "sitecustomize.py").write_text(textwrap.dedent("""
        import importlib.abc, sys
        class Block(importlib.abc.MetaPathFinder):
            def find_spec(self, name, path=None, target=None):
                if name.split(".")[0] in ("modelopt", "polygraphy"):
                    raise ImportError(f"blocked for the test: {name}")
                return None
        sys.meta_path.insert(0, Block())
    """))
    env = {"PYTHONPATH": f"{tmp_path}{os.pathsep}{REPO}"}
    r = cli("convert", "--model", "nextvit_digits", "--target", "tensorrt", "--precision", "int8", "--out",
            tmp_path / "o", env=env)
    expect(r, 5, "edgevit[tensorrt-onnx]", "modelopt", "polygraphy")
    assert not (tmp_path / "o").exists()


@pytest.mark.skipif(not NO_ENGINE, reason="this machine can build engines")
def test_build_engine_without_gpu_or_tensorrt_exits_5_and_says_where_to_build(digits_trt, tmp_path):
    before = sorted(p.name for p in digits_trt.iterdir())
    r = cli("build-engine", digits_trt)
    expect(r, 5, "cannot build a TensorRT engine on this machine", f"edgevit build-engine {digits_trt}")
    for problem in NO_ENGINE:
        assert problem.split(" (")[0].lower() in r.stderr.lower()
    assert sorted(p.name for p in digits_trt.iterdir()) == before  # nothing written
    # convert --build says so before converting anything
    out = tmp_path / "never"
    r = cli("convert", "--model", "nextvit_digits", "--target", "tensorrt", "--build", "--out", out)
    expect(r, 5, "edgevit build-engine")
    assert not out.exists()


@pytest.mark.skipif(not NO_ENGINE, reason="this machine can run engines")
def test_bench_skips_a_tensorrt_folder_with_the_reason(digits_trt):
    from edgevit.bench.runner import bench, format_table

    rows = bench([digits_trt], runs=1, warmup=0, memory=False, gemm=False)
    assert len(rows) == 1 and "edgevit build-engine" in rows[0]["skipped"]
    assert "skipped: no TensorRT engine" in format_table(rows)


def test_drift_localizes_the_tensorrt_onnx_block_by_block(digits_trt):
    from edgevit.verify.drift import deployed_reference, drift_dir, units_of

    m = read_manifest(digits_trt)
    report = drift_dir(digits_trt)
    units = [u for u, _, _ in units_of(deployed_reference(m, None)[0])]
    # AutoCast rewrote the graph; the module scopes the exporter recorded survive it, so every block is found
    assert [b.unit for b in report.blocks[:-1]] == units, report.notes
    assert report.runtime == "onnxruntime" and all(b.cosine_min > 0.999 for b in report.blocks)


@pytest.mark.gpu
@gpu
def test_engine_builds_matches_pytorch_and_is_timed(digits_trt):  # pragma: no cover - needs a GPU with TensorRT
    from edgevit.bench.runner import bench
    from edgevit.verify.engine import build_engine

    record, report = build_engine(digits_trt, per_tensor=True)
    assert report.passed and (digits_trt / "model.plan").is_file() and (digits_trt / "timing.cache").is_file()
    m = read_manifest(digits_trt)
    assert m["tensorrt"]["engine"]["plan_sha256"] == record["plan_sha256"] and record["gpu"] and record["tensorrt"]
    for batch in (1, 2):  # batch 1 and the profile's opt batch
        row = bench([digits_trt], runs=5, warmup=2, batch=batch, memory=False, gemm=False)[0]
        assert "skipped" not in row and row["p50_ms"] > 0
    json.dumps(record)
