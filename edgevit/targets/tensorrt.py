"""TensorRT target: the TensorRT-ready ONNX, made and checked here; the engine is built on the serving GPU.

An engine (``.plan``) is specific to one GPU model and one TensorRT version, so the portable artifact is the ONNX
with its precision already in the graph (TensorRT builds strongly typed networks: ModelOpt AutoCast for fp16,
explicit Q/DQ for int8, ``edgevit.quantize.tensorrt_quant``) and the build settings in the manifest: the
optimization profile, the workspace, the exact ``trtexec`` line and the Python build call. Here the ONNX is checked
in ONNX Runtime's CPU provider against PyTorch, linted by Polygraphy, and every node is checked against the TensorRT
ONNX parser's operator list (``tensorrt_onnx_ops.json``, with its source and release). ``edgevit build-engine``
(``edgevit.targets.tensorrt_engine``) builds and checks the engine where a GPU and TensorRT are.
"""

from __future__ import annotations

import json
import logging
import re
import shlex
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import numpy as np

from edgevit._io import temp_dir
from edgevit.errors import ConfigError, ExportError, MissingDependencyError
from edgevit.targets.base import ExportResult, register_target
from edgevit.targets.onnx.drift import node_scopes
from edgevit.targets.onnx.export import export_onnx, onnx_op_counts, onnx_opset
from edgevit.targets.onnx.target import OnnxTarget
from edgevit.verify.tolerances import FP16, FP32, INT8

log = logging.getLogger(__name__)

OPS_TABLE = Path(__file__).with_name("tensorrt_onnx_ops.json")
PLAN = "model.plan"
TIMING_CACHE = "timing.cache"
DEFAULT_WORKSPACE_MIB = 4096
# ONNX element types by the names onnx-tensorrt's operator table uses
_ELEM = {1: "FP32", 10: "FP16", 16: "BF16", 3: "INT8", 2: "UINT8", 6: "INT32", 7: "INT64", 9: "BOOL",
         17: "FP8", 22: "INT4"}
# ops whose ``axes`` input must be known when TensorRT parses the graph (the table's restrictions)
_CONST_AXES = {"ReduceMean": 1, "ReduceSum": 1, "ReduceMax": 1, "ReduceMin": 1, "Slice": 3, "Unsqueeze": 1,
               "Squeeze": 1}


def operator_table() -> dict:
    return json.loads(OPS_TABLE.read_text())


def check_operators(path: Path) -> dict:
    """Every node of the ONNX at ``path`` against the TensorRT ONNX parser's operator list: the op is listed as
    supported, its first input's element type is one it accepts, and the restrictions that can be read off the
    graph hold (Q/DQ zero points 0, ``axes`` inputs constant). Returns the manifest's record; ``problems`` lists
    each violation by node."""
    import onnx

    table = operator_table()
    model = onnx.shape_inference.infer_shapes(onnx.load(str(path)))
    graph = model.graph
    elem = {v.name: v.type.tensor_type.elem_type for v in [*graph.input, *graph.value_info, *graph.output]}
    inits = {i.name: i for i in graph.initializer}
    elem.update({name: i.data_type for name, i in inits.items()})
    constants = set(inits) | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    const_value = {n.output[0]: onnx.numpy_helper.to_array(n.attribute[0].t) for n in graph.node
                   if n.op_type == "Constant" and n.attribute and n.attribute[0].name == "value"}
    const_value.update({name: onnx.numpy_helper.to_array(i) for name, i in inits.items()})
    problems, counts = [], {}
    opset = next(o.version for o in model.opset_import if o.domain in ("", "ai.onnx"))
    if not table["opset_min"] <= opset <= table["opset_max"]:
        problems.append(f"opset {opset} is outside the list's opset {table['opset_min']}-{table['opset_max']}")
    for node in graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
        where = f"{node.op_type} node {node.name!r}"
        if node.domain not in ("", "ai.onnx"):
            problems.append(f"{where}: custom domain {node.domain!r} needs a TensorRT plugin")
            continue
        row = table["operators"].get(node.op_type)
        if row is None or not row["supported"]:
            problems.append(f"{where}: {'not supported' if row else 'not listed'} by the TensorRT ONNX parser")
            continue
        first = elem.get(node.input[0]) if node.input else None
        if first and row["types"] and _ELEM.get(first, str(first)) not in row["types"]:
            problems.append(f"{where}: input type {_ELEM.get(first, first)} is not among {', '.join(row['types'])}")
        if node.op_type in ("QuantizeLinear", "DequantizeLinear") and len(node.input) > 2:
            zero = const_value.get(node.input[2])
            if zero is None or np.any(zero != 0):
                problems.append(f"{where}: zero point {node.input[2]!r} must be a constant 0 for TensorRT")
        k = _CONST_AXES.get(node.op_type)
        if k is not None and len(node.input) > k and node.input[k] and node.input[k] not in constants:
            problems.append(f"{where}: its axes input {node.input[k]!r} must be a constant for TensorRT")
    used = {op: table["operators"][op]["restrictions"] for op in sorted(counts)
            if op in table["operators"] and table["operators"][op]["restrictions"]}
    return {"list": table["source"], "release": table["release"], "list_opset": [table["opset_min"],
                                                                                   table["opset_max"]],
            "opset": opset, "op_counts": dict(sorted(counts.items())), "restrictions_of_used_ops": used,
            "problems": problems}


