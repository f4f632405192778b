"""CoreML target: ``.mlpackage`` ML program, the checkpoint's pixel normalisation inside the model, parity via
predict or the numpy simulator (``edgevit.targets.coreml_sim``) where CoreML cannot run."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import warnings
from pathlib import Path

import numpy as np

from edgevit._io import temp_dir
from edgevit.errors import ConfigError, ExportError
from edgevit.targets.base import ExportResult, Runner, RuntimeSpec, Target, register_target, run_batched
from edgevit.targets.coreml_sim import can_predict, runtime_name, simulator_runner
from edgevit.verify.tolerances import FP16, FP32, INT8, WEIGHT_ONLY

log = logging.getLogger(__name__)

MIN_IOS = (16, 17, 18)
COMPUTE_UNITS = ("all", "cpu_only", "cpu_and_gpu", "cpu_and_ne")
INPUT_TYPES = ("image", "tensor")
# ops that move activations between layouts or ranks; Apple's Neural Engine guidance is to avoid them
LAYOUT_OPS = ("transpose", "reshape", "squeeze", "expand_dims", "slice_by_index", "slice_by_size", "split")


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    stack.enter_context(contextlib.redirect_stderr(io.StringIO()))
    return stack


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
                                  f"{', '.join(odd)} is not (torch.export cannot prove the ceil-mode pools' shapes over "
                                  "other sizes): convert it alone with --img-size, or use --target onnx/ort")
            if cfg.precision == "int8":
                raise ConfigError("a multi-size CoreML model (--img-sizes) is built for fp16/fp32 and weight-only "
                                  "precisions here (int8 activations are calibrated at one size); convert int8 once "
                                  "per size with --img-size")

    def export(self, model, example, out_dir, io_spec, cfg, *, calibration=None, keep_float=()) -> ExportResult:
        import torch

        ct = self.require("coremltools")
        self.check_options(cfg)
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

            with _quiet():
                # in budget mode the input normalisation stays float too: it is not one of the ranked layers, and a
                # quantized one clips the raw pixels to the calibration set's range whatever else is kept
                keep = tuple(inner + k for k in keep_float) + (("normalize",) if keep_float and inner else ())
                quantized = quantize_xnnpack(net, example, calibration, keep)
            net = quantized.module
        try:
            with _quiet():
                exported = torch.export.export(net, (example,), dynamic_shapes=dynamic,
                                               strict=False).run_decompositions({})
                fresh_mil_names()
                mlmodel = ct.convert(exported, inputs=inputs, outputs=outputs, classifier_config=classifier,
                                     minimum_deployment_target=target, compute_precision=precision,
                                     compute_units=units[cfg.compute_units], convert_to="mlprogram")
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"CoreML conversion failed: {type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}") from e
        quant = None
        if cfg.precision in ("int8w", "pal8", "pal6", "pal4"):
            from edgevit.quantize.coreml_quant import compress_weights

            with _quiet():
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
        with _quiet():
            mlmodel.save(str(path))
        make_package_reproducible(path)
        from edgevit.targets.coreml_sim import CoreMLSimulator

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

    def load(self, artifact_path, spec: RuntimeSpec, *, threads=None) -> Runner:
        names = list(spec.output_names)
        if can_predict():  # pragma: no cover - macOS only
            import coremltools as ct
            from PIL import Image

            model = ct.models.MLModel(str(artifact_path))

            def predict(x):
                outs = []
                for sample in x:
                    feed = Image.fromarray(np.clip(sample.transpose(1, 2, 0), 0, 255).astype(np.uint8)) \
                        if spec.raw_pixels else sample[None]
                    res = model.predict({spec.input_name: feed})
                    outs.append([_as_array(res[n], spec.labels) for n in names])
                return [np.concatenate([o[i] for o in outs]) for i in range(len(names))]

            return lambda x: run_batched(predict, x, spec.batch)
        return simulator_runner(artifact_path, spec.input_name, names, spec.batch)

    def block_outputs(self, artifact_path, spec, units, x, *, threads=None, model=None, calibration=None):
        """The artifact's own intermediate values, read from the numpy simulator while it runs the program (CoreML's
        predict on macOS returns declared outputs only, so the simulator is used there too).

        An ML program keeps no module names, but coremltools names each value after the torch.export node it came
        from (``add_14``, plus ``_cast_fp16`` in an fp16 program); so the deployed model is exported once more,
        wrapped as the export wraps it, to learn which node leaves each unit. In an int8 program the unit's value
        is followed by quantize -> dequantize; the dequantized value (what the next unit reads) is compared."""
        if model is None:
            raise ConfigError("drift on an ML program needs the deployed PyTorch model it was converted from")
        import torch

        from edgevit.targets.coreml_sim import CoreMLSimulator

        sim = CoreMLSimulator(artifact_path)
        softmax = tuple(spec.output_names) == ("probabilities",)
        net = _converted_module(model, spec.raw_pixels, (0.0, 0.0, 0.0), (1.0, 1.0, 1.0), softmax)  # names only
        inner = "model." if net is not model else ""
        example = torch.zeros((spec.batch or 1, *x.shape[1:]), dtype=torch.float32)
        with _quiet():
            dynamic = _dynamic_dims([tuple(sz) for sz in spec.details.get("enumerated_sizes", [])])
            graph = torch.export.export(net, (example,), dynamic_shapes=dynamic,
                                        strict=False).run_decompositions({}).graph
        available = sim.value_names()
        found, notes, requantized = {}, [], 0
        for unit in units:
            node = _unit_output_node(graph, inner + unit)
            name = next((n for n in (node, f"{node}_cast_fp16") if n in available), None) if node else None
            if name is None:
                notes.append(f"{unit}: its output ({node or 'not one node'}) is not a value of the ML program "
                             "(fused away or renamed); not compared")
                continue
            readers = sim.consumers(name)
            if len(readers) == 1 and readers[0][0] == "quantize":
                dequantized = [n for t, n in sim.consumers(readers[0][1]) if t == "dequantize"]
                if dequantized:
                    name, requantized = dequantized[0], requantized + 1
            found[unit] = name
        if requantized:
            notes.append(f"{requantized} unit outputs are quantized in the program; their dequantized values (what "
                         "the next unit reads) are compared")
        final = spec.output_names[0]
        input_name = spec.input_name or sim.input_names[0]

        def fn(b: np.ndarray) -> list[np.ndarray]:
            outs = sim.run({input_name: b.astype(np.float32)}, extra=tuple(found.values()))
            last = np.asarray(outs[final], np.float32)
            return [last.reshape(b.shape[0], -1) if final == "probabilities" else last,
                    *(np.asarray(outs[n], np.float32) for n in found.values())]

        values = run_batched(fn, np.ascontiguousarray(x, np.float32), spec.batch)
        got = {unit: values[1 + i] for i, unit in enumerate(found)}
        got[final] = values[0]
        return got, "the artifact's intermediate values in the CoreML simulator (numpy), matched to units by " \
                    "the torch.export node names coremltools keeps", notes

    def versions(self):
        import coremltools

        return {"coremltools": coremltools.__version__}

    def runtime_requirements(self, cfg) -> dict:
        return {"runtime": "ios", "min_version": str(cfg.min_ios),
                "why": "the ML program's minimum_deployment_target (--min-ios)"}


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


def _as_array(value, labels) -> np.ndarray:  # pragma: no cover - macOS only
    if isinstance(value, dict):
        return np.asarray([[value[label] for label in labels]], dtype=np.float32)
    return np.asarray(value, dtype=np.float32)


def _converted_module(model, raw_pixels: bool, mean, std, softmax: bool):
    """What ``export`` hands to torch.export: the model behind the input normalisation (raw-pixel input) and/or a
    softmax (classifier)."""
    return ImageNormalize.wrap(model, mean, std, softmax) if raw_pixels else _maybe_softmax(model, softmax)


def _unit_output_node(graph, path: str) -> str | None:
    """The name of the one node of ``graph`` inside module ``path`` whose value is used outside it (the unit's
    output), from torch.export's ``nn_module_stack``; None when there is not exactly one."""

    def inside(node) -> bool:
        stack = node.meta.get("nn_module_stack") or {}
        return any(p == path or p.startswith(path + ".") for p, _ in stack.values())

    import torch

    members = {n for n in graph.nodes if inside(n)}
    # under symbolic height/width a unit also hands sizes (SymInts) to later reshapes: those are not its output
    leaving = [n for n in members if any(u not in members for u in n.users)
               and isinstance(n.meta.get("val"), torch.Tensor)]
    return leaving[0].name if len(leaving) == 1 else None


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
    """Author, license and description: what is known, nothing invented. License and author are the user's
    ``--license`` / ``--author`` (left unstated otherwise); the weights are named by file and hash; the parity
    check is named by the runtime that will run it here (the simulator on Linux, predict on macOS)."""
    prov = io_spec.provenance or {}
    mlmodel.version = prov.get("edgevit", "")
    mlmodel.author = prov.get("author") or "not stated (pass --author)"
    mlmodel.license = prov.get("license") or "not stated (pass --license; check your checkpoint's license)"
    mode = "features" if cfg.features else "classifier"
    mlmodel.short_description = (
        f"{cfg.model} ({mode}), {cfg.precision}, converted by edgevit {prov.get('edgevit', '')} from "
        f"{prov.get('weights', 'unknown weights')} (weights sha256 {str(prov.get('weights_sha256', ''))[:12]}); "
        f"parity against PyTorch gated with the {runtime_name()}, result in the artifact folder's manifest")
    for key in ("weights", "weights_sha256"):
        if prov.get(key):
            mlmodel.user_defined_metadata[f"edgevit.{key}"] = str(prov[key])
