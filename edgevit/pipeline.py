"""``edgevit convert``: checkpoint -> artifact folder (artifact + manifest + golden pair), parity-gated.

Flow: build the model and load weights -> prepare the export form -> export with the target's toolchain into a
staging folder -> run the artifact in its own runtime against PyTorch on the golden input (and ``images``) ->
write the manifest -> move the folder into place. A parity failure raises ``ParityError`` and keeps nothing unless
``keep_failed``; any failure or interrupt leaves no partial folder and an existing one untouched.
"""

from __future__ import annotations

import logging
import platform
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
    from edgevit.preprocess import Preprocess, golden_image, load_images
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
    labels = _read_labels(cfg.labels)

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
        image = golden_image(size)
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
                     dynamic_batch=cfg.dynamic_batch)

    with atomic_dir(out_dir, overwrite=cfg.overwrite) as staging:
        with steps(f"export {cfg.target}"):
            with torch.no_grad():
                result = target.export(export_model, torch.from_numpy(x_in), staging, io_spec, cfg)
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
            "preprocess": pre.to_manifest(),
            "outputs": [{"name": n, "shape": list(golden_ref[n].shape)} for n in art_names],
            "labels": labels,
            "num_classes": net.cfg.num_classes if not cfg.features else None,
            "source": {"model": cfg.model, "weights": _portable_source(cfg.weights), "random_init": cfg.random_init,
                       "seed": cfg.seed, "num_classes": cfg.num_classes, "features": cfg.features,
                       "reset_head": cfg.reset_head},
            "weights_sha256": weights_hash,
            "artifact_sha256": sha256_file(artifact),
            "artifact_bytes": path_bytes(artifact),
            "versions": _versions(target),
            "rewrite": rewrite_info,
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


def _read_labels(path: str | None) -> list[str] | None:
    if path is None:
        return None
    labels = [line.strip() for line in Path(path).read_text().splitlines() if line.strip()]
    if not labels:
        raise ConfigError(f"labels file {path} is empty; expected one class name a line")
    return labels


def _portable_source(weights: str | None) -> str | None:
    """A local weights path made absolute so ``verify`` finds it from any folder; hub ids stay as they are."""
    if weights and Path(weights).exists():
        return str(Path(weights).resolve())
    return weights