def polygraphy_cli(args: list[str], *, timeout: float) -> subprocess.CompletedProcess:
    """``polygraphy ARGS`` in a child process of this interpreter (its console script may not be on PATH)."""
    code = "import sys; from polygraphy.tools import main; sys.argv[0] = 'polygraphy'; sys.exit(main())"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=timeout)


def polygraphy_lint(path: Path, input_shape: tuple[str, tuple[int, ...]] | None = None) -> dict:
    """``polygraphy check lint`` on the ONNX (in a child process: it runs ONNX Runtime); ``passed`` is its verdict
    (no failing node, no error-level entry). Warnings are kept, repeated messages counted once per pattern.
    ``input_shape`` (name, shape) is the shape its inference uses for the graph's dynamic dims (else 1 each, which
    a graph with dynamic height and width cannot take)."""
    with temp_dir("lint") as tmp:
        report = Path(tmp) / "lint.json"
        shapes = [] if input_shape is None else \
            ["--input-shapes", f"{input_shape[0]}:[{','.join(map(str, input_shape[1]))}]"]
        r = polygraphy_cli(["check", "lint", str(path), "-o", str(report), *shapes], timeout=900)
        if not report.is_file():
            tail = (r.stdout + r.stderr).strip().splitlines()[-3:]
            raise ExportError(f"polygraphy check lint wrote no report (exit {r.returncode}): {' | '.join(tail)}")
        data = json.loads(report.read_text())
    entries = data.get("lint_entries", [])
    failing = data.get("summary", {}).get("failing", [])
    errors = [e for e in entries if e.get("level") in ("error", "exception")]
    patterns: dict[str, int] = {}
    for e in entries:
        if e.get("level") == "warning":
            key = re.sub(r"'[\w.:/-]+'", "'...'", e.get("message", ""))
            patterns[key] = patterns.get(key, 0) + 1
    return {"command": " ".join(["polygraphy check lint", path.name, *shapes]), "passed": r.returncode == 0 and not failing
            and not errors, "failing_nodes": failing[:20], "errors": [e.get("message") for e in errors][:20],
            "warnings": [{"message": k, "count": v} for k, v in patterns.items()]}


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
            "python": "edgevit build-engine DIR (edgevit.targets.tensorrt_engine.build_engine)"}


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


