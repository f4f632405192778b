"""The TensorRT-ready ONNX: the onnx target's export with the precision in the graph (ModelOpt), module scopes
carried over for keep-in-float, the build settings (optimization profile, workspace, trtexec line) for the manifest."""

from __future__ import annotations

import logging
import shlex
from dataclasses import replace
from pathlib import Path

from edgevit._io import temp_dir
from edgevit.errors import ExportError
from edgevit.targets.base import ExportResult
from edgevit.targets.onnx.drift import node_scopes
from edgevit.targets.onnx.export import export_onnx, onnx_op_counts, onnx_opset
from edgevit.targets.tensorrt.checks import check_operators, polygraphy_lint

log = logging.getLogger(__name__)

PLAN = "model.plan"  # the engine file build-engine writes beside model.onnx
TIMING_CACHE = "timing.cache"


def build_settings(input_name: str, shape: tuple[int, ...], cfg) -> dict:
    """The optimization profile, workspace and the two ways to build the engine on the server. A multi-size
    conversion (--img-sizes) spans the listed heights and widths (opt: the primary size); TensorRT's profile is a box,
    so every size in between is accepted too, though parity was checked only at the listed ones."""
    c, h, w = shape[1:]
    opt = cfg.batch
    top = cfg.max_batch or cfg.batch
    sizes = cfg.sizes or ((h, w),)
    lo = (min(a for a, _ in sizes), min(b for _, b in sizes))
    hi = (max(a for a, _ in sizes), max(b for _, b in sizes))
    dims = {"min": [1, c, *lo], "opt": [opt, c, h, w], "max": [top, c, *hi]}
    shapes = {k: f"{input_name}:{'x'.join(map(str, v))}" for k, v in dims.items()}
    trtexec = ["trtexec", "--onnx=model.onnx", f"--saveEngine={PLAN}", f"--minShapes={shapes['min']}",
               f"--optShapes={shapes['opt']}", f"--maxShapes={shapes['max']}",
               f"--memPoolSize=workspace:{cfg.workspace_mib}M", f"--timingCacheFile={TIMING_CACHE}",
               "--stronglyTyped"]
    return {"profile": {"input": input_name, **dims}, "workspace_mib": cfg.workspace_mib,
            "strongly_typed": True, "timing_cache": TIMING_CACHE, "plan": PLAN,
            "trtexec": shlex.join(trtexec),
            "trtexec_note": "run in the artifact folder; --stronglyTyped makes TensorRT 10.x keep the ONNX's "
                            "precisions and is a no-op on 11.x, where every network is strongly typed",
            "python": "edgevit build-engine DIR (edgevit.targets.tensorrt.engine.build_engine)"}


def carry_scopes(src: Path, dest: Path) -> int:
    """Copy the module scopes torch's exporter recorded on each node of ``src`` onto the node of the same name in
    ``dest`` (ModelOpt rewrites the graph and drops node metadata; ``edgevit drift`` finds blocks by these scopes).
    Nodes ModelOpt added (casts, Q/DQ) take their feeder's scope in ``onnx.block_tensors``. Returns how many
    nodes got their scope back."""
    import onnx

    scopes = {n.name: list(n.metadata_props) for n in onnx.load(str(src), load_external_data=False).graph.node}
    model = onnx.load(str(dest))
    carried = 0
    for node in model.graph.node:
        if not node.metadata_props and scopes.get(node.name):
            node.metadata_props.extend(scopes[node.name])
            carried += 1
    onnx.save(model, str(dest))
    return carried


def nodes_of_modules(path: Path, modules: tuple[str, ...]) -> list[str]:
    """Names of the ONNX nodes exported from any of ``modules`` (module paths such as ``stages.2.blocks.3``)."""
    import onnx

    if not modules:
        return []
    graph = onnx.load(str(path), load_external_data=False).graph
    wanted = set(modules)
    return [n.name for n in graph.node if wanted & set(node_scopes(n))]


def export_tensorrt_onnx(model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
    io_spec = replace(io_spec, dynamic_batch=True)
    path = out_dir / "model.onnx"
    details: dict = {}
    with temp_dir("trt") as tmp:
        fp32 = path if cfg.precision == "fp32" else Path(tmp) / "fp32.onnx"
        export_onnx(model, example, fp32, io_spec, opset=cfg.opset)
        if cfg.precision != "fp32":
            from edgevit.quantize import tensorrt_quant

            nodes = tuple(nodes_of_modules(fp32, keep_float))
            if cfg.precision == "fp16":
                quant = tensorrt_quant.convert_fp16(fp32, path, calibration, input_name=io_spec.input_name,
                                                    opset=cfg.opset, keep_float_nodes=nodes)
            else:
                quant = tensorrt_quant.quantize_int8(fp32, path, calibration, method=cfg.calib_method,
                                                     keep_float_nodes=nodes)
            carry_scopes(fp32, path)
            if keep_float:
                quant["kept_float"] = list(keep_float)  # the modules asked for: every node of each is excluded
                quant["kept_float_nodes"] = len(nodes)
            details["quantization"] = quant
    ops = check_operators(path)
    if ops["problems"]:
        raise ExportError("the TensorRT-ready ONNX has nodes the TensorRT ONNX parser "
                          f"({ops['release']}) does not take:\n  " + "\n  ".join(ops["problems"][:20]))
    lint = polygraphy_lint(path, (io_spec.input_name, tuple(example.shape)))
    if not lint["passed"]:
        raise ExportError(f"polygraphy check lint failed on the TensorRT-ready ONNX: "
                          f"{lint['failing_nodes'] or lint['errors']}")
    return ExportResult(artifact=path.name, details={
        "opset": onnx_opset(path), "op_counts": onnx_op_counts(path), **details,
        "supported_operators": ops, "lint": lint,
        "build": build_settings(io_spec.input_name, tuple(example.shape), cfg),
        "engine": None,
        "engine_note": "no engine is built at conversion: an engine is tied to one GPU model and TensorRT "
                       "version; build it on the serving machine with `edgevit build-engine DIR`"})
