"""``edgevit convert``: checkpoint -> artifact folder (artifact + manifest + golden pair), parity-gated.

Flow: build the model and load weights -> prepare the export form -> export with the target's toolchain into a
staging folder -> run the artifact in its own runtime against PyTorch on the golden input (and ``images``) ->
write the manifest -> move the folder into place. A parity failure raises ``ParityError`` and keeps nothing unless
``keep_failed``; any failure or interrupt leaves no partial folder and an existing one untouched.
"""

from __future__ import annotations

import logging
import platform
import shutil
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import numpy as np

from edgevit._io import atomic_dir, check_writable, path_bytes, sha256_file
from edgevit.config import ConvertConfig
from edgevit.errors import ConfigError, ParityError
from edgevit.models.factory import build_model, output_names
from edgevit.quantize.accuracy import accuracy_report, format_accuracy, within_budget
from edgevit.verify.metrics import is_classifier

log = logging.getLogger(__name__)

StepCallback = Callable[[str, str, float], None]  # (step, "start" | "done", seconds so far)


@dataclass
class ConvertResult:
    out_dir: Path
    manifest: dict
    parity_passed: bool
    seconds: float


class _Steps:
    def __init__(self, callback: StepCallback | None):
        self.callback = callback
        self.t0 = time.perf_counter()
        self.timings: dict[str, float] = {}

    @contextmanager
    def __call__(self, name: str):
        start = time.perf_counter()
        if self.callback:
            self.callback(name, "start", start - self.t0)
        log.info("%s ...", name)
        yield
        self.timings[name] = round(time.perf_counter() - start, 3)
        if self.callback:
            self.callback(name, "done", self.timings[name])


def _versions(target) -> dict[str, str]:
    import torch

    import edgevit

    return {"edgevit": edgevit.__version__, "python": platform.python_version(), "torch": torch.__version__,
            **target.versions()}


