"""The ``onnx`` and ``ort`` targets: what the rest of edgevit learns about ONNX and ONNX Runtime Mobile (.ort)."""

from __future__ import annotations

import logging

from edgevit.targets.base import ExportResult, Runner, RuntimeSpec, Target, register_target
from edgevit.targets.common import minor_release
from edgevit.targets.onnx.drift import onnx_block_outputs, ort_block_outputs
from edgevit.targets.onnx.export import export_ort, export_precision, onnx_op_counts, onnx_opset
from edgevit.targets.onnx.runtime import session_runner
from edgevit.verify.tolerances import FP16, FP32, INT8

log = logging.getLogger(__name__)


@register_target
class OnnxTarget(Target):
    name = "onnx"
    suffix = ".onnx"
    multi_size = "dynamic height and width (one graph; parity checked at every listed size)"
    runtime = "onnxruntime"
    toolchain = ("onnxscript", "onnxruntime")
    precisions = ("fp32", "fp16", "int8")
    needs_calibration = ("int8",)
    form = "onnx"
    options = ("opset", "calib_method")
    distributions = ("onnx", "onnxruntime", "onnxscript")
    # fp16 on ONNX Runtime: storage and most arithmetic in fp16; int8: 8-bit activations through ~100 layers, gated
    # on direction (cosine) and the top classes, the measured accuracy cost on evaluation images being the real check
    tolerance_rows = {"onnx": {"fp32": FP32, "fp16": FP16, "int8": INT8}}

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        self.require("onnxscript")
        path = out_dir / "model.onnx"
        details = export_precision(model, example, path, io_spec, cfg, calibration, keep_float)
        return ExportResult(artifact=path.name, details={"opset": onnx_opset(path), "op_counts": onnx_op_counts(path),
                                                         **details})

    def load(self, artifact_path, spec: RuntimeSpec, *, threads=None) -> Runner:
        self.require("onnxruntime")
        return session_runner(artifact_path, threads)

    def block_outputs(self, artifact_path, spec: RuntimeSpec, units, x, *, threads=None, model=None, calibration=None):
        self.require("onnxruntime")
        return onnx_block_outputs(artifact_path, spec, units, x, threads=threads, model=model, calibration=calibration)

    def versions(self):
        import onnx
        import onnxruntime

        return {"onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__}

    def runtime_requirements(self, cfg) -> dict:
        return {"runtime": "onnxruntime", "min_version": minor_release(self.versions()["onnxruntime"]),
                "why": f"parity was checked with onnxruntime {self.versions()['onnxruntime']} (opset {cfg.opset}); "
                       "edgevit asks for this minor release or newer"}


@register_target
class OrtTarget(OnnxTarget):
    """ONNX Runtime Mobile: the ``.ort`` format, the reduced-operator config, and the mobile usability check."""

    name = "ort"
    suffix = ".ort"
    form = "ort"
    tolerance_rows = {"ort": {"fp32": FP32, "fp16": FP16, "int8": INT8}}
    cost = 1.5

    def summary_lines(self, manifest):
        details = manifest[self.name]
        usable = details["mobile_usability"]
        return [f"ORT mobile: reduced-operator config {details['required_operators_config']}; usability check "
                f"{'ran' if usable.get('checked') else 'failed: ' + usable.get('error', '')}"]

    def block_outputs(self, artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
        """A .ort file keeps tensor names but not the module scopes, so the deployed PyTorch model is exported
        to fp32 ONNX again only to learn which tensor leaves each block (the exporter names tensors the same way
        every time); those names are then found in the graph onnxruntime loads from the .ort itself (quantized
        tensors through their ``<name>_scale``/``_zero_point``), which is run with the block outputs added and
        no further graph optimization."""
        self.require("onnxruntime")
        return ort_block_outputs(artifact_path, spec, units, x, threads=threads, model=model, calibration=calibration)

    def runtime_requirements(self, cfg) -> dict:
        return {"runtime": "onnxruntime", "min_version": minor_release(self.versions()["onnxruntime"]),
                "why": f"a .ort file carries the ORT format version of its converter (onnxruntime "
                       f"{self.versions()['onnxruntime']}); an older runtime is not promised to read it, so edgevit "
                       "asks for this minor release or newer"}

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        self.require("onnxscript")
        return export_ort(model, example, out_dir, io_spec, cfg, calibration=calibration, keep_float=keep_float)
