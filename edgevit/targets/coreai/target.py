"""The Core AI ``Target``: what the rest of edgevit learns about this toolchain, and nothing else."""

from __future__ import annotations

from edgevit.errors import ConfigError
from edgevit.targets.base import ExportResult, Runner, RuntimeSpec, Target, register_target
from edgevit.verify.tolerances import FP16, FP32, INT8, WEIGHT_ONLY

# the oldest systems with the Core AI framework; recorded in the asset (minimum_os) and in the manifest
MIN_OS = "27.0.0"


@register_target
class CoreAITarget(Target):
    name = "coreai"
    suffix = ".aimodel"
    precisions = ("fp32", "fp16", "int8w", "int8")
    default_precision = "fp16"
    needs_calibration = ("int8",)
    extra = "coreai"
    toolchain = ("coreai_torch", "coreai", "coreai_opt")
    # BN folded, BCHW attention with k^T q scores: by the asset's own operation counts (Next-ViT-S at 224,
    # benchmarks/results/coreai_forms.json) 1,531 operations and 5 transposes, against 4,178 and 55 for the per-head
    # split Core ML gets (ANE guidance written for Core ML's compiler) and 1,793 and 36 for the token layout; CPU
    # times tie (docs/FORMS.md#core-ai)
    form = "onnx"
    distributions = ("coreai-torch", "coreai-core", "coreai-opt")
    # fp32: the runtime's CPU path re-associates sums like every other runtime; fp16: storage and arithmetic in
    # fp16 with float32 input and output (the Core ML row: ~150 ops of 10-bit mantissa)
    # int8w: int8 weights on float activations, a weight-only row; int8: W8A8, held like every int8 artifact
    tolerance_rows = {"coreai": {"fp32": FP32, "fp16": FP16, "int8w": WEIGHT_ONLY, "int8": INT8}}
    cost = 2.0
    byte_reproducible = False  # MLIR bytecode's use-list orders follow the process's memory (export.py)

    @property
    def runtime(self) -> str:
        return "coreai"

    def runtime_for(self, delegate):
        return "Core AI runtime (coreai-core, CPU)"

    def takes_raw_pixels(self, cfg) -> bool:
        return True  # 0-255 RGB as float32; the checkpoint's mean/std are the model's first layer

    def input_kind(self, cfg) -> str:
        return "tensor"  # float32 NCHW holding 0-255 RGB: the app fills the tensor, Core AI takes no picture here

    def check_options(self, cfg) -> None:
        if cfg.dynamic_batch:
            raise ConfigError("coreai assets have a fixed batch here; drop --dynamic-batch (convert once per batch "
                              "size with --batch)")

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        from edgevit.targets.common import quiet
        from edgevit.targets.coreai.export import export_asset

        with quiet():  # coreai-torch warns on import about torch releases it has not been validated with
            self.require("coreai_torch")
        return export_asset(model, example, out_dir, io_spec, cfg, min_os=MIN_OS, calibration=calibration,
                            keep_float=keep_float)

    def load(self, artifact_path, spec: RuntimeSpec, *, threads=None) -> Runner:
        from edgevit.targets.coreai.runtime import asset_runner

        self.require("coreai")
        return asset_runner(artifact_path, spec)

    def block_outputs(self, artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
        from edgevit.targets.coreai.drift import asset_block_outputs

        self.require("coreai")
        return asset_block_outputs(artifact_path, spec, units, x, threads=threads, model=model,
                                   calibration=calibration)

    def bench_problem(self, folder, manifest):
        return ("the Core AI runtime on Linux is a CPU reference path, not a device figure; time .aimodel assets on "
                "an iPhone/Mac with OS 27 and bring the numbers in with `edgevit profile ingest`")

    def summary_lines(self, manifest):
        details = manifest[self.name]
        ops = details["op_counts"]
        return [f"Core AI: {sum(ops.values())} operations ({', '.join(f'{k} x{v}' for k, v in list(ops.items())[:6])}"
                f", ...), {details['transposes']} transposes; minimum OS {details['minimum_os']}; parity in the "
                "Core AI runtime's CPU path"]

    def versions(self):
        from importlib.metadata import version

        return {d: version(d) for d in self.distributions}

    def runtime_requirements(self, cfg) -> dict:
        return {"runtime": "coreai", "min_version": MIN_OS,
                "why": "Core AI ships with iOS 27 / macOS 27; the asset records minimum_os 27"}
