"""TensorRT: precision lives in the ONNX (TensorRT 10.12+ builds strongly typed networks; 11.x has no other kind).

fp16 is NVIDIA ModelOpt's AutoCast: every node in fp16 except those whose inputs or outputs exceed ``FP16_DATA_MAX``
in magnitude on the calibration images (and those whose initializers do not fit fp16), with fp32 graph inputs and
outputs. int8 is ModelOpt's explicit QuantizeLinear/DequantizeLinear placement, calibrated on the calibration
images with ONNX Runtime's CPU provider; what it leaves unquantized runs in fp16 (ModelOpt's
``high_precision_dtype``, the TensorRT recipe), so an int8 engine is compared with an fp16 one.

ModelOpt runs in a child interpreter (``_in_child``): its int8 path monkeypatches ``onnxruntime.quantization``'s
calibrators and quantizers for the whole process (``ort_patching.patch_ort_modules``) and never restores them, which
broke edgevit's own ONNX Runtime int8 later in the same process ("Quantization parameters are not specified for
param image"); it also configures console logging at import and in every ``quantize`` call. In the child,
``_captured`` keeps its messages out of the user's terminal, and AutoCast's reasons are read from them.
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np

from edgevit._io import temp_dir
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


def _require():
    try:
        import modelopt.onnx  # noqa: F401 - also checks its ONNX dependencies (onnx_graphsurgeon ...)
    except ImportError as e:
        raise MissingDependencyError(f"the tensorrt target prepares its ONNX with NVIDIA ModelOpt, which is not "
                                     f"usable here ({e}): pip install 'edgevit[tensorrt-onnx]'") from e


MODELOPT_MODULES = ("modelopt", "onnx_graphsurgeon")


def missing_modules(modules) -> list[str]:
    """The modules of ``modules`` that are not installed, found without importing them (ModelOpt's import
    configures logging; only the child interpreter may do that)."""
    import importlib.util

    def absent(module: str) -> bool:
        try:
            return importlib.util.find_spec(module) is None
        except ImportError:  # a parent package that cannot be imported
            return True

    return [m for m in modules if absent(m)]


def _require_installed() -> None:
    """The parent's check: ModelOpt and its ONNX dependency are installed."""
    missing = missing_modules(MODELOPT_MODULES)
    if missing:
        raise MissingDependencyError(f"the tensorrt target prepares its ONNX with NVIDIA ModelOpt, and "
                                     f"{', '.join(missing)} is not installed: pip install 'edgevit[tensorrt-onnx]'")


def _npz_batches(calibration: np.ndarray, input_name: str, folder: Path) -> Path:
    """The calibration inputs as AutoCast reads them: a folder of .npz files, one batch each (its statistics
    are aggregated over every file)."""
    folder.mkdir()
    for i in range(0, len(calibration), _BATCH):
        np.savez(folder / f"batch_{i // _BATCH:05d}.npz", **{input_name: calibration[i:i + _BATCH]})
    return folder


def _in_child(job: str, calibration: np.ndarray, **options) -> dict:
    """Run a ModelOpt ``job`` (``autocast`` or ``int8``) in a fresh interpreter; returns its result, or raises
    ExportError with the end of ModelOpt's log."""
    with temp_dir("modelopt") as tmp:
        tmp = Path(tmp)
        np.save(tmp / "calibration.npy", np.ascontiguousarray(calibration, np.float32))
        (tmp / "job.json").write_text(json.dumps({"job": job, **options}))
        root = str(Path(__file__).resolve().parents[2])  # the child imports this very edgevit
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(p for p in (root, os.environ.get("PYTHONPATH")) if p)}
        r = subprocess.run([sys.executable, "-m", "edgevit.quantize.tensorrt_quant", str(tmp)], capture_output=True,
                           text=True, env=env, timeout=6 * 3600)
        out = tmp / "result.json"
        result = json.loads(out.read_text()) if out.is_file() else {}
    for line in result.get("lines", []):
        log.debug("modelopt: %s", line)
    if r.returncode != 0 or "error" in result:
        tail = result.get("lines", [])[-5:] or (r.stdout + r.stderr).strip().splitlines()[-5:]
        raise ExportError(f"ModelOpt {job} failed: {result.get('error', f'exit {r.returncode}')}\n" + "\n".join(tail))
    return result