def convert(cfg: ConvertConfig, *, on_step: StepCallback | None = None) -> ConvertResult:
    """Convert per ``cfg`` and return the verified artifact folder.

    Example::

        cfg = ConvertConfig(model="nextvit_small", random_init=True, target="onnx", out="out/onnx")
        result = convert(cfg)
        print(result.manifest["parity"]["sets"]["golden"][0]["max_abs"])
    """
    import torch

    from edgevit.info import parse_img_size
    from edgevit.manifest import FORMAT_VERSION, state_dict_sha256, write_golden, write_manifest
    from edgevit.models import get_config
    from edgevit.preprocess import Preprocess, load_images
    from edgevit.targets import IOSpec, get_target
    from edgevit.verify.parity import ParityReport, measure, reference_for_artifact
    from edgevit.verify.tolerances import tolerance_for

    steps = _Steps(on_step)
    target = get_target(cfg.target)
    if cfg.precision is None:
        cfg = cfg.replace(precision=target.default_precision)
    target.check(cfg.precision, cfg.delegate)
    if hasattr(target, "check_options"):
        target.check_options(cfg)
    tol_key = target.tolerance_key(cfg)
    tolerance = tolerance_for(tol_key, cfg.precision)
    out_dir = Path(cfg.out)
    check_writable(out_dir, cfg.overwrite, "output folder")  # fail before the slow steps
    size = parse_img_size(cfg.img_size if cfg.img_size is not None else get_config(cfg.model).default_img_size)
    labels = read_labels(cfg.labels)
    if labels is None and not cfg.features and cfg.num_classes is None and cfg.weights is None \
            and not cfg.random_init:
        from edgevit.models.factory import embedded_labels

        if embedded_labels(cfg.model):  # the shipped model's class names
            cfg = cfg.replace(labels=embedded_labels(cfg.model))
            labels = read_labels(cfg.labels)

    with steps("load model"):
        net = build_model(model=cfg.model, weights=cfg.weights, random_init=cfg.random_init, seed=cfg.seed,
                          num_classes=cfg.num_classes, features=cfg.features, reset_head=cfg.reset_head)
        names = output_names(net)
        if labels is not None and (names != ("logits",) or len(labels) != net.cfg.num_classes):
            raise ConfigError(f"labels file {cfg.labels} has {len(labels)} names but the model has "
                              f"{net.cfg.num_classes} classes{' (features mode)' if cfg.features else ''}")
        weights_hash = state_dict_sha256(net)
        pre = Preprocess.for_size(size)
        raw_input = target.takes_raw_pixels(cfg)
        art_names = target.output_names(cfg, names, labels)
        # saved at the resize size, so an app's preprocessing of it is crop + normalise, exactly reproducible
        image = pre.resized(_golden_picture(cfg.model, size))
        raw1 = pre.raw(image)[None]
        x = np.repeat(pre.normalize(raw1), cfg.batch, axis=0)  # what the PyTorch model sees
        x_in = np.repeat(raw1, cfg.batch, axis=0) if raw_input else x  # what the artifact takes
        golden_ref = reference_for_artifact(net, x, names, art_names)
        real = None
        if cfg.images:
            real_raw, used = load_images(cfg.images, pre, raw=True)
            log.info("parity images: %d from %s", len(used), cfg.images)
            real_ref = reference_for_artifact(net, pre.normalize(real_raw), names, art_names)
            real = real_raw if raw_input else pre.normalize(real_raw)

    with steps("deploy rewrites" if cfg.rewrite else "keep original form"):
        if cfg.rewrite:
            from edgevit.rewrites import deploy

            deployed = deploy(net, "coreml" if cfg.delegate == "coreml" else cfg.target, img_size=size)
            export_model, rewrite_info = deployed.model, deployed.to_manifest()
        else:
            export_model, rewrite_info = net, {"form": "original", "reason": "rewrites disabled (--no-rewrite)",
                                               "passes": []}
        from edgevit.rewrites import aten_op_counts

        example = torch.from_numpy(x)  # normalized, as the model itself takes it
        rewrite_info["op_counts"] = {"original": aten_op_counts(net, example)}
        if export_model is not net:
            rewrite_info["op_counts"]["deployed"] = aten_op_counts(export_model, example)
    io_spec = IOSpec(input_name="image", input_shape=tuple(x.shape), output_names=art_names,
                     dynamic_batch=cfg.dynamic_batch, preprocess=pre.to_manifest(),
                     labels=tuple(labels) if labels else None)

    calib_set, eval_set = _quantization_data(cfg, target, pre, labels, steps)
    calib_in = None if calib_set is None else (calib_set.raw if raw_input else calib_set.normalized)
    budget = cfg.max_accuracy_drop is not None or cfg.min_agreement is not None
    ranking: list[dict] = []
    candidates: list[tuple[str, ...]] = [()]
    if budget:
        if calib_set is None:
            raise ConfigError(f"an accuracy budget needs a quantized precision with calibration; {cfg.target}/"
                              f"{cfg.precision} has nothing to keep in float")
        with steps("rank layers by quantization sensitivity"):
            from edgevit.quantize.sensitivity import rank_layers

            ranking = rank_layers(export_model, calib_set.normalized, eval_set.normalized)
        layers = [r["layer"] for r in ranking]
        k = 1
        while k < len(layers):
            candidates.append(tuple(layers[:k]))
            k *= 2
        candidates.append(tuple(layers))

    with atomic_dir(out_dir, overwrite=cfg.overwrite) as staging:
        accuracy = None
        for attempt, keep in enumerate(candidates):
            for leftover in staging.iterdir():  # a previous attempt's files
                shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
            label = f"export {cfg.target} {cfg.precision}" + (f" ({len(keep)} layers kept in float)" if keep else "")
            with steps(label):
                with torch.no_grad():
                    result = target.export(export_model, torch.from_numpy(x_in), staging, io_spec, cfg,
                                           calibration=calib_in, keep_float=keep)
            if eval_set is None:
                break
            with steps("measure accuracy"):
                accuracy = _measure_accuracy(target, staging / result.artifact, cfg, net, names, art_names,
                                             eval_set, raw_input, x_in.shape[0] if not cfg.dynamic_batch else None)
                accuracy["kept_float"] = list(keep)
            if not budget or within_budget(accuracy, max_accuracy_drop=cfg.max_accuracy_drop,
                                           min_agreement=cfg.min_agreement):
                break
            log.info("budget not met with %d layers in float: %s", len(keep), format_accuracy(accuracy))
        else:
            raise ParityError(f"the accuracy budget (max drop {cfg.max_accuracy_drop}, min agreement "
                              f"{cfg.min_agreement}) is not met even with all {len(candidates[-1])} quantizable "
                              f"layers in float:\n{format_accuracy(accuracy)}")
        if accuracy is not None and ranking:
            accuracy["budget"] = {"max_accuracy_drop": cfg.max_accuracy_drop, "min_agreement": cfg.min_agreement,
                                  "attempts": attempt + 1}
            accuracy["sensitivity"] = ranking[:10]
        artifact = staging / result.artifact
        golden = write_golden(staging, image, x_in, golden_ref)
        manifest = {
            "format_version": FORMAT_VERSION,
            "model": cfg.model,
            "target": cfg.target,
            "precision": cfg.precision,
            "artifact": result.artifact,
            "files": sorted([result.artifact, *result.extra_files]),
            "input": {"name": io_spec.input_name, "shape": ["batch", *x.shape[1:]] if cfg.dynamic_batch
                      else list(x.shape), "dtype": "float32", "layout": "NCHW",
                      "pixels": "raw_rgb_0_255" if raw_input else "normalized",
                      "type": "image" if raw_input else "tensor"},
            "preprocess": io_spec.preprocess,
            "outputs": [{"name": n, "shape": list(golden_ref[n].shape)} for n in art_names],
            "labels": labels,
            "num_classes": net.cfg.num_classes if not cfg.features else None,
            "source": {"model": cfg.model, "weights": portable_source(cfg.weights), "random_init": cfg.random_init,
                       "seed": cfg.seed, "num_classes": cfg.num_classes, "features": cfg.features,
                       "reset_head": cfg.reset_head},
            "weights_sha256": weights_hash,
            "artifact_sha256": sha256_file(artifact),
            "artifact_bytes": path_bytes(artifact),
            "versions": _versions(target),
            "rewrite": rewrite_info,
            "accuracy": accuracy,
            target.name: result.details,
            "golden": golden,
        }

        with steps(f"verify in {target.runtime}"):
            runner = target.load(artifact, manifest)
            report = ParityReport(target=tol_key, precision=cfg.precision, runtime=target.runtime_for(cfg.delegate),
                                  tolerance=tolerance)
            classification = is_classifier(art_names)
            measure(report, "golden", runner, x_in, golden_ref, classification=classification)
            if real is not None:
                measure(report, "images", runner, real, real_ref, classification=classification)
        manifest["parity"] = report.to_dict()
        manifest["timings_s"] = steps.timings
        write_manifest(staging, manifest)
        if not report.passed and not cfg.keep_failed:
            raise ParityError(f"{report.table()}\nno artifact was kept; pass --keep-failed to keep it for "
                              "inspection")
        if not report.passed:
            log.warning("parity failed; keeping the artifact because keep_failed was set")
    return ConvertResult(out_dir=out_dir, manifest=manifest, parity_passed=report.passed,
                         seconds=round(time.perf_counter() - steps.t0, 2))


