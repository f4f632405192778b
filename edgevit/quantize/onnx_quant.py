"""ONNX / ORT: int8 static QDQ through onnxruntime.quantization, fp16 through onnxruntime's float16 converter."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import numpy as np

from edgevit._io import temp_dir
from edgevit.errors import ConfigError, ExportError

log = logging.getLogger(__name__)

CALIB_METHODS = ("minmax", "entropy", "percentile")


def _reader(name: str, data: np.ndarray, batch: int | None):
    """Every calibration image, in batches of the model's fixed batch (wrap-around fill, as for ExecuTorch)."""
    from onnxruntime.quantization import CalibrationDataReader

    from edgevit.quantize.calibration import calibration_batches

    class Reader(CalibrationDataReader):
        def __init__(self):
            self.items = iter([{name: x} for x in calibration_batches(data, batch or 1)])

        def get_next(self):
            return next(self.items, None)

    return Reader()


def module_of_nodes(path: Path) -> dict[str, str]:
    """ONNX node name -> the PyTorch module path it came from (torch's exporter records it as metadata)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    out = {}
    for node in model.graph.node:
        meta = {p.key: p.value for p in node.metadata_props}
        scope = meta.get("pkg.torch.onnx.name_scopes") or meta.get("namespace") or ""
        names = [s for s in scope.strip("[]").replace("'", "").replace('"', "").split(", ") if s]
        if names:
            out[node.name] = names[-2] if len(names) > 1 else names[-1]
    return out


def op_precisions(path: Path) -> dict[str, dict[str, int]]:
    """Which ops of a QDQ model compute on int8 values, by op type: an op whose every computed input comes out of a
    DequantizeLinear and whose every output goes into a QuantizeLinear is run as an int8 kernel by onnxruntime;
    any other op (Q/DQ excepted) computes in float."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    producer = {o: n.op_type for n in model.graph.node for o in n.output}
    readers: dict[str, list[str]] = {}
    for n in model.graph.node:
        for i in n.input:
            readers.setdefault(i, []).append(n.op_type)
    split: dict[str, dict[str, int]] = {"int8": {}, "float": {}}
    for n in model.graph.node:
        if n.op_type in ("QuantizeLinear", "DequantizeLinear"):
            continue
        computed = [i for i in n.input if i in producer]
        int8 = computed and all(producer[i] == "DequantizeLinear" for i in computed) and \
            all(readers.get(o) and all(r == "QuantizeLinear" for r in readers[o]) for o in n.output)
        side = split["int8" if int8 else "float"]
        side[n.op_type] = side.get(n.op_type, 0) + 1
    return {k: dict(sorted(v.items())) for k, v in split.items()}


# KL-divergence search over a 512-bin histogram for a 128-bin quantized one (TensorRT uses 2048 bins; onnxruntime
# searches in Python: 76 s for the digits model's calibration at 2048 bins, 10 s at 512, whose search has 193
# candidate thresholds per tensor; benchmarks/results/calib_methods_onnx.txt). onnxruntime's quantize_static cannot
# pass these to its entropy calibrator, whose defaults (128 and 128) leave the search a single candidate, the full
# range: "entropy" gave byte-identical models to minmax (tests/quantize/test_quantize.py checks the fix).
ENTROPY_BINS = {"num_bins": 512, "num_quantized_bins": 128}


def _entropy_ranges(model_path: Path, reader, cache: Path) -> None:
    """Calibrate ``model_path`` with onnxruntime's entropy calibrator at ENTROPY_BINS and save the ranges where
    quantize_static reads them (its calibration cache)."""
    from onnxruntime.quantization.calibrate import CalibrationMethod, create_calibrator, save_tensors_data

    with temp_dir("calib") as tmp:
        calibrator = create_calibrator(model_path, None, augmented_model_path=str(Path(tmp) / "augmented.onnx"),
                                       calibrate_method=CalibrationMethod.Entropy, extra_options=dict(ENTROPY_BINS))
        calibrator.collect_data(reader)
        save_tensors_data(calibrator.compute_data(), cache)


REDUCE_RANGE = True  # 7-bit weights (quantize_int8's docstring); benchmarks/onnx_int8_saturation.py sets False


