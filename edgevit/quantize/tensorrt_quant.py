"""TensorRT: precision lives in the ONNX (TensorRT 10.12+ builds strongly typed networks; 11.x has no other kind).

fp16 is NVIDIA ModelOpt's AutoCast: every node in fp16 except those whose inputs or outputs exceed ``FP16_DATA_MAX``
in magnitude on the calibration images (and those whose initializers do not fit fp16), with fp32 graph inputs and
outputs. int8 is ModelOpt's explicit QuantizeLinear/DequantizeLinear placement, calibrated on the calibration
images with ONNX Runtime's CPU provider; what it leaves unquantized runs in fp16 (ModelOpt's
``high_precision_dtype``, the TensorRT recipe), so an int8 engine is compared with an fp16 one.

ModelOpt configures its own console logging at import and again in every ``quantize`` call; ``_captured`` keeps
its messages out of the user's terminal and in edgevit's debug log, and reads AutoCast's reasons from them.
"""

from __future__ import annotations

import contextlib
import io
import logging
import re
import tempfile
from pathlib import Path

import numpy as np

from edgevit.errors import ConfigError, ExportError, MissingDependencyError

log = logging.getLogger(__name__)

# AutoCast keeps a node in fp32 when an input or output exceeds this magnitude on the calibration images: ModelOpt's
# own default (autocast.convert.DEFAULT_DATA_MAX), 1/128 of fp16's largest value 65504, so that sums and products
# downstream keep headroom.
FP16_DATA_MAX = 512.0
# ModelOpt's names for edgevit's calibration methods ("percentile" has no ModelOpt int8 counterpart)
CALIB_METHODS = {"minmax": "max", "entropy": "entropy"}
# calibration images per ONNX Runtime run: AutoCast exposes every intermediate tensor as an output
_BATCH = 8

_SKIPPED = re.compile(r"Skipping node (?P<node>\S+): (?P<why>.*)")


@contextlib.contextmanager
def _captured(lines: list[str]):
    """Run ModelOpt with its console handlers replaced by a collector; handlers, level, propagation and its
    ``configure_logging`` are put back afterwards, so the caller's logging set-up is untouched."""

    class _Collect(logging.Handler):
        def emit(self, record):
            lines.append(record.getMessage())

    names = ("modelopt.onnx", "modelopt.onnx.autocast")
    saved = {n: (logging.getLogger(n).handlers[:], logging.getLogger(n).level, logging.getLogger(n).propagate)
             for n in names}
    collector = _Collect()
    for n in names:
        lg = logging.getLogger(n)
        lg.handlers = [collector]
        lg.propagate = False
        lg.setLevel(logging.INFO)
    # ModelOpt's quantize() calls configure_logging(), which puts a stdout handler back and turns propagation to the
    # root logger on (its messages would reach the user's terminal through the caller's root handler): a no-op for
    # the duration of the call
    import sys

    import modelopt.onnx.logging_config as lc
    import modelopt.onnx.quantization.int8  # noqa: F401 - loaded now so that its copy is patched too
    import modelopt.onnx.quantization.quantize  # noqa: F401

    patched = [m for name, m in list(sys.modules.items()) if name.startswith("modelopt.onnx")
               and getattr(m, "configure_logging", None) is lc.configure_logging]
    for m in patched:
        m.configure_logging = lambda *a, **k: None
    out = io.StringIO()
    try:
        with contextlib.redirect_stdout(out):
            yield
    finally:
        for m in patched:
            m.configure_logging = lc.configure_logging
        for n, (handlers, level, propagate) in saved.items():
            lg = logging.getLogger(n)
            lg.handlers, lg.level, lg.propagate = handlers, level, propagate
        lines.extend(line for line in out.getvalue().splitlines() if line.strip())
        for line in lines:
            log.debug("modelopt: %s", line)


def _require():
    try:
        import modelopt.onnx  # noqa: F401 - also checks its ONNX dependencies (onnx_graphsurgeon ...)
    except ImportError as e:
        raise MissingDependencyError(f"the tensorrt target prepares its ONNX with NVIDIA ModelOpt, which is not "
                                     f"usable here ({e}): pip install 'edgevit[tensorrt-onnx]'") from e


def _npz_batches(calibration: np.ndarray, input_name: str, folder: Path) -> Path:
    """The calibration inputs as AutoCast reads them: a folder of .npz files, one batch each (its statistics
    are aggregated over every file)."""
    folder.mkdir()
    for i in range(0, len(calibration), _BATCH):
        np.savez(folder / f"batch_{i // _BATCH:05d}.npz", **{input_name: calibration[i:i + _BATCH]})
    return folder