def _golden_picture(model: str, size):
    """The golden input: the first held-out image of a model's shipped data set, else a synthetic picture."""
    from PIL import Image

    from edgevit.models.factory import embedded_data
    from edgevit.preprocess import golden_image, list_images

    folder = embedded_data(model, "eval")
    if folder is not None:
        with Image.open(list_images(folder)[0]) as img:
            return img.convert("RGB")
    return golden_image(size)


def _quantization_data(cfg, target, pre, labels, steps):
    """Calibration images (for precisions that need them) and evaluation images (for every reduced precision)."""
    from edgevit.models.factory import embedded_data
    from edgevit.quantize.calibration import calibration_set, evaluation_set

    needs_calib = cfg.precision in target.needs_calibration
    reduced = cfg.precision != "fp32"
    if not (needs_calib or reduced):
        return None, None
    calib_dir = cfg.calib_dir or embedded_data(cfg.model, "calib")
    if needs_calib and calib_dir is None:
        raise ConfigError(f"{cfg.target} {cfg.precision} is calibrated on real images: pass --calib-dir DIR (jpg, "
                          "png, webp or bmp; a few hundred images of the deployment domain)")
    calib = eval_set = None
    with steps("load calibration/evaluation images"):
        if calib_dir is not None:
            calib = calibration_set(calib_dir, pre, cfg.calib_count, seed=cfg.seed)
            log.info("calibration: %d images from %s (%d unreadable skipped)", len(calib.files), calib_dir,
                     calib.skipped)
        eval_dir = cfg.eval_dir or embedded_data(cfg.model, "eval")
        if eval_dir is not None:
            eval_set = evaluation_set(eval_dir, pre, labels, cfg.eval_count)
            eval_set.source = "evaluation"
        elif calib is not None:
            eval_set = calib
            eval_set.source = "calibration"
    return calib, eval_set


def _measure_accuracy(target, artifact, cfg, net, names, art_names, eval_set, raw_input, batch) -> dict:
    from edgevit.verify.parity import reference_for_artifact

    runner = target.load(artifact, {"input": {"name": "image", "shape": [batch or "batch"]}, "outputs":
                                    [{"name": n} for n in art_names], "labels": None,
                                    target.name: {"delegate": cfg.delegate}}, threads=None)
    ref = reference_for_artifact(net, eval_set.normalized, names, art_names)
    out = runner(eval_set.raw if raw_input else eval_set.normalized)
    flat_ref = np.concatenate([r.reshape(len(r), -1) for r in ref.values()], 1) if len(ref) > 1 else \
        next(iter(ref.values()))
    flat_out = np.concatenate([o.reshape(len(o), -1) for o in out], 1) if len(out) > 1 else out[0]
    return accuracy_report(flat_ref, flat_out, eval_set.labels, source=eval_set.source)


def read_labels(path: str | None) -> list[str] | None:
    if path is None:
        return None
    labels = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not labels:
        raise ConfigError(f"labels file {path} is empty; expected one class name a line")
    return labels


def portable_source(weights: str | None) -> str | None:
    """A local weights path made absolute so ``verify`` finds it from any folder; hub ids stay as they are."""
    if weights and Path(weights).exists():
        return str(Path(weights).resolve())
    return weights


