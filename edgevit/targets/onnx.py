"""ONNX and ONNX Runtime Mobile (.ort) targets, run with onnxruntime on the desktop."""

from __future__ import annotations

import contextlib
import io
import logging
import time
import warnings
from collections import Counter
from pathlib import Path

import numpy as np

from edgevit._io import temp_dir
from edgevit._native import default_threads
from edgevit.errors import ConfigError, ExportError
from edgevit.targets.base import (ExportResult, IOSpec, Runner, RuntimeSpec, Target, minor_release, register_target,
                                  run_batched)
from edgevit.verify.tolerances import FP16, FP32, INT8

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


def dump_ort_graph(ort_path: Path, dest: Path) -> None:
    """Write the graph onnxruntime builds from a .ort file (its stored, already optimized nodes) as ONNX."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.log_severity_level = 3
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.optimized_model_filepath = str(dest)
    ort.InferenceSession(str(ort_path), so, providers=["CPUExecutionProvider"])
    if not dest.is_file():
        raise ExportError(f"onnxruntime wrote no graph for {ort_path}")


_LAYOUT_KEEPING = {"QuantizeLinear", "DequantizeLinear", "QLinearAdd", "QLinearMul", "Add", "Mul", "Sub", "Div",
                   "Relu", "Sigmoid", "Clip", "Cast", "Identity", "QLinearConcat", "Concat", "QLinearSigmoid",
                   "QLinearLeakyRelu", "Sum", "Gelu", "Erf", "Tanh"}


def tensor_layouts(path: Path) -> dict[str, str | None]:
    """'NCHW', 'NHWC' or None (unknown) for every 4-D activation of the ONNX graph at ``path``, propagated from
    the NCHW graph input: a Transpose (0,2,3,1) makes NHWC and (0,3,1,2) NCHW, a node's ``channels_last``
    attribute (onnxruntime's int8 kernels) says which it writes, default-domain ops keep ONNX's NCHW, elementwise
    and quantize ops keep their input's; anything else is unknown."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    layout: dict[str, str | None] = {i.name: "NCHW" for i in graph.input}
    for node in graph.node:
        attrs = {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}
        if node.op_type == "Transpose":
            out = {(0, 2, 3, 1): "NHWC", (0, 3, 1, 2): "NCHW"}.get(tuple(attrs.get("perm", ())))
        elif "channels_last" in attrs:
            out = "NHWC" if attrs["channels_last"] else "NCHW"
        elif node.domain == "com.ms.internal.nhwc" or node.op_type in ("NhwcConv", "NhwcMaxPool",
                                                                         "NhwcFusedConv"):
            out = "NHWC"
        elif node.op_type in _LAYOUT_KEEPING:
            out = next((layout[t] for t in node.input if layout.get(t)), None)
        elif node.op_type in ("Conv", "FusedConv", "QLinearConv", "AveragePool", "QLinearAveragePool", "MaxPool",
                              "GlobalAveragePool", "QLinearGlobalAveragePool", "BatchNormalization"):
            out = "NCHW"  # ONNX's (and onnxruntime's contrib ops') layout unless channels_last says otherwise
        else:
            out = None
        for t in node.output:
            layout[t] = out
    return layout


def locate_tensors(path: Path, float_names: dict[str, str]) -> tuple[dict[str, str], list[str]]:
    """Find each unit's float tensor (named as the fp32 export names it) in the ONNX graph at ``path``, rewriting
    the file in place: a tensor that was quantized is found as the int8 input that a node reads together with
    ``<name>_scale`` and ``<name>_zero_point`` (onnxruntime's quantizer's naming, kept through its QLinear
    fusions), and a DequantizeLinear with those parameters is added so that its float value can be read."""
    import onnx

    model = onnx.load(str(path))
    graph = model.graph
    produced = {t for node in graph.node for t in node.output} | {i.name for i in graph.input}
    found, notes, added = {}, [], []
    for unit, name in float_names.items():
        kept = next((t for t in (name, f"{name}_DequantizeLinear_Output") if t in produced), None)
        if kept:
            found[unit] = kept
            continue
        scale, zero = f"{name}_scale", f"{name}_zero_point"
        # the int8 tensor is read together with its scale and zero point (x, x_scale, x_zero_point), and made
        # by a node that takes them too (a QLinear op's y_scale/y_zero_point, or a QuantizeLinear)
        makers = {t for node in graph.node if scale in node.input and zero in node.input for t in node.output}
        quantized = next((node.input[k - 1] for node in graph.node for k in range(1, len(node.input) - 1)
                          if node.input[k] == scale and node.input[k + 1] == zero and node.input[k - 1] in makers),
                         None)
        if quantized is None:
            notes.append(f"{unit}: tensor {name} is not in the runtime's graph (fused away); not compared")
            continue
        out = f"{name}__edgevit_drift"
        added.append(onnx.helper.make_node("DequantizeLinear", [quantized, scale, zero], [out],
                                           name=f"{name}__edgevit_drift_dq"))
        found[unit] = out
    graph.node.extend(added)
    onnx.save(model, str(path))
    return found, notes


def onnx_op_counts(path: Path) -> dict[str, int]:
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    return dict(sorted(Counter(n.op_type for n in model.graph.node).items()))


def make_session(path: Path, *, threads: int | None = None, optimize: bool = True):
    """An onnxruntime CPU session with thread spinning off (spinning threads steal cores from whatever runs next).
    ``optimize=False`` runs the graph exactly as stored (no onnxruntime graph rewrites)."""
    import onnxruntime as ort

    so = ort.SessionOptions()
    if not optimize:
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_DISABLE_ALL
    so.log_severity_level = 3
    threads = default_threads(threads)
    if threads:
        so.intra_op_num_threads = threads
        so.inter_op_num_threads = 1
    so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "0")
    return ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])


