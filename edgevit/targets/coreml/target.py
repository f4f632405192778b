"""The ``coreml`` target: what the rest of edgevit learns about Core ML (.mlpackage ML programs)."""

from __future__ import annotations

import logging

from edgevit.errors import ConfigError
from edgevit.targets.base import ExportResult, Runner, RuntimeSpec, Target, register_target
from edgevit.targets.coreml.drift import mlprogram_block_outputs
from edgevit.targets.coreml.export import COMPUTE_UNITS, INPUT_TYPES, MIN_IOS, export_mlpackage
from edgevit.targets.coreml.runtime import load_package
from edgevit.targets.coreml.simulator import runtime_name
from edgevit.verify.tolerances import FP16, FP32, INT8, WEIGHT_ONLY

log = logging.getLogger(__name__)


@register_target
class CoreMLTarget(Target):
    name = "coreml"
    suffix = ".mlpackage"
    precisions = ("fp16", "fp32", "int8", "int8w", "pal8", "pal6", "pal4")
    default_precision = "fp16"
    needs_calibration = ("int8",)
    toolchain = ("coremltools",)
    # torch.export proves the deployed graph's ceil-mode pool guards only for heights/widths that are multiples of 32
    multi_size = "enumerated shapes (ct.EnumeratedShapes): one ML program for every listed size, multiples of 32"
    form = "coreml"
    options = ("min_ios", "compute_units", "input_type")
    distributions = ("coremltools",)
    # fp16: 10-bit mantissa, storage rounding per op over ~150 ops; weight-only compression (int8 weights, 8-bit
    # palettes) on fp16 compute; 6- and 4-bit palettes are held like int8
    tolerance_rows = {"coreml": {"fp32": FP32, "fp16": FP16, "int8": INT8, "int8w": WEIGHT_ONLY, "pal8": WEIGHT_ONLY,
                                 "pal6": INT8, "pal4": INT8}}
    cost = 2.5

    def bench_problem(self, folder, manifest):
        return ("CoreML predictions need macOS; use the iOS app's benchmark screen and `edgevit profile ingest` to "
                "bring its numbers in")

    @property
    def runtime(self) -> str:  # verify says which one it used
        return runtime_name()

    def takes_raw_pixels(self, cfg) -> bool:
        return cfg.input_type == "image"

    def output_names(self, cfg, names, labels):
        return ("probabilities",) if labels and names == ("logits",) else names

    def check_options(self, cfg) -> None:
        if cfg.min_ios not in MIN_IOS:
            raise ConfigError(f"--min-ios must be one of {', '.join(map(str, MIN_IOS))}, got {cfg.min_ios}")
        if cfg.compute_units not in COMPUTE_UNITS:
            raise ConfigError(f"--compute-units must be one of {', '.join(COMPUTE_UNITS)}, got {cfg.compute_units}")
        if cfg.input_type not in INPUT_TYPES:
            raise ConfigError(f"--input-type must be image or tensor, got {cfg.input_type}")
        if cfg.dynamic_batch:
            raise ConfigError("coreml artifacts have a fixed batch here; drop --dynamic-batch")
        if cfg.batch > 1 and cfg.input_type == "image":
            raise ConfigError(f"a CoreML image input takes one picture (batch 1), not --batch {cfg.batch}: pass "
                              "--input-type tensor for a batched artifact, or drop --batch")
        from edgevit.quantize.coreml_quant import check

        check(cfg.precision, cfg.min_ios)
        sizes = cfg.sizes
        if len(sizes) > 1:
            odd = [f"{h}x{w}" for h, w in sizes if h % 32 or w % 32]
            if odd:
                raise ConfigError(f"a multi-size CoreML model (--img-sizes) takes sizes that are multiples of 32 here; "
                                  f"{', '.join(odd)} is not (torch.export cannot prove the ceil-mode pools' shapes "
                                  "over other sizes): convert it alone with --img-size, or use --target onnx/ort")
            if cfg.precision == "int8":
                raise ConfigError("a multi-size CoreML model (--img-sizes) is built for fp16/fp32 and weight-only "
                                  "precisions here (int8 activations are calibrated at one size); convert int8 once "
                                  "per size with --img-size")

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        self.require("coremltools")
        self.check_options(cfg)
        return export_mlpackage(model, example, out_dir, io_spec, cfg, calibration=calibration, keep_float=keep_float)

    def load(self, artifact_path, spec: RuntimeSpec, *, threads=None) -> Runner:
        return load_package(artifact_path, spec, threads=threads)

    def block_outputs(self, artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
        return mlprogram_block_outputs(artifact_path, spec, units, x, threads=threads, model=model,
                                       calibration=calibration)

    def versions(self):
        import coremltools

        return {"coremltools": coremltools.__version__}

    def runtime_requirements(self, cfg) -> dict:
        return {"runtime": "ios", "min_version": str(cfg.min_ios),
                "why": "the ML program's minimum_deployment_target (--min-ios)"}
