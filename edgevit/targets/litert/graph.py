"""Reading a ``.tflite`` graph: op counts, XNNPACK partitions and the ops left outside them, tensor layouts,
and the module scope litert-torch names each tensor after."""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

import numpy as np

from edgevit.targets.litert.runtime import interpreter_class, no_default_delegates, quiet

log = logging.getLogger(__name__)


def graph_report(path: Path) -> dict:
    """Operator counts of the .tflite graph (all, and those whose first input is float32), its I/O types, and the
    XNNPACK delegate's partitions."""
    Interpreter = interpreter_class()
    plain = Interpreter(model_path=str(path), experimental_preserve_all_tensors=False,
                        **no_default_delegates())
    plain_ops = plain._get_ops_details()
    ops = Counter(op["op_name"] for op in plain_ops)
    dtypes = {t["index"]: np.dtype(t["dtype"]) for t in plain.get_tensor_details()}
    # the ops that compute in float: of an int8 graph, what its quantizer left unquantized (QUANTIZE/DEQUANTIZE aside)
    in_float = Counter(op["op_name"] for op in plain_ops
                       if op["op_name"] not in ("QUANTIZE", "DEQUANTIZE")
                       and any(dtypes[i] == np.float32 for i in op["inputs"][:1] if i >= 0))
    with quiet():
        delegated = Interpreter(model_path=str(path), num_threads=1)
        delegated.allocate_tensors()
    details = delegated._get_ops_details()
    original, delegates = details[:len(plain_ops)], [op for op in details if op["op_name"] == "DELEGATE"]
    outside = Counter(original[i]["op_name"] for i in _not_delegated(original, delegates))
    return {"op_counts": dict(sorted(ops.items())), "transposes": ops.get("TRANSPOSE", 0),
            "input_dtypes": [np.dtype(d["dtype"]).name for d in plain.get_input_details()],
            "output_dtypes": [np.dtype(d["dtype"]).name for d in plain.get_output_details()],
            "float_op_counts": dict(sorted(in_float.items())),
            "xnnpack_partitions": len(delegates),
            "delegated_ops": sum(ops.values()) - sum(outside.values()),
            "not_delegated": dict(sorted(outside.items()))}


def _not_delegated(original: list[dict], delegates: list[dict]) -> set[int]:
    """Indices of the original ops no XNNPACK partition took. A delegate node keeps the original ops in the
    interpreter's list and names only its partition's boundary tensors; its ops are those reached walking back
    from its outputs to its inputs."""
    producer = {t: op["index"] for op in original for t in op["outputs"]}
    taken: set[int] = set()
    for d in delegates:
        boundary = set(d["inputs"])
        stack = [producer[t] for t in d["outputs"] if t in producer]
        while stack:
            i = stack.pop()
            if i in taken:
                continue
            taken.add(i)
            stack.extend(producer[t] for t in original[i]["inputs"] if t in producer and t not in boundary)
    return {op["index"] for op in original} - taken


def module_scopes(model, example=None) -> dict[str, str]:
    """Module path -> the scope litert-torch writes into tensor names: ``<module>.<class>_<attribute>`` per level
    below the root's ``<module>.<class>``. litert-torch writes a level only for a module whose forward ran: with
    ``example``, a container the model iterates instead of calling (Next-ViT's features mode loops over
    ``stages``) adds no level."""
    root = f"{type(model).__module__}.{type(model).__qualname__}"
    modules = dict(model.named_modules())
    called = set(modules)
    if example is not None:
        import torch

        called = set()
        hooks = [m.register_forward_pre_hook(lambda _m, _i, p=p: called.add(p)) for p, m in modules.items()]
        try:
            with torch.no_grad():
                model(example)
        finally:
            for h in hooks:
                h.remove()
    scopes = {"": root}
    for path in modules:
        if not path:
            continue
        parent, _, attr = path.rpartition(".")
        m = modules[path]
        level = f"/{type(m).__module__}.{type(m).__qualname__}_{attr}" if path in called else ""
        scopes[path] = f"{scopes[parent]}{level}"
    return scopes


def in_scope(name: str, scope: str) -> bool:
    return any(part.split(";")[0] == scope or part.split(";")[0].startswith(scope + "/") for part in name.split(";;"))


def tensor_layouts(ops: list[dict], tensors: dict, inputs: list[int], value_of,
                   input_layout: str = "NCHW") -> dict[int, str]:
    """NCHW / NHWC of every 4-D tensor, propagated through the graph from the input's layout; ``value_of(index)``
    reads a constant (a TRANSPOSE's permutation)."""
    layout = {t: input_layout for t in inputs}
    nhwc_ops = {"CONV_2D", "DEPTHWISE_CONV_2D", "AVERAGE_POOL_2D", "MAX_POOL_2D", "TRANSPOSE_CONV"}
    for op in ops:  # the interpreter lists ops in execution order
        outs = [t for t in op["outputs"] if len(tensors[t]["shape"]) == 4]
        if not outs:
            continue
        if op["op_name"] in nhwc_ops:
            kind = "NHWC"
        elif op["op_name"] == "TRANSPOSE":
            src = layout.get(op["inputs"][0])
            perm = tuple(int(p) for p in np.asarray(value_of(op["inputs"][1])).ravel())
            kind = _permuted(src, perm)
        else:
            kind = next((layout[t] for t in op["inputs"] if t in layout), None)
        for t in outs:
            if kind:
                layout[t] = kind
    return layout


def _permuted(src: str | None, perm: tuple[int, ...]) -> str | None:
    if src is None or len(perm) != 4:
        return None
    out = "".join(src[p] for p in perm)
    return out if out in ("NCHW", "NHWC") else None
