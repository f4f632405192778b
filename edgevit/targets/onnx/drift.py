"""``edgevit drift`` on ONNX and .ort artifacts: which tensor leaves each Next-ViT block (the exporter's module
scopes), a debug copy with those tensors as graph outputs, and the graph onnxruntime loads from a .ort file."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from edgevit._io import temp_dir
from edgevit.errors import ConfigError, ExportError
from edgevit.targets.base import IOSpec, RuntimeSpec
from edgevit.targets.onnx.export import export_onnx
from edgevit.targets.onnx.runtime import session_runner

log = logging.getLogger(__name__)


def node_scopes(node) -> tuple[str, ...]:
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
        own = node_scopes(node)
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


def onnx_block_outputs(artifact_path, spec: RuntimeSpec, units, x, *, threads=None, model=None, calibration=None):
    tensors, notes = block_tensors(Path(artifact_path), units)
    with temp_dir("drift") as tmp:
        debug = Path(tmp) / "debug.onnx"
        add_outputs(Path(artifact_path), list(tensors.values()), debug)
        outs = session_runner(debug, threads)(x)
        plain = session_runner(Path(artifact_path), threads)(x)
    final = spec.output_names[0]
    n_out = len(spec.output_names)  # the graph's own outputs come first, then the added ones
    got = {unit: outs[n_out + i] for i, unit in enumerate(tensors)}
    got[final] = outs[0]
    gap = float(np.abs(np.asarray(outs[0], np.float64) - plain[0]).max())
    notes.append(f"the debug copy's final output differs from the artifact's by at most {gap:.3g} (exposing "
                 "block outputs can stop onnxruntime fusing across them)")
    return got, "debug copy of the artifact with block outputs as extra graph outputs, in onnxruntime", notes


def ort_block_outputs(artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
    """A .ort file keeps tensor names but not the module scopes, so the deployed PyTorch model is exported
    to fp32 ONNX again only to learn which tensor leaves each block (the exporter names tensors the same way
    every time); those names are then found in the graph onnxruntime loads from the .ort itself (quantized
    tensors through their ``<name>_scale``/``_zero_point``), which is run with the block outputs added and
    no further graph optimization."""
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
        outs = session_runner(debug, threads, optimize=False)(x)
        plain = session_runner(Path(artifact_path), threads)(x)
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