def _child_main(folder: str) -> int:
    """The child side of ``_in_child``."""
    folder = Path(folder)
    spec = json.loads((folder / "job.json").read_text())
    calibration = np.load(folder / "calibration.npy")
    lines: list[str] = []
    result: dict = {}
    try:
        _require()
        exclude = [f"^{re.escape(n)}$" for n in spec["keep_float_nodes"]] or None
        with _captured(lines):
            if spec["job"] == "autocast":
                import onnx
                from modelopt.onnx.autocast import convert_to_mixed_precision

                data = _npz_batches(calibration, spec["input_name"], folder / "calib")
                model = convert_to_mixed_precision(
                    spec["src"], low_precision_type="fp16", keep_io_types=True, calibration_data=str(data),
                    data_max=FP16_DATA_MAX, providers=["cpu"], opset=spec["opset"], nodes_to_exclude=exclude)
                onnx.save(model, spec["dest"])
            else:
                from modelopt.onnx.quantization import quantize

                quantize(spec["src"], quantize_mode="int8", calibration_data=calibration,
                         calibration_method=spec["method"], calibration_eps=["cpu"], output_path=spec["dest"],
                         nodes_to_exclude=exclude, high_precision_dtype="fp16", log_level="INFO")
    except Exception as e:  # noqa: BLE001 - every failure goes back to the parent, named
        result["error"] = f"{type(e).__name__}: {e}"
    result["lines"] = lines
    (folder / "result.json").write_text(json.dumps(result))
    return 1 if "error" in result else 0


def convert_fp16(src: Path, dest: Path, calibration: np.ndarray, *, input_name: str, opset: int,
                 keep_float_nodes: tuple[str, ...] = ()) -> dict:
    """AutoCast ``src`` to fp16 with fp32 I/O into ``dest``; returns the manifest's ``quantization`` section with
    every node kept in fp32 and ModelOpt's reason for it (``reference IO out of range: ... absmax=...``)."""
    import onnx

    _require_installed()
    if calibration is None or not len(calibration):
        raise ConfigError("tensorrt fp16 needs calibration images (AutoCast keeps in fp32 the layers whose "
                          "activations overflow fp16 on them): pass --calib-dir DIR")
    result = _in_child("autocast", calibration, src=str(src), dest=str(dest), input_name=input_name, opset=opset,
                       keep_float_nodes=list(keep_float_nodes))
    from edgevit.quantize.onnx_quant import module_of_nodes

    modules = module_of_nodes(src)
    kept = {}
    for line in result["lines"]:
        m = _SKIPPED.match(line)
        if m:
            kept[m["node"]] = m["why"]
    model = onnx.load(str(dest), load_external_data=False)
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
    import onnx

    _require_installed()
    if method not in CALIB_METHODS:
        raise ConfigError(f"--calib-method {method} is not available for tensorrt int8; ModelOpt calibrates with "
                          f"{' or '.join(CALIB_METHODS)}")
    if calibration is None or not len(calibration):
        raise ConfigError("tensorrt int8 needs calibration images: pass --calib-dir DIR")
    _in_child("int8", calibration, src=str(src), dest=str(dest), method=CALIB_METHODS[method],
              keep_float_nodes=list(keep_float_nodes))
    if not dest.is_file():
        raise ExportError("ModelOpt int8 quantization wrote no model")
    model = onnx.load(str(dest), load_external_data=False)
    q = sum(n.op_type == "QuantizeLinear" for n in model.graph.node)
    if q == 0:
        raise ExportError("ModelOpt placed no QuantizeLinear node: the model would not run in int8")
    return {"scheme": "int8 explicit Q/DQ (ModelOpt); the ops it leaves unquantized in fp16",
            "tool": "modelopt.onnx.quantization.quantize", "calib_method": CALIB_METHODS[method],
            "calibration_images": int(len(calibration)), "quantize_linear_nodes": q,
            "high_precision_dtype": "fp16", "kept_float": list(keep_float_nodes)}


if __name__ == "__main__":
    sys.exit(_child_main(sys.argv[1]))
