"""PyTorch -> ``.mlpackage``: the checkpoint's pixel normalisation inside the model, enumerated shapes for
several sizes, the precisions (``edgevit.quantize.coreml_quant``; W8A8 through ``executorch_quant``), metadata, and
what makes the package byte-reproducible (also used for ExecuTorch's CoreML delegate payload)."""

from __future__ import annotations

import contextlib
import json
import logging
from pathlib import Path

import numpy as np

from edgevit._io import temp_dir
from edgevit.errors import ExportError
from edgevit.targets.base import ExportResult
from edgevit.targets.common import quiet, stated
from edgevit.targets.coreml.simulator import runtime_name

log = logging.getLogger(__name__)


MIN_IOS = (16, 17, 18)


COMPUTE_UNITS = ("all", "cpu_only", "cpu_and_gpu", "cpu_and_ne")


INPUT_TYPES = ("image", "tensor")


# ops that move activations between layouts or ranks; Apple's Neural Engine guidance is to avoid them
LAYOUT_OPS = ("transpose", "reshape", "squeeze", "expand_dims", "slice_by_index", "slice_by_size", "split")


class ImageNormalize:
    """Builds the wrapper that takes raw 0-255 RGB pixels: x * (1 / (255 std)) + (-mean / std), per channel."""

    @staticmethod
    def wrap(model, mean, std, softmax: bool):
        import torch
        from torch import nn

        class Wrapped(nn.Module):
            def __init__(self):
                super().__init__()
                self.model = model
                # a per-channel 1x1 convolution: exact, and not the mul + add pattern that coremltools fuses
                # into a batch_norm with epsilon (which scales every input by 1/sqrt(1 + 1e-5) and trips its
                # own dtype checks when weights are compressed afterwards)
                self.normalize = nn.Conv2d(3, 3, 1, groups=3, bias=True)
                with torch.no_grad():
                    self.normalize.weight.copy_(torch.tensor([1.0 / (255.0 * v) for v in std]).reshape(3, 1, 1, 1))
                    self.normalize.bias.copy_(torch.tensor([-m / v for m, v in zip(mean, std)]))

            def forward(self, x):
                y = self.model(self.normalize(x))
                return y.softmax(-1) if softmax else y

        return Wrapped().eval()


