"""The ``tensorrt`` target: the TensorRT-ready ONNX, made and checked here; the engine is built on the serving GPU.

An engine (``.plan``) is specific to one GPU model and one TensorRT version, so the portable artifact is the ONNX
with its precision already in the graph (TensorRT builds strongly typed networks: ModelOpt AutoCast for fp16,
explicit Q/DQ for int8, ``edgevit.quantize.tensorrt_quant``) and the build settings in the manifest: the
optimization profile, the workspace, the exact ``trtexec`` line and the Python build call. Here the ONNX is checked
in ONNX Runtime's CPU provider against PyTorch, linted by Polygraphy, and every node is checked against the TensorRT
ONNX parser's operator list (``checks.py``, ``onnx_ops.json`` with its source and release). ``edgevit build-engine``
(``engine.py``) builds and checks the engine where a GPU and TensorRT are.
"""

from __future__ import annotations

import logging

from edgevit.errors import ConfigError, MissingDependencyError
from edgevit.targets.base import ExportResult, register_target
from edgevit.targets.onnx.target import OnnxTarget
from edgevit.targets.tensorrt.checks import operator_table
from edgevit.targets.tensorrt.export import export_tensorrt_onnx
from edgevit.verify.tolerances import FP16, FP32, INT8

log = logging.getLogger(__name__)


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
        from edgevit.targets.tensorrt.engine import bench_problem

        return bench_problem(folder, manifest)

    def bench_run(self, folder, manifest, x):
        from edgevit.targets.tensorrt.engine import engine_bench_run

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
            from edgevit.targets.tensorrt.engine import require_engine_toolchain

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
        return export_tensorrt_onnx(model, example, out_dir, io_spec, cfg, calibration=calibration,
                                    keep_float=keep_float)

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
