"""``edgevit drift`` on a ``.tflite``: the artifact's own intermediate tensors, preserved by the interpreter with
the builtin kernels, matched to Next-ViT blocks by module scope."""

from __future__ import annotations

import logging

import numpy as np

from edgevit.errors import ConfigError
from edgevit.targets.common import run_batched
from edgevit.targets.litert.graph import in_scope, module_scopes, tensor_layouts
from edgevit.targets.litert.runtime import (check_fallback_runtime, interpreter_class, load_tflite,
                                            no_default_delegates, quiet)

log = logging.getLogger(__name__)


def tflite_block_outputs(artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
    """The artifact's own intermediate tensors, preserved by the interpreter (``experimental_preserve_all_tensors``)
    with the builtin kernels: XNNPACK keeps a partition's tensors to itself, so the block rows come from LiteRT's
    builtin kernels on the same graph, and the final row from the artifact run as deployed (XNNPACK).

    litert-torch names every tensor after the module scope that made it (``<type>_<attribute>`` per level,
    ``;;`` between fused names), so a unit's output is the tensor made inside its scope and read outside it.
    Layouts come from the graph (convolutions and pools make NHWC, a TRANSPOSE permutes its input's, other ops
    keep their input's), never from shapes; int8 tensors are dequantized with their own scale."""
    if model is None:
        raise ConfigError("drift on a .tflite needs the deployed PyTorch model it was converted from")
    Interpreter = interpreter_class()
    check_fallback_runtime(spec)
    with quiet():
        it = Interpreter(model_path=str(artifact_path), experimental_preserve_all_tensors=True,
                         **no_default_delegates())
        it.allocate_tensors()
    ops = it._get_ops_details()
    tensors = {t["index"]: t for t in it.get_tensor_details()}
    inner = ""
    if spec.layout == "NHWC":  # converted inside litert-torch's channel-last wrapper, which names the scopes
        from litert_torch import to_channel_last_io

        model, inner = to_channel_last_io(model, args=[0]), "wrapped."
    import torch

    example = torch.zeros((spec.batch or 1, *x.shape[1:]), dtype=torch.float32)
    scopes = module_scopes(model, example.permute(0, 2, 3, 1) if spec.layout == "NHWC" else example)
    root = scopes[""]
    inputs = [d["index"] for d in it.get_input_details()]
    layout = tensor_layouts(ops, tensors, inputs, it.get_tensor, spec.layout)
    producer = {t: op["index"] for op in ops for t in op["outputs"]}
    readers: dict[int, set[int]] = {}
    for op in ops:
        for t in op["inputs"]:
            readers.setdefault(t, set()).add(op["index"])
    outputs = {d["index"] for d in it.get_output_details()}
    found, notes = {}, []
    for unit in units:
        scope = scopes.get(inner + unit)
        inside: set[int] = set()
        own: set[int] = set()  # ops named after the unit itself (not followers)
        for op in ops:  # execution order. Quantize/dequantize ops, and ops named after no module (layout
            # transposes the exporter's wrapper adds), belong to the unit that made their input
            follows = op["op_name"] in ("QUANTIZE", "DEQUANTIZE") or not any(
                in_scope(tensors[t]["name"], root) for t in op["outputs"])
            if scope and any(in_scope(tensors[t]["name"], scope) for t in op["outputs"]):
                inside.add(op["index"])
                own.add(op["index"])
            elif follows and len(op["inputs"]) and producer.get(op["inputs"][0]) in inside:
                inside.add(op["index"])
        leaving = [t for i in sorted(inside) for t in ops[i]["outputs"]
                   if t in outputs or readers.get(t, set()) - inside]
        if len(leaving) > 1:  # in a whole model (a detector's neck reads the stage outputs too), a fused op of
            # the neck can carry the unit's scope as a secondary name: the unit's output is the tensor whose
            # primary name (before ";;") is in the unit's scope and made by the unit's own op
            leaving = [t for t in leaving if producer.get(t) in own
                       and in_scope(tensors[t]["name"].split(";;")[0], scope)] or leaving
        if len(leaving) != 1:
            notes.append(f"{unit}: {len(leaving)} tensors leave its scope in the .tflite graph; not compared")
            continue
        found[unit] = leaving[0]
    quantized = [u for u, t in found.items() if tensors[t]["quantization"][0]]
    if quantized:
        notes.append(f"{len(quantized)} unit outputs are int8 tensors, dequantized with their own scales")
    input_index = inputs[0]

    def fn(b: np.ndarray) -> list[np.ndarray]:
        b = b.transpose(0, 2, 3, 1) if spec.layout == "NHWC" else b
        it.set_tensor(input_index, np.ascontiguousarray(b, np.float32))
        it.invoke()
        values = []
        for t in found.values():
            v = it.get_tensor(t)
            scale, zero = tensors[t]["quantization"]
            v = (v.astype(np.float32) - zero) * scale if scale else v.astype(np.float32)
            values.append(v.transpose(0, 3, 1, 2) if layout.get(t) == "NHWC" else v)
        return values

    got = dict(zip(found, run_batched(fn, np.ascontiguousarray(x, np.float32), spec.batch))) if found else {}
    final = load_tflite(artifact_path, spec, threads=threads)(x)
    got[spec.output_names[0]] = final[0]
    return got, "the .tflite's own tensors preserved by the LiteRT interpreter (builtin kernels; the final row " \
                "runs with XNNPACK)", notes