def _dynamic_dims(sizes) -> tuple | None:
    """torch.export's dynamic_shapes for a program serving ``sizes`` (multiples of 32): height/width as 32 x a
    symbolic dim where the sizes differ; None for one size. Drift exports the same way to find the same node names."""
    import torch

    if len(sizes) < 2:
        return None
    dims = {}
    for axis, values in ((2, [h for h, _ in sizes]), (3, [w for _, w in sizes])):
        if len(set(values)) > 1:
            dims[axis] = 32 * torch.export.Dim(f"{'hw'[axis - 2]}32", min=min(values) // 32, max=max(values) // 32)
    return (dims,)


def make_package_reproducible(package: Path) -> None:
    """Rewrite a saved .mlpackage so that the same model gives the same bytes.

    coremltools writes the spec's protobuf maps (metadata, MIL attributes) in hash order, stamps the conversion
    date, and names the package's items with random UUIDs in ``Manifest.json``; each made two conversions of one
    model differ (``tests/targets/test_reproducible.py``). The spec is re-serialized with sorted maps and without
    the date, and each item's identifier becomes a UUID derived from its path in the package.
    """
    import uuid

    from coremltools.proto import Model_pb2

    manifest_path = package / "Manifest.json"
    manifest = json.loads(manifest_path.read_text())
    renamed = {old: str(uuid.uuid5(uuid.NAMESPACE_URL, f"edgevit:{item['path']}"))
               for old, item in manifest["itemInfoEntries"].items()}
    manifest["itemInfoEntries"] = {renamed[k]: v for k, v in manifest["itemInfoEntries"].items()}
    manifest["rootModelIdentifier"] = renamed[manifest["rootModelIdentifier"]]
    manifest_path.write_text(json.dumps(manifest, indent=4, sort_keys=True))
    root = next(v for k, v in manifest["itemInfoEntries"].items() if k == manifest["rootModelIdentifier"])
    spec_path = package / "Data" / root["path"]
    spec = Model_pb2.Model()
    spec.ParseFromString(spec_path.read_bytes())
    spec.description.metadata.userDefined.pop("com.github.apple.coremltools.conversion_date", None)
    spec_path.write_bytes(spec.SerializeToString(deterministic=True))


def fresh_mil_names() -> None:
    """coremltools numbers unnamed MIL constants from a process-wide counter (``Builder.name_count``), so a second
    conversion in one process names them ``const_17`` where the first said ``const_14``; start each conversion at 0
    so the same model gives the same spec however many conversions ran before it."""
    from coremltools.converters.mil.mil.builder import Builder

    Builder.name_count.clear()


@contextlib.contextmanager
def reproducible_executorch_payload():
    """Make ExecuTorch's CoreML delegate write the same payload for the same model.

    ExecuTorch 1.5's ``CoreMLBackend.preprocess_model`` names each payload ``executorch_<random uuid4>`` (the on-device
    runtime's compiled-model cache key) in a shared temporary folder, and saves the package with coremltools' own
    randomness (see ``make_package_reproducible``). For the duration of the lowering: the identifier is derived from
    the model's content (its spec and every weight file, so two different models never share a cache key), the
    package is made reproducible when saved, and the temporary folder is private to this run (two runs converting
    the same model at once must not delete each other's files).
    """
    import hashlib
    import types
    import uuid

    from executorch.backends.apple.coreml.compiler import coreml_preprocess as cp

    original = cp.CoreMLBackend.preprocess_model

    def preprocess_model(mlmodel, model_type):
        digest = hashlib.sha256(mlmodel.get_spec().SerializeToString(deterministic=True))
        weights = Path(mlmodel.weights_dir) if getattr(mlmodel, "weights_dir", None) else None
        for f in sorted(weights.rglob("*")) if weights else []:
            if f.is_file():
                digest.update(f.name.encode() + f.read_bytes())
        identifier = uuid.UUID(bytes=digest.digest()[:16], version=5)
        save = mlmodel.save

        def save_reproducibly(path, *args, **kwargs):
            save(path, *args, **kwargs)
            make_package_reproducible(Path(path))

        mlmodel.save = save_reproducibly
        with temp_dir("etcoreml") as private:
            saved = cp.uuid, cp.tempfile
            cp.uuid = types.SimpleNamespace(uuid4=lambda: identifier)
            cp.tempfile = types.SimpleNamespace(gettempdir=lambda: private)
            try:
                return original(mlmodel, model_type)
            finally:
                cp.uuid, cp.tempfile = saved

    cp.CoreMLBackend.preprocess_model = staticmethod(preprocess_model)
    try:
        yield
    finally:
        cp.CoreMLBackend.preprocess_model = staticmethod(original)


def _converted_module(model, raw_pixels: bool, mean, std, softmax: bool):
    """What ``export`` hands to torch.export: the model behind the input normalisation (raw-pixel input) and/or a
    softmax (classifier)."""
    return ImageNormalize.wrap(model, mean, std, softmax) if raw_pixels else _maybe_softmax(model, softmax)


def _maybe_softmax(model, softmax: bool):
    if not softmax:
        return model
    from torch import nn

    class WithSoftmax(nn.Module):
        def __init__(self):
            super().__init__()
            self.model = model

        def forward(self, x):
            return self.model(x).softmax(-1)

    return WithSoftmax().eval()


def _set_metadata(mlmodel, cfg, io_spec) -> None:
    """Author, license and description (``common.stated``: nothing invented); the parity check is named by the
    runtime that will run it here (the simulator on Linux, predict on macOS)."""
    prov = io_spec.provenance or {}
    mlmodel.version = prov.get("edgevit", "")
    mlmodel.author, mlmodel.license, mlmodel.short_description = stated(cfg, io_spec, runtime_name())
    for key in ("weights", "weights_sha256"):
        if prov.get(key):
            mlmodel.user_defined_metadata[f"edgevit.{key}"] = str(prov[key])


def export_mlpackage(model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
    import coremltools as ct
    import torch

    labels = io_spec.labels
    pre = io_spec.preprocess
    softmax = io_spec.output_names == ("probabilities",)
    net = _converted_module(model, cfg.input_type == "image", pre["mean"], pre["std"], softmax)
    inner = "model." if net is not model else ""  # where ``model``'s modules sit inside ``net``
    shape = tuple(example.shape)
    sizes = cfg.sizes
    dynamic = _dynamic_dims(sizes)  # one program for every size: symbolic dims + enumerated input shapes
    if dynamic is not None:
        shape = ct.EnumeratedShapes(shapes=[[*shape[:2], h, w] for h, w in sizes], default=list(shape))
    if cfg.input_type == "image":
        inputs = [ct.ImageType(name=io_spec.input_name, shape=shape, color_layout=ct.colorlayout.RGB,
                               scale=1.0, bias=[0.0, 0.0, 0.0])]
    else:
        inputs = [ct.TensorType(name=io_spec.input_name, shape=shape, dtype=np.float32)]
    classifier = None
    if softmax:
        classifier = ct.ClassifierConfig(class_labels=list(labels), predicted_feature_name="classLabel",
                                         predicted_probabilities_output="probabilities")
        outputs = [ct.TensorType(name="probabilities")]
    else:
        outputs = [ct.TensorType(name=n, dtype=np.float32) for n in io_spec.output_names]
    target = {16: ct.target.iOS16, 17: ct.target.iOS17, 18: ct.target.iOS18}[cfg.min_ios]
    units = {"all": ct.ComputeUnit.ALL, "cpu_only": ct.ComputeUnit.CPU_ONLY,
             "cpu_and_gpu": ct.ComputeUnit.CPU_AND_GPU, "cpu_and_ne": ct.ComputeUnit.CPU_AND_NE}
    precision = ct.precision.FLOAT32 if cfg.precision == "fp32" else ct.precision.FLOAT16
    if cfg.precision == "int8":  # W8A8: quantize/dequantize around every op, calibrated in PyTorch
        from edgevit.quantize.executorch_quant import quantize_xnnpack

        with quiet():
            # in budget mode the input normalisation stays float too: it is not one of the ranked layers, and a
            # quantized one clips the raw pixels to the calibration set's range whatever else is kept
            keep = tuple(inner + k for k in keep_float) + (("normalize",) if keep_float and inner else ())
            quantized = quantize_xnnpack(net, example, calibration, keep)
        net = quantized.module
    try:
        with quiet():
            exported = torch.export.export(net, (example,), dynamic_shapes=dynamic,
                                           strict=False).run_decompositions({})
            fresh_mil_names()
            mlmodel = ct.convert(exported, inputs=inputs, outputs=outputs, classifier_config=classifier,
                                 minimum_deployment_target=target, compute_precision=precision,
                                 compute_units=units[cfg.compute_units], convert_to="mlprogram")
    except Exception as e:  # noqa: BLE001
        first = str(e).splitlines()[0] if str(e) else ""
        raise ExportError(f"CoreML conversion failed: {type(e).__name__}: {first}") from e
    quant = None
    if cfg.precision in ("int8w", "pal8", "pal6", "pal4"):
        from edgevit.quantize.coreml_quant import compress_weights

        with quiet():
            mlmodel = compress_weights(mlmodel, cfg.precision)
    if cfg.precision not in ("fp16", "fp32"):
        from edgevit.quantize.coreml_quant import SCHEMES

        quant = {"scheme": SCHEMES[cfg.precision]}
        if cfg.precision == "int8":
            quant["calibration_images"] = int(len(calibration))
            quant["kept_float"] = [k.removeprefix(inner) for k in quantized.kept_float if k != "normalize"]
            if "normalize" in quantized.kept_float:
                quant["input_normalization"] = "float"
    _set_metadata(mlmodel, cfg, io_spec)
    mlmodel.user_defined_metadata["edgevit.manifest"] = json.dumps(
        {"model": cfg.model, "target": "coreml", "precision": cfg.precision, "input_type": cfg.input_type,
         "preprocess": pre, "outputs": list(io_spec.output_names), "labels": labels})
    path = out_dir / "model.mlpackage"
    with quiet():
        mlmodel.save(str(path))
    make_package_reproducible(path)
    from edgevit.targets.coreml.simulator import CoreMLSimulator

    sim = CoreMLSimulator(path)
    counts = sim.op_counts()
    details = {
        "min_ios": cfg.min_ios, "compute_units": cfg.compute_units, "input_type": cfg.input_type,
        "normalization_in_model": cfg.input_type == "image", "classifier": bool(softmax),
        "op_counts": counts,
        "neural_engine_layout_ops": {k: counts[k] for k in LAYOUT_OPS if k in counts},
        "rank_changing_ops": sim.rank_changes(),
    }
    if quant:
        details["quantization"] = quant
    if dynamic is not None:
        details["enumerated_sizes"] = [list(sz) for sz in sizes]
    return ExportResult(artifact=path.name, details=details)
