"""The ``litert`` target (alias ``tflite``): what the rest of edgevit learns about LiteRT (.tflite)."""

from __future__ import annotations

import logging

from edgevit.errors import ConfigError
from edgevit.targets.base import ExportResult, Runner, Target, register_target
from edgevit.targets.common import minor_release
from edgevit.targets.litert.drift import tflite_block_outputs
from edgevit.targets.litert.export import cached_transposes, export_tflite
from edgevit.targets.litert.runtime import interpreter_class, load_tflite, quiet, runtime_module
from edgevit.verify.tolerances import FP16, FP32, INT8

log = logging.getLogger(__name__)


@register_target
class LiteRTTarget(Target):
    name = "litert"
    suffix = ".tflite"
    precisions = ("fp32", "fp16", "int8w", "int8")
    needs_calibration = ("int8",)
    extra = "litert"
    runtime = "ai_edge_litert"
    toolchain = ("litert_torch",)
    form_report_step = "count the original and deployed forms' TRANSPOSE ops (cached per architecture)"
    multi_size = "one signature per size in one .tflite (serving_default is the primary size, serving_<H>x<W> the " \
                 "others; the weights are stored once)"
    form = "litert"
    options = ("layout",)
    distributions = ("litert-torch", "ai-edge-litert", "ai-edge-quantizer")
    # fp16 stores weights in fp16 and XNNPACK computes in fp32 (weight rounding only); int8w quantizes activations at
    # run time, so it is held like static int8
    tolerance_rows = {"litert": {"fp32": FP32, "fp16": FP16, "int8w": INT8, "int8": INT8}}
    cost = 3.0

    def runtime_for(self, delegate):
        return f"LiteRT interpreter ({runtime_module()}, XNNPACK)"

    def check_options(self, cfg) -> None:
        if cfg.dynamic_batch:
            raise ConfigError("litert artifacts have a fixed batch here; drop --dynamic-batch or use --batch N")
        if cfg.extra_sizes and cfg.precision == "int8":
            raise ConfigError("a multi-size .tflite (--img-sizes) is built for fp32, fp16 and int8w here (int8 "
                              "activations are calibrated at one size); convert int8 once per size with --img-size")

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        with quiet():  # its import logs natively (oneDNN notices)
            self.require("litert_torch")
        self.check_options(cfg)
        return export_tflite(model, example, out_dir, io_spec, cfg, calibration=calibration, keep_float=keep_float)

    def load(self, artifact_path, spec, *, threads=None) -> Runner:
        return load_tflite(artifact_path, spec, threads=threads)

    def block_outputs(self, artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
        return tflite_block_outputs(artifact_path, spec, units, x, threads=threads, model=model,
                                    calibration=calibration)

    def import_runtime(self) -> None:
        interpreter_class()

    def form_report(self, original, deployed, example, cfg, details: dict) -> dict:
        """TRANSPOSE ops of the original and the deployed form, each as an fp32 conversion with the artifact's
        layout: what the rewrites did to LiteRT's layout shuffles. An fp32 artifact is the deployed form's fp32
        conversion, so its own count is used; other precisions convert the deployed form in fp32 (whose count
        test_matrix checks against an fp16 artifact's)."""
        deployed_count = details["transposes"] if cfg.precision == "fp32" else \
            cached_transposes(deployed, example, cfg.layout)
        return {"litert_transposes": {"original_form": cached_transposes(original, example, cfg.layout),
                                      "deployed_form": deployed_count}}

    def versions(self):
        from importlib.metadata import PackageNotFoundError, version

        found = {}
        for package in ("litert-torch", "ai-edge-litert", "ai-edge-quantizer", "tflite-runtime"):
            try:
                found[package] = version(package)
            except PackageNotFoundError:
                continue
        return found

    def runtime_requirements(self, cfg) -> dict:
        made = self.versions().get("ai-edge-litert")
        if made is None:
            return {"runtime": "litert", "why": "the LiteRT interpreter with the builtin op set"}
        return {"runtime": "litert", "min_version": minor_release(made),
                "why": f"converted for the LiteRT {made} op set; an older interpreter is not promised to have "
                       "every op version this model uses"}
