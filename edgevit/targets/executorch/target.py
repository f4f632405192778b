"""The ``executorch`` target: what the rest of edgevit learns about ExecuTorch (.pte with the XNNPACK or CoreML
delegate)."""

from __future__ import annotations

import logging

from edgevit.errors import ConfigError
from edgevit.targets.base import ExportResult, Runner, RuntimeSpec, Target, register_target
from edgevit.targets.common import minor_release
from edgevit.targets.executorch.drift import pte_block_outputs
from edgevit.targets.executorch.export import export_pte
from edgevit.targets.executorch.runtime import executorch_runtime, load_program
from edgevit.verify.tolerances import FP16, FP32, INT8

log = logging.getLogger(__name__)


@register_target
class ExecuTorchTarget(Target):
    name = "executorch"
    suffix = ".pte"
    delegates = ("xnnpack", "coreml", None)
    precisions = ("fp32", "fp16", "int8")
    needs_calibration = ("int8",)
    runtime = "executorch"
    toolchain = ("executorch",)
    # a graph with symbolic height/width does not export here: PatchEmbed's ceil-mode pools add guards torch.export
    # cannot prove over a size range ("Constraints violated (H, W)"), so each size is its own static method
    multi_size = "one method per size in one .pte (forward is the primary size, forward_<H>x<W> the others)"
    form = "executorch"
    options = ("etrecord", "min_ios")
    distributions = ("executorch", "coremltools", "torchao")
    # the CoreML delegate's payload is held like the coreml target's ML programs
    tolerance_rows = {"executorch": {"fp32": FP32, "int8": INT8},
                      "executorch-coreml": {"fp32": FP32, "fp16": FP16}}
    bench_runtime = "executorch"
    etdump = True
    cost = 2.5

    def takes_option(self, option, delegate):
        if option == "min_ios":  # the CoreML delegate's deployment target
            return delegate == "coreml"
        return super().takes_option(option, delegate)

    def form_for(self, delegate):
        # the CoreML delegate's payload runs where the coreml target's ML programs do: it gets their form
        return "coreml" if delegate == "coreml" else self.form

    def bench_problem(self, folder, manifest):
        if manifest.get(self.name, {}).get("delegate") == "coreml":
            return ("the .pte delegates to CoreML, which cannot run here; CoreML predictions need macOS: use the iOS "
                    "app's benchmark screen and `edgevit profile ingest` to bring its numbers in")
        return None

    def summary_lines(self, manifest):
        details = manifest.get(self.name, {})
        deleg = details.get("delegation")
        if not deleg:
            return []
        lines = [f"delegation: {deleg['delegated_nodes']} nodes in {deleg['delegated_subgraphs']} "
                 f"{details['delegate']} subgraphs, {deleg['portable_nodes']} on portable kernels"]
        lines += [f"  portable: {op} x{n}" for op, n in deleg["portable_operators"].items()]
        return lines

    def check(self, precision, delegate=None):
        super().check(precision, delegate)
        if precision == "fp16" and delegate != "coreml":
            raise ConfigError("executorch fp16 is available with --delegate coreml; XNNPACK takes fp32 or int8 "
                              "(supported: fp32/int8 with xnnpack, fp16/fp32 with coreml)")
        if precision == "int8" and delegate == "coreml":
            raise ConfigError("executorch int8 is available with the xnnpack delegate (supported: fp32/int8 with "
                              "xnnpack, fp16/fp32 with coreml); for CoreML int8 use --target coreml")

    def runtime_for(self, delegate: str | None) -> str:
        if delegate == "coreml":
            from edgevit.targets.coreml.simulator import runtime_name

            return f"{runtime_name()} on the .pte's CoreML delegate payload"
        return self.runtime

    def tolerance_key(self, cfg) -> str:
        return "executorch-coreml" if cfg.delegate == "coreml" else "executorch"

    def check_options(self, cfg) -> None:
        if cfg.extra_sizes and (cfg.precision != "fp32" or (cfg.delegate or "xnnpack") != "xnnpack"):
            raise ConfigError("a multi-size .pte (--img-sizes) is built for fp32 with the xnnpack delegate here (an "
                              "int8 graph is quantized at one size); convert other precisions once per size with "
                              "--img-size")

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        self.require("executorch.exir")
        self.check_options(cfg)
        return export_pte(model, example, out_dir, io_spec, cfg, calibration=calibration, keep_float=keep_float)

    def load(self, artifact_path, spec: RuntimeSpec, *, threads=None) -> Runner:
        return load_program(artifact_path, spec, threads=threads)

    def drift_needs_calibration(self, spec: RuntimeSpec) -> bool:
        return spec.details.get("quantization") is not None and spec.details.get("delegate") != "coreml"

    def block_outputs(self, artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
        self.require("executorch.exir")
        return pte_block_outputs(artifact_path, spec, units, x, threads=threads, model=model, calibration=calibration)

    def import_runtime(self) -> None:
        executorch_runtime()

    def versions(self):
        from importlib.metadata import version

        return {"executorch": version("executorch")}

    def runtime_requirements(self, cfg) -> dict:
        return {"runtime": "executorch", "min_version": minor_release(self.versions()["executorch"]),
                "why": f"written by ExecuTorch {self.versions()['executorch']}; an older runtime is not promised to "
                       "load a newer program, so edgevit asks for this minor release or newer"}