@register_target
class TensorRTTarget(OnnxTarget):
    name = "tensorrt"
    suffix = ".onnx"
    runtime = "onnxruntime"  # the desktop check; the engine runs in TensorRT (edgevit build-engine)
    precisions = ("fp32", "fp16", "int8")
    needs_calibration = ("fp16", "int8")  # fp16: AutoCast's overflow check runs the calibration images
    extra = "tensorrt-onnx"
    always_dynamic_batch = True  # the optimization profile spans batch 1 to --max-batch
    multi_size = "dynamic height and width; the engine's optimization profile spans the listed sizes (opt: primary)"
    form = "tensorrt"
    options = ("opset", "calib_method", "max_batch", "workspace_mib", "build")
    distributions = OnnxTarget.distributions + ("nvidia-modelopt",)
    # the ONNX made here runs in ONNX Runtime's CPU provider at conversion and the engine built from it on the server
    # is held to the same row; fp16 is AutoCast's graph (fp16 storage and arithmetic, fp32 I/O); int8 leaves the
    # unquantized ops in fp16
    tolerance_rows = {"tensorrt": {"fp32": FP32, "fp16": FP16, "int8": INT8}}
    cost = 2.0

    def bench_problem(self, folder, manifest):
        from edgevit.targets.tensorrt_engine import bench_problem

        return bench_problem(folder, manifest)

    def bench_run(self, folder, manifest, x):
        from edgevit.targets.tensorrt_engine import engine_bench_run

        return engine_bench_run(folder, manifest, x)

    def summary_lines(self, manifest):
        details = manifest[self.name]
        ops, lint = details["supported_operators"], details["lint"]
        lines = [f"TensorRT: {sum(ops['op_counts'].values())} nodes, all on the ONNX parser's list ({ops['release']}); "
                 f"polygraphy lint {'passed' if lint['passed'] else 'FAILED'}; no engine here: build it on the GPU "
                 f"server with `edgevit build-engine {manifest.get('_folder', 'DIR')}` or "
                 f"`{details['build']['trtexec']}`"]
        kept = details.get("quantization", {}).get("kept_fp32", [])
        if kept:
            lines.append(f"  AutoCast kept {len(kept)} of {details['quantization']['nodes']} nodes in fp32 "
                         f"(activations beyond +-{details['quantization']['fp16_data_max']:g} on the calibration "
                         "images), e.g.:")
            lines += [f"    {k['node']}{' in ' + k['module'] if k.get('module') else ''}: {k['why']}" for k in kept[:5]]
        return lines

    def check_options(self, cfg) -> None:
        from edgevit.quantize.tensorrt_quant import MODELOPT_MODULES, missing_modules

        missing = missing_modules(("polygraphy", *(MODELOPT_MODULES if cfg.precision != "fp32" else ())))
        if missing:  # before any model is built
            raise MissingDependencyError(f"target tensorrt needs {', '.join(missing)}, which is not installed: "
                                         f"pip install 'edgevit[{self.extra}]'")
        if cfg.build:  # no GPU or no TensorRT: say so now, not after the conversion
            from edgevit.targets.tensorrt_engine import require_engine_toolchain

            require_engine_toolchain(cfg.out)
        if cfg.max_batch is not None and cfg.max_batch < cfg.batch:
            raise ConfigError(f"--max-batch {cfg.max_batch} is smaller than --batch {cfg.batch} (the profile's "
                              "opt batch); pass --max-batch >= --batch")
        if cfg.precision == "int8":
            from edgevit.quantize.tensorrt_quant import CALIB_METHODS

            if cfg.calib_method not in CALIB_METHODS:
                raise ConfigError(f"--calib-method {cfg.calib_method} is not available for tensorrt int8; ModelOpt "
                                  f"calibrates with {' or '.join(CALIB_METHODS)}")

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        self.require("onnxscript")
        self.require("polygraphy")
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

    def versions(self):
        out = super().versions()
        for dist in ("nvidia-modelopt", "polygraphy"):
            try:
                from importlib.metadata import version

                out[dist] = version(dist)
            except Exception:  # noqa: BLE001 - a missing optional toolchain is recorded as absent
                out[dist] = "not installed"
        return out

    def runtime_requirements(self, cfg) -> dict:
        table = operator_table()
        return {"runtime": "tensorrt", "min_version": "10.0.0",
                "why": "the ONNX carries its precision, which only a strongly typed build keeps (TensorRT 10.x with "
                       "--stronglyTyped; every network on 11.x), and its operators were checked against the TensorRT "
                       f"ONNX parser's list of {table['release']} (TensorRT {table['tensorrt']})"}