def _session_runner(path: Path, threads: int | None, *, optimize: bool = True) -> Runner:
    sess = make_session(path, threads=threads, optimize=optimize)
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

    with temp_dir("onnx") as tmp:
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
    multi_size = "dynamic height and width (one graph; parity checked at every listed size)"
    runtime = "onnxruntime"
    toolchain = ("onnxscript", "onnxruntime")
    precisions = ("fp32", "fp16", "int8")
    needs_calibration = ("int8",)
    form = "onnx"
    options = ("opset", "calib_method")
    distributions = ("onnx", "onnxruntime", "onnxscript")
    # fp16 on ONNX Runtime: storage and most arithmetic in fp16; int8: 8-bit activations through ~100 layers, gated
    # on direction (cosine) and the top classes, the measured accuracy cost on evaluation images being the real check
    tolerance_rows = {"onnx": {"fp32": FP32, "fp16": FP16, "int8": INT8}}

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        self.require("onnxscript")
        path = out_dir / "model.onnx"
        details = export_precision(model, example, path, io_spec, cfg, calibration, keep_float)
        return ExportResult(artifact=path.name, details={"opset": onnx_opset(path), "op_counts": onnx_op_counts(path),
                                                         **details})

    def load(self, artifact_path, spec: RuntimeSpec, *, threads=None) -> Runner:
        self.require("onnxruntime")
        return _session_runner(artifact_path, threads)

    def block_outputs(self, artifact_path, spec: RuntimeSpec, units, x, *, threads=None, model=None, calibration=None):
        self.require("onnxruntime")
        tensors, notes = block_tensors(Path(artifact_path), units)
        with temp_dir("drift") as tmp:
            debug = Path(tmp) / "debug.onnx"
            add_outputs(Path(artifact_path), list(tensors.values()), debug)
            outs = _session_runner(debug, threads)(x)
            plain = _session_runner(Path(artifact_path), threads)(x)
        final = spec.output_names[0]
        n_out = len(spec.output_names)  # the graph's own outputs come first, then the added ones
        got = {unit: outs[n_out + i] for i, unit in enumerate(tensors)}
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
    form = "ort"
    tolerance_rows = {"ort": {"fp32": FP32, "fp16": FP16, "int8": INT8}}
    cost = 1.5

    def summary_lines(self, manifest):
        details = manifest[self.name]
        usable = details["mobile_usability"]
        return [f"ORT mobile: reduced-operator config {details['required_operators_config']}; usability check "
                f"{'ran' if usable.get('checked') else 'failed: ' + usable.get('error', '')}"]

    def block_outputs(self, artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
        """A .ort file keeps tensor names but not the module scopes, so the deployed PyTorch model is exported
        to fp32 ONNX again only to learn which tensor leaves each block (the exporter names tensors the same way
        every time); those names are then found in the graph onnxruntime loads from the .ort itself (quantized
        tensors through their ``<name>_scale``/``_zero_point``), which is run with the block outputs added and
        no further graph optimization."""
        self.require("onnxruntime")
        if model is None:
            raise ConfigError("drift on a .ort artifact needs the deployed PyTorch model to name its blocks")
        import torch

        with temp_dir("drift") as tmp:
            tmp = Path(tmp)
            graph = tmp / "artifact_graph.onnx"
            dump_ort_graph(Path(artifact_path), graph)
            names = tmp / "names.onnx"
            shape = (spec.batch or 1, *x.shape[1:])
            io_spec = IOSpec(input_name=spec.input_name, input_shape=shape, output_names=spec.output_names)
            export_onnx(model, torch.zeros(shape), names, io_spec, opset=int(spec.details.get("opset", 18)))
            float_names, notes = block_tensors(names, units)
            tensors, more = locate_tensors(graph, float_names)
            notes += more
            layouts = tensor_layouts(graph)
            debug = tmp / "debug.onnx"
            add_outputs(graph, list(tensors.values()), debug)
            outs = _session_runner(debug, threads, optimize=False)(x)
            plain = _session_runner(Path(artifact_path), threads)(x)
        final = spec.output_names[0]
        got = {}
        for i, (unit, tensor) in enumerate(tensors.items()):
            source = tensor.removesuffix("__edgevit_drift")
            where = layouts.get(tensor) or layouts.get(source)
            value = outs[len(spec.output_names) + i]
            if value.ndim == 4 and where is None:
                notes.append(f"{unit}: the layout of {source} in the runtime's graph is unknown; not compared")
                continue
            got[unit] = value.transpose(0, 3, 1, 2) if value.ndim == 4 and where == "NHWC" else value
        if any(v == "NHWC" for t, v in layouts.items() if t in tensors.values()):
            notes.append("onnxruntime runs the int8 convolutions channels-last (NHWC); those block outputs are "
                         "transposed back to NCHW before comparing")
        got[final] = outs[0]
        gap = float(np.abs(np.asarray(outs[0], np.float64) - plain[0]).max())
        notes.append(f"the debug graph's final output differs from the .ort artifact's by at most {gap:.3g}")
        return got, ("the graph onnxruntime loads from the .ort, block outputs added as graph outputs (int8 ones "
                     "dequantized with their own scales), run in onnxruntime"), notes

    def runtime_requirements(self, cfg) -> dict:
        return {"runtime": "onnxruntime", "min_version": minor_release(self.versions()["onnxruntime"]),
                "why": f"a .ort file carries the ORT format version of its converter (onnxruntime "
                       f"{self.versions()['onnxruntime']}); an older runtime is not promised to read it, so edgevit "
                       "asks for this minor release or newer"}

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        self.require("onnxscript")
        from edgevit.targets.ort_convert import convert_to_ort

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

