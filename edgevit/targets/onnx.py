"""ONNX and ONNX Runtime Mobile (.ort) targets, run with onnxruntime on the desktop."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from edgevit.errors import ConfigError, ExportError
from edgevit.targets.base import (ExportResult, IOSpec, Runner, RuntimeSpec, Target, minor_release, register_target,
                                  run_batched)

log = logging.getLogger(__name__)


def export_onnx(model, example, path: Path, io_spec: IOSpec, *, opset: int) -> None:
    """torch.export-based ONNX export into a single file (weights inline; Next-ViT-L is far below 2 GB)."""
    import torch

    dynamic = None
    if io_spec.dynamic_batch:
        dynamic = ({0: torch.export.Dim("batch", min=1, max=1024)},)
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


def _scopes(node) -> tuple[str, ...]:
    """The module paths a node was exported from (torch's ``pkg.torch.onnx.name_scopes`` metadata)."""
    import ast

    for prop in node.metadata_props:
        if prop.key == "pkg.torch.onnx.name_scopes":
            try:
                return tuple(ast.literal_eval(prop.value))
            except (ValueError, SyntaxError):
                return ()
    return ()


def block_tensors(path: Path, units: list[str]) -> tuple[dict[str, str], list[str]]:
    """For each module path in ``units``, the name of the tensor that leaves it: produced by a node inside the
    module's scope and read outside it (or a graph output). Nodes the exporter did not scope (quantize/dequantize,
    fp16 casts inserted after export) belong to the scope of the node that feeds them."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    scope_of: dict[int, tuple[str, ...]] = {}
    producer: dict[str, int] = {}
    for i, node in enumerate(graph.node):
        own = _scopes(node)
        if not own:
            feeders = [producer[t] for t in node.input if t in producer]
            own = scope_of[feeders[0]] if feeders else ()
        scope_of[i] = own
        for t in node.output:
            producer[t] = i
    readers: dict[str, list[int]] = {}
    for i, node in enumerate(graph.node):
        for t in node.input:
            readers.setdefault(t, []).append(i)
    graph_outputs = {o.name for o in graph.output}
    found, notes = {}, []
    for unit in units:
        leaving = [t for t, i in producer.items() if unit in scope_of[i] and (
            t in graph_outputs or any(unit not in scope_of[r] for r in readers.get(t, [])))]
        if not leaving:
            notes.append(f"{unit}: no tensor of the graph leaves this module")
            continue
        found[unit] = max(leaving, key=lambda t: producer[t])  # the last one produced: the block's output
    return found, notes


def add_outputs(path: Path, tensors: list[str], dest: Path) -> None:
    """Write a copy of the ONNX model at ``path`` to ``dest`` with ``tensors`` as extra graph outputs."""
    import onnx

    model = onnx.load(str(path))
    have = {o.name for o in model.graph.output}
    for t in tensors:
        if t not in have:
            model.graph.output.append(onnx.helper.make_empty_tensor_value_info(t))
    onnx.save(model, str(dest))


def onnx_op_counts(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def make_session(path: Path, *, threads: int | None = None):
    """An onnxruntime CPU session with thread spinning off (spinning threads steal cores from whatever runs next)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _session_runner(path: Path, threads: int | None) -> Runner:
    sess = make_session(path, threads=threads)
    name = sess.get_inputs()[0].name
    fixed = sess.get_inputs()[0].shape[0]
    batch = fixed if isinstance(fixed, int) else None
    return lambda x: run_batched(lambda b: sess.run(None, {name: b.astype(np.float32)}), x, batch)


def export_precision(model, example, path: Path, io_spec: IOSpec, cfg, calibration, keep_float) -> dict:
    """Export fp32 ONNX to ``path``, then quantize or halve it there per ``cfg.precision``."""
    if cfg.precision == "fp32":
        export_onnx(model, example, path, io_spec, opset=cfg.opset)
        return {}
    from edgevit.quantize.onnx_quant import convert_fp16, quantize_int8

    with tempfile.TemporaryDirectory(prefix="edgevit-onnx-") as tmp:
        fp32 = Path(tmp) / "fp32.onnx"
        export_onnx(model, example, fp32, io_spec, opset=cfg.opset)
        if cfg.precision == "fp16":
            return {"quantization": convert_fp16(fp32, path)}
        batch = None if io_spec.dynamic_batch else io_spec.input_shape[0]
        return {"quantization": quantize_int8(fp32, path, calibration, input_name=io_spec.input_name, batch=batch,
                                              method=cfg.calib_method, keep_float=keep_float)}


@register_target
class OnnxTarget(Target):
    name = "onnx"
    suffix = ".onnx"
    runtime = "onnxruntime"
    precisions = ("fp32", "fp16", "int8")
    needs_calibration = ("int8",)

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        self.require("onnxscript")
        path = out_dir / "model.onnx"
        details = export_precision(model, example, path, io_spec, cfg, calibration, keep_float)
        return ExportResult(artifact=path.name, details={"opset": onnx_opset(path), "op_counts": onnx_op_counts(path),
                                                         **details})

    def load(self, artifact_path, spec: RuntimeSpec, *, threads=None) -> Runner:
        self.require("onnxruntime")
        return _session_runner(artifact_path, threads)

    def block_outputs(self, artifact_path, spec: RuntimeSpec, units, x, *, threads=None):
        self.require("onnxruntime")
        tensors, notes = block_tensors(Path(artifact_path), units)
        with tempfile.TemporaryDirectory(prefix="edgevit-drift-") as tmp:
            debug = Path(tmp) / "debug.onnx"
            add_outputs(Path(artifact_path), list(tensors.values()), debug)
            outs = _session_runner(debug, threads)(x)
            plain = _session_runner(Path(artifact_path), threads)(x)
        final = spec.output_names[0]
        got = {unit: outs[1 + i] for i, unit in enumerate(tensors)}
        got[final] = outs[0]
        gap = float(np.abs(np.asarray(outs[0], np.float64) - plain[0]).max())
        notes.append(f"the debug copy's final output differs from the artifact's by at most {gap:.3g} (exposing "
                     "block outputs can stop onnxruntime fusing across them)")
        return got, "debug copy of the artifact with block outputs as extra graph outputs, in onnxruntime", notes

    def versions(self):
        import onnx
        import onnxruntime

        return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}

    def runtime_requirements(self, cfg) -> dict:
        return {"runtime": "onnxruntime", "min_version": minor_release(self.versions()["onnxruntime"]),
                "why": f"parity was checked with onnxruntime {self.versions()['onnxruntime']} (opset {cfg.opset}); "
                       "edgevit asks for this minor release or newer"}


@register_target
class OrtTarget(OnnxTarget):
    """ONNX Runtime Mobile: the ``.ort`` format, the reduced-operator config, and the mobile usability check."""

    name = "ort"
    suffix = ".ort"

    def block_outputs(self, artifact_path, spec, units, x, *, threads=None):
        raise ConfigError("edgevit drift cannot open a .ort file to expose its block outputs yet; convert the same "
                          "options with --target onnx and run drift on that folder (the .ort is made from that "
                          "ONNX file)")

    def runtime_requirements(self, cfg) -> dict:
        return {"runtime": "onnxruntime", "min_version": minor_release(self.versions()["onnxruntime"]),
                "why": f"a .ort file carries the ORT format version of its converter (onnxruntime "
                       f"{self.versions()['onnxruntime']}); an older runtime is not promised to read it, so edgevit "
                       "asks for this minor release or newer"}

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        self.require("onnxscript")
        from edgevit.targets.ort_convert import convert_to_ort

        with tempfile.TemporaryDirectory(prefix="edgevit-ort-") as tmp:
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