def quantize_int8(fp32_path: Path, out_path: Path, calib: np.ndarray, *, input_name: str, batch: int | None,
                  method: str = "minmax", keep_float: tuple[str, ...] = ()) -> dict:
    """Static int8 QDQ: per-channel int8 weights in a 7-bit range, uint8 activations calibrated on ``calib``.

    The 7-bit weight range (``reduce_range``) is what makes one artifact right on every x86 CPU: without VNNI
    (AVX2-only CPUs) onnxruntime multiplies uint8 x int8 with VPMADDUBSW, whose int16 pair sums saturate on 8-bit
    weights (onnxruntime's quantization docs name this and this remedy). Measured on an AVX2-only AMD EPYC: the
    shipped digits model's int8 agreed with fp32 on 97.1% of its 450 held-out images with 8-bit weights (mean cosine
    0.969) and on 100% with 7 (0.9997); the deep reference 87.6% against 96.0% (``benchmarks/results/
    onnx_int8_saturation.json``).

    ``keep_float`` lists PyTorch module paths whose nodes stay in float (budget mode).
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static
    from onnxruntime.quantization.shape_inference import quant_pre_process

    if method not in CALIB_METHODS:
        raise ConfigError(f"unknown calibration method {method!r}; choose one of {', '.join(CALIB_METHODS)}")
    pre_path = out_path.with_name("preprocessed.onnx")
    owners = module_of_nodes(fp32_path)
    matched = {n: k for n, mod in owners.items() for k in keep_float if mod == k or mod.startswith(k + ".")}
    exclude = sorted(matched)
    kept = set(matched.values())
    missing = sorted(set(keep_float) - kept)
    if missing:
        raise ExportError(f"modules to keep in float have no nodes in the ONNX graph: {missing[:5]}; this is a bug "
                          "in the layer ranking (names must be paths inside the exported model)")
    tmp = temp_dir("quant")
    cache = Path(tmp.name) / "ranges.json" if method == "entropy" else None
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            quant_pre_process(str(fp32_path), str(pre_path), skip_symbolic_shape=True)
            if cache is not None:
                _entropy_ranges(pre_path, _reader(input_name, calib, batch), cache)
            quantize_static(str(pre_path), str(out_path), _reader(input_name, calib, batch),
                            quant_format=QuantFormat.QDQ, per_channel=True, activation_type=QuantType.QUInt8,
                            weight_type=QuantType.QInt8, calibrate_method={
                                "minmax": CalibrationMethod.MinMax, "entropy": CalibrationMethod.Entropy,
                                "percentile": CalibrationMethod.Percentile}[method],
                            nodes_to_exclude=exclude or None, reduce_range=REDUCE_RANGE,
                            extra_options={"ActivationSymmetric": False, "WeightSymmetric": True},
                            calibration_cache_path=cache)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"onnxruntime int8 quantization failed: {type(e).__name__}: {e}") from e
    finally:
        pre_path.unlink(missing_ok=True)
        tmp.cleanup()
    return {"scheme": "int8 static QDQ (onnxruntime.quantization)",
            "weights": "int8 per-channel symmetric, 7-bit range (reduce_range: no saturation on x86 without VNNI)",
            "activations": "uint8 per-tensor asymmetric", "calibration_method": method,
            **({"entropy_histogram": dict(ENTROPY_BINS)} if method == "entropy" else {}),
            "calibration_images": int(len(calib)),
            "kept_float": [k for k in keep_float if k in kept],
            "kept_float_nodes": len(exclude),
            # benchmarks/int8_configs.py (results/int8_configs.json): percentile calibration, the attention core,
            # the residual adds or everything but Conv/Gemm left in float move top-1 agreement by 1-3 of the 450
            # deep-reference images, in both directions, and leave it at or below the default's 5 of the 7
            # photographs through random-init S: ties, so the default stays
            "configuration": "edgevit default (every op onnxruntime can quantize, minmax unless --calib-method)",
            "ops": op_precisions(out_path)}


def convert_fp16(fp32_path: Path, out_path: Path) -> dict:
    import onnx
    from onnxruntime.transformers.float16 import convert_float_to_float16

    model = onnx.load(str(fp32_path))
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            half = convert_float_to_float16(model, keep_io_types=True)
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"onnxruntime fp16 conversion failed: {type(e).__name__}: {e}") from e
    onnx.save(half, str(out_path))
    return {"scheme": "fp16 weights and activations, fp32 inputs/outputs (onnxruntime float16 converter)"}
