"""PyTorch -> ONNX (torch.export-based exporter, one file), its precisions (onnxruntime's quantizer and fp16
converter, ``edgevit.quantize.onnx_quant``), and the .ort conversion with its reduced-operator config and mobile
usability check."""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections import Counter
from pathlib import Path

from edgevit._io import temp_dir
from edgevit.errors import ExportError
from edgevit.targets.base import ExportResult, IOSpec

log = logging.getLogger(__name__)


def export_onnx(model, example, path: Path, io_spec: IOSpec, *, opset: int) -> None:
    """torch.export-based ONNX export into a single file (weights inline; Next-ViT-L is far below 2 GB)."""
    import torch

    dims = {}
    if io_spec.dynamic_batch:
        dims[0] = torch.export.Dim("batch", min=1, max=1024)
    if io_spec.dynamic_hw:  # every shape-dependent branch of the deployed forms takes its size-generic path then
        dims[2] = torch.export.Dim("height", min=32, max=4096)
        dims[3] = torch.export.Dim("width", min=32, max=4096)
    dynamic = (dims,) if dims else None
    try:
        with warnings.catch_warnings(), contextlib.redirect_stdout(io.StringIO()):
            warnings.simplefilter("ignore", FutureWarning)
            torch.onnx.export(model, (example,), str(path), dynamo=True, opset_version=opset,
                              input_names=[io_spec.input_name], output_names=list(io_spec.output_names),
                              dynamic_shapes=dynamic, external_data=False, verbose=False)
    except Exception as e:  # noqa: BLE001 - any exporter failure is an ExportError with its cause attached
        raise ExportError(f"ONNX export failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
    written = onnx_opset(path)
    if written != opset:
        # torch's version converter falls back to the unconverted model with only a log line; never ship that
        raise ExportError(f"ONNX export wrote opset {written}, not the requested {opset}; pass --opset {written}")


def onnx_opset(path: Path) -> int:
    """The default-domain opset the file declares (what a runtime will treat it as)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))


def onnx_op_counts(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def export_precision(model, example, path: Path, io_spec: IOSpec, cfg, calibration, keep_float) -> dict:
    """Export fp32 ONNX to ``path``, then quantize or halve it there per ``cfg.precision``."""
    if cfg.precision == "fp32":
        export_onnx(model, example, path, io_spec, opset=cfg.opset)
        return {}
    from edgevit.quantize.onnx_quant import convert_fp16, quantize_int8

    with temp_dir("onnx") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(model, example, fp32, io_spec, opset=cfg.opset)
        if cfg.precision == "fp16":
            return {"quantization": convert_fp16(fp32, path)}
        batch = None if io_spec.dynamic_batch else io_spec.input_shape[0]
        return {"quantization": quantize_int8(fp32, path, calibration, input_name=io_spec.input_name, batch=batch,
                                              method=cfg.calib_method, keep_float=keep_float)}


def _read_required_ops(config: Path) -> dict[str, list[str]]:
    ops: dict[str, list[str]] = {}
    for line in config.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        domain, version, names = line.split(";")
        ops[f"{domain};{version}"] = names.split(",")
    return ops


def mobile_usability(onnx_path: Path) -> dict:
    """onnxruntime's own mobile usability check, its log captured into the manifest."""
    from onnxruntime.tools.mobile_helpers import usability_checker

    records: list[str] = []

    class _Collect(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    logger = logging.getLogger("edgevit.ort_usability")
    logger.propagate = False
    logger.setLevel(logging.INFO)
    handler = _Collect()
    logger.addHandler(handler)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            try_eps = usability_checker.analyze_model(onnx_path, skip_optimize=False, logger=logger)
    except Exception as e:  # noqa: BLE001 - the check is advisory; its failure is recorded, not fatal
        return {"checked": False, "error": f"{type(e).__name__}: {e}"}
    finally:
        logger.removeHandler(handler)
    # the log names the private temporary path of the model; the manifest keeps the file name only
    where = str(onnx_path)
    return {"checked": True, "nnapi_or_coreml_ep_recommended": bool(try_eps),
            "log": [r.replace(where, onnx_path.name) for r in records if r.strip()][:60]}


def export_ort(model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
    from edgevit.targets.onnx.ort_convert import convert_to_ort

    with temp_dir("ort") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        quant = export_precision(model, example, onnx_path, io_spec, cfg, calibration, keep_float)
        usability = mobile_usability(onnx_path)
        opset = onnx_opset(onnx_path)
        t0 = time.perf_counter()
        conversion = convert_to_ort(onnx_path, out_dir)
        log.debug("ort conversion took %.1fs", time.perf_counter() - t0)
    ort_file = out_dir / "model.ort"
    config = out_dir / "model.required_operators.config"
    if not ort_file.is_file() or not config.is_file():
        raise ExportError(f".ort conversion wrote no model.ort / required_operators.config in {out_dir}")
    ops = _read_required_ops(config)
    return ExportResult(artifact=ort_file.name, extra_files=[config.name],
                        details={"opset": opset, "required_operators_config": config.name,
                                 "required_operators": ops, "mobile_usability": usability,
                                 "optimization_style": "Fixed", "target_platform": "arm", "conversion": conversion,
                                 **quant})