def convert_fp16(src: Path, dest: Path, calibration: np.ndarray, *, input_name: str, opset: int,
                 keep_float_nodes: tuple[str, ...] = ()) -> dict:
    """AutoCast ``src`` to fp16 with fp32 I/O into ``dest``; returns the manifest's ``quantization`` section with
    every node kept in fp32 and ModelOpt's reason for it (``reference IO out of range: ... absmax=...``)."""
    _require()
    import onnx
    from modelopt.onnx.autocast import convert_to_mixed_precision

    if calibration is None or not len(calibration):
        raise ConfigError("tensorrt fp16 needs calibration images (AutoCast keeps in fp32 the layers whose "
                          "activations overflow fp16 on them): pass --calib-dir DIR")
    lines: list[str] = []
    with tempfile.TemporaryDirectory(prefix="edgevit-autocast-") as tmp:
        data = _npz_batches(np.ascontiguousarray(calibration, np.float32), input_name, Path(tmp) / "calib")
        try:
            with _captured(lines):
                model = convert_to_mixed_precision(
                    str(src), low_precision_type="fp16", keep_io_types=True, calibration_data=str(data),
                    data_max=FP16_DATA_MAX, providers=["cpu"], opset=opset,
                    nodes_to_exclude=[f"^{re.escape(n)}$" for n in keep_float_nodes] or None)
        except Exception as e:  # noqa: BLE001 - ModelOpt's failures become an ExportError naming the step
            raise ExportError(f"ModelOpt AutoCast (fp16) failed: {type(e).__name__}: {e}\n"
                              + "\n".join(lines[-5:])) from e
        onnx.save(model, str(dest))
    from edgevit.quantize.onnx_quant import module_of_nodes

    modules = module_of_nodes(src)
    kept = {}
    for line in lines:
        m = _SKIPPED.match(line)
        if m:
            kept[m["node"]] = m["why"]
    total = sum(1 for n in model.graph.node if n.op_type not in ("Cast", "Constant"))
    return {"scheme": "fp16 (ModelOpt AutoCast, fp32 graph inputs and outputs)",
            "tool": "modelopt.onnx.autocast.convert_to_mixed_precision", "fp16_data_max": FP16_DATA_MAX,
            "calibration_images": int(len(calibration)), "nodes": total,
            "kept_fp32": [{"node": n, "module": modules.get(n), "why": why} for n, why in kept.items()],
            "kept_float": sorted(kept)}


def quantize_int8(src: Path, dest: Path, calibration: np.ndarray, *, method: str,
                  keep_float_nodes: tuple[str, ...] = ()) -> dict:
    """ModelOpt explicit int8 Q/DQ of ``src`` into ``dest``, calibrated on ``calibration`` with ONNX Runtime's
    CPU provider; returns the manifest's ``quantization`` section."""
    _require()
    import onnx
    from modelopt.onnx.quantization import quantize

    if method not in CALIB_METHODS:
        raise ConfigError(f"--calib-method {method} is not available for tensorrt int8; ModelOpt calibrates with "
                          f"{' or '.join(CALIB_METHODS)}")
    if calibration is None or not len(calibration):
        raise ConfigError("tensorrt int8 needs calibration images: pass --calib-dir DIR")
    lines: list[str] = []
    try:
        with _captured(lines):
            quantize(str(src), quantize_mode="int8", calibration_data=np.ascontiguousarray(calibration, np.float32),
                     calibration_method=CALIB_METHODS[method], calibration_eps=["cpu"], output_path=str(dest),
                     nodes_to_exclude=[f"^{re.escape(n)}$" for n in keep_float_nodes] or None,
                     high_precision_dtype="fp16", log_level="INFO")
    except Exception as e:  # noqa: BLE001
        raise ExportError(f"ModelOpt int8 quantization failed: {type(e).__name__}: {e}\n"
                          + "\n".join(lines[-5:])) from e
    if not dest.is_file():
        raise ExportError("ModelOpt int8 quantization wrote no model:\n" + "\n".join(lines[-5:]))
    model = onnx.load(str(dest), load_external_data=False)
    q = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    if q == 0:
        raise ExportError("ModelOpt placed no QuantizeLinear node: the model would not run in int8")
    return {"scheme": "int8 explicit Q/DQ (ModelOpt); the ops it leaves unquantized in fp16",
            "tool": "modelopt.onnx.quantization.quantize", "calib_method": CALIB_METHODS[method],
            "calibration_images": int(len(calibration)), "quantize_linear_nodes": q,
            "high_precision_dtype": "fp16", "kept_float": list(keep_float_nodes)}
