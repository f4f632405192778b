"""``edgevit convert``: checkpoint -> artifact folder (artifact + manifest + golden pair), parity-gated.

``convert`` is a short list of named steps, each a function below that can be tested alone:

1. ``plan``: resolve every option (target, precision, tolerance row, preprocessing and its sources, labels) and
   check the output path, before any model is built;
2. ``load_source``: the PyTorch model, its output names and weights hash;
3. ``golden_data``: N different golden pictures for ``--batch N``, their reference outputs, and the app's
   resize-check picture; ``parity_images``: ``--images``;
4. ``rewrite``: the deploy rewrites (parity-checked per pass) and aten op counts;
5. ``quantization_data`` and ``budget_candidates``: calibration/evaluation images, the budget's first attempt;
6. ``export_within_budget``: export into the staging folder (again with more layers in float while a budget fails);
7. ``build_manifest``, ``verify_artifact``: run the artifact in its own runtime against PyTorch, record everything;
   the staging folder is moved into place only when parity passed (or ``keep_failed``).

A parity failure raises ``ParityError`` and keeps nothing unless ``keep_failed``; any failure or interrupt leaves
no partial folder and an existing one untouched.
"""

from __future__ import annotations

import logging
import platform
import shutil
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

from edgevit._io import (atomic_dir, check_writable, clean_stale_staging, is_artifact_folder, path_bytes,
                         sha256_file)
from edgevit._progress import StepCallback, Steps
from edgevit.config import ConvertConfig
from edgevit.errors import ConfigError, ParityError
from edgevit.models.factory import build_model, embedded_data, embedded_labels, embedded_weights, output_names
from edgevit.quantize.accuracy import accuracy_report, format_accuracy, gate, within_budget
from edgevit.verify.metrics import is_classifier

log = logging.getLogger(__name__)



@dataclass
class ConvertResult:
    out_dir: Path
    manifest: dict
    parity_passed: bool
    seconds: float


@dataclass(frozen=True)
class Plan:
    """Every resolved option of one conversion; made before any model is built."""

    cfg: ConvertConfig
    target: object  # edgevit.targets.Target
    tol_key: str
    tolerance: object  # edgevit.verify.tolerances.Tolerance
    out_dir: Path
    pre: object  # edgevit.preprocess.Preprocess
    pre_sources: dict
    labels: list[str] | None
    raw_input: bool
    sizes: tuple = ()  # every size of a multi-size artifact (--img-sizes), the primary first; () for one size

    @property
    def size(self) -> tuple[int, int]:
        return self.pre.size


def convert(cfg: ConvertConfig, *, on_step: StepCallback | None = None) -> ConvertResult:
    """Convert per ``cfg`` and return the verified artifact folder.

    Example::

        cfg = ConvertConfig(model="nextvit_small", random_init=True, target="onnx", out="out/onnx")
        result = convert(cfg)
        print(result.manifest["parity"]["sets"]["golden"][0]["max_abs"])
    """
    steps = Steps(on_step, log)
    p = plan(cfg)
    with steps("load model"):
        net, names, weights_hash = load_source(p.cfg)
        art_names = p.target.output_names(p.cfg, names, p.labels)
        golden = golden_data(p, net, names, art_names)
        real = parity_images(p, net, names, art_names)
    with steps("deploy rewrites" if p.cfg.rewrite else "keep original form"):
        export_model, rewrite_info = rewrite(p, net, golden.x)
    io_spec = _io_spec(p, golden, art_names, weights_hash)
    calib_set, eval_set = quantization_data(p, steps)
    ranking, candidates = budget_candidates(p, export_model, calib_set, eval_set, steps)
    with atomic_dir(p.out_dir, overwrite=p.cfg.overwrite) as staging:
        result, accuracy = export_within_budget(p, export_model, golden.x_in, io_spec, calib_set, eval_set,
                                                candidates, ranking, staging, steps, net, names)
        if export_model is not net and p.target.form_report_step:  # the target's own comparison of the forms
            import torch

            with steps(p.target.form_report_step):
                rewrite_info.update(p.target.form_report(net, export_model, torch.from_numpy(golden.x), p.cfg,
                                                         result.details))
        manifest = build_manifest(p, staging, result, io_spec, golden, names, net, weights_hash, rewrite_info,
                                  accuracy)
        if calib_set is not None and p.cfg.precision in p.target.needs_calibration:
            manifest["calibration"] = calibration_record(p, calib_set)
        with steps(f"verify in {p.target.runtime_for(p.cfg.delegate)}"):
            report = verify_artifact(p, staging / result.artifact, _runtime_spec(p, io_spec, result), golden, real)
        if accuracy is not None:  # reduced precision: the row's cosine and agreement over the evaluation images too
            report.failures += gate(accuracy, p.tolerance)
        manifest["parity"] = report.to_dict()
        manifest["timings_s"] = steps.timings
        from edgevit.manifest import seal, write_manifest

        seal(staging, manifest)
        write_manifest(staging, manifest)
        if not report.passed and not p.cfg.keep_failed:
            raise ParityError(f"{report.table()}\nno artifact was kept; pass --keep-failed to keep it for "
                              "inspection")
        if not report.passed:
            log.warning("parity failed; keeping the artifact because keep_failed was set")
    if p.cfg.build and report.passed:
        from edgevit.verify.engine import build_engine

        with steps("build the TensorRT engine"):
            manifest[p.target.name]["engine"], _ = build_engine(p.out_dir, images=p.cfg.images, weights=p.cfg.weights)
    return ConvertResult(out_dir=p.out_dir, manifest=manifest, parity_passed=report.passed,
                         seconds=round(time.perf_counter() - steps.t0, 2))


# ---------------------------------------------------------------------------------------------------------------
# 1. plan


def plan(cfg: ConvertConfig) -> Plan:
    """Resolve and check every option; nothing slow happens here."""
    from edgevit.config import parse_img_size
    from edgevit.models import get_config
    from edgevit.models.attention import check_attention
    from edgevit.models.pretrained import resolve_preprocess
    from edgevit.preprocess import Preprocess
    from edgevit.targets import get_target
    from edgevit.targets.base import check_target_options
    from edgevit.verify.tolerances import tolerance_for

    check_attention(cfg.attention)
    target = get_target(cfg.target)
    if cfg.precision is None:
        cfg = cfg.replace(precision=target.default_precision)
    target.check(cfg.precision, cfg.delegate)
    if target.always_dynamic_batch and not cfg.dynamic_batch:
        cfg = cfg.replace(dynamic_batch=True)  # e.g. TensorRT: the engine's optimization profile spans batches
    check_target_options(cfg, target)  # an option this target does not take is refused, never ignored
    target.check_toolchain()  # exit 5 now, as the real run would, not after the model is built
    target.check_options(cfg)
    sizes = cfg.sizes
    if len(sizes) > 1 and target.multi_size is None:
        able = ", ".join(sorted(n for n, t in _targets_by_name().items() if t.multi_size))
        raise ConfigError(f"--img-sizes with several sizes: {target.name} artifacts have one input size here; convert "
                          f"once per size with --img-size ({able} serve several sizes from one artifact)")
    tol_key = target.tolerance_key(cfg)
    tolerance = tolerance_for(tol_key, cfg.precision)
    out_dir = Path(cfg.out)
    clean_stale_staging(out_dir)  # what a killed run left, whether or not this run gets past its checks
    check_writable(out_dir, cfg.overwrite, "output folder", replaceable=is_artifact_folder)  # before slow steps
    model_cfg = get_config(cfg.model)
    lookup = cfg.weights or (None if cfg.random_init else embedded_weights(cfg.model))
    values, sources = resolve_preprocess(
        model_default_size=model_cfg.default_img_size, weights=lookup,
        overrides={"img_size": parse_img_size(cfg.img_size) if cfg.img_size is not None else
                   (sizes[0] if sizes else None),
                   "mean": cfg.mean, "std": cfg.std, "crop_pct": cfg.crop_pct, "interpolation": cfg.interpolation})
    pre = Preprocess(size=parse_img_size(values["img_size"]), mean=tuple(values["mean"]), std=tuple(values["std"]),
                     crop_pct=values["crop_pct"], interpolation=values["interpolation"], geometry=values["geometry"])
    if cfg.labels is None and not cfg.features and cfg.num_classes is None and cfg.weights is None \
            and not cfg.random_init and cfg.module is None and embedded_labels(cfg.model):
        cfg = cfg.replace(labels=embedded_labels(cfg.model))  # the shipped model's class names
    labels = read_labels(cfg.labels)
    num_classes = cfg.num_classes if cfg.num_classes is not None else model_cfg.num_classes
    if labels is not None and (cfg.features or len(labels) != num_classes):
        raise ConfigError(f"labels file {cfg.labels} has {len(labels)} names but the model has "
                          f"{num_classes} classes{' (features mode)' if cfg.features else ''}")
    from edgevit.preprocess import check_headers

    for folder in (cfg.images, cfg.calib_dir, cfg.eval_dir):
        if folder is not None:
            check_headers(folder)
    if cfg.eval_dir is not None:  # labels outside the model's classes, or none where a budget needs them
        from edgevit.quantize.calibration import folder_labels

        folder_labels(cfg.eval_dir, labels, num_classes, quiet=True,
                      required_for="--max-accuracy-drop" if cfg.max_accuracy_drop is not None else None)
    return Plan(cfg=cfg, target=target, tol_key=tol_key, tolerance=tolerance, out_dir=out_dir, pre=pre,
                pre_sources=sources, labels=labels, raw_input=target.takes_raw_pixels(cfg),
                sizes=sizes if len(sizes) > 1 else ())


def _targets_by_name() -> dict:
    from edgevit.targets import get_target, list_targets

    return {n: get_target(n) for n in list_targets()}


# ---------------------------------------------------------------------------------------------------------------
# 2-3. model, golden data, parity images


def load_source(cfg: ConvertConfig):
    """(eval-mode model, its output names, weights hash)."""
    from edgevit.manifest import state_dict_sha256

    if cfg.module is not None:  # a whole model (detector, segmenter) with a Next-ViT inside
        from edgevit.config import parse_img_size
        from edgevit.models import get_config
        from edgevit.models.user_module import build_user_model

        default = get_config(cfg.model).default_img_size
        size = parse_img_size(cfg.img_size) if cfg.img_size is not None else (default, default)
        net, names = build_user_model(cfg.module, model=cfg.model, weights=cfg.weights, random_init=cfg.random_init,
                                      seed=cfg.seed, img_size=size)
        return net, names, state_dict_sha256(net)
    net = build_model(model=cfg.model, weights=cfg.weights, random_init=cfg.random_init, seed=cfg.seed,
                      num_classes=cfg.num_classes, features=cfg.features, reset_head=cfg.reset_head,
                      attention=cfg.attention)
    return net, output_names(net), state_dict_sha256(net)


@dataclass
class Golden:
    pictures: list  # PIL pictures at the resize size, one per batch entry (apps reproduce them exactly)
    x: np.ndarray  # normalized, what the PyTorch model takes
    x_in: np.ndarray  # what the artifact takes (raw pixels for image-input artifacts)
    ref: dict[str, np.ndarray]  # PyTorch outputs under the artifact's output names
    resize_source: object  # PIL picture that needs resizing (apps check their resize against it)
    resize_input: np.ndarray  # its preprocessed input as the artifact takes it, (1, 3, H, W)
    # the other sizes of a multi-size artifact: {"size", "pictures", "x_in", "ref"} each
    extra: list = field(default_factory=list)
    top2_margins: list | None = None  # a classifier's reference top-2 margin per picture, relative (choose_golden)


def golden_pictures(model: str, pre, n: int | list[int]) -> list:
    """Golden pictures at the resize size (``n``: how many, or which): the shipped held-out images of a model that
    has them, else deterministic synthetic pictures (one seed each)."""
    from edgevit.preprocess import golden_image, list_images, open_image

    indices = list(range(n)) if isinstance(n, int) else list(n)
    folder = embedded_data(model, "eval")
    if folder is not None:
        files = list_images(folder)
        return [pre.resized(open_image(files[i % len(files)])) for i in indices]
    return [pre.resized(golden_image(pre.size, seed=i)) for i in indices]


# A classifier's golden pictures are chosen, among the first batch + GOLDEN_CANDIDATES, for a clear reference
# margin between the top two classes: at least 2 * CLEAR_REL of the largest score, what the fp16 row's error bound
# can close (``Tolerance.tie_rel``), so that a correct fp16 artifact does not flip them. Where too few are clear the
# widest margins are taken, and the near-tie rule of the tolerance table still tells a near-tie from a real flip.
GOLDEN_CANDIDATES = 8
CLEAR_REL = 2e-2


def top2_margins(scores: np.ndarray) -> np.ndarray:
    """(top-1 score - top-2 score) / max |score| per sample."""
    top = np.sort(scores, axis=1)
    return (top[:, -1] - top[:, -2]) / np.maximum(np.abs(scores).max(axis=1), 1e-12)


def choose_golden(p: Plan, net, names, art_names) -> tuple[list[int], list, list[float] | None]:
    """(which golden pictures to use, those pictures, their reference top-2 margins), per ``CLEAR_REL``."""
    from edgevit.verify.parity import reference_for_artifact

    n = p.cfg.batch
    if not is_classifier(art_names):
        return list(range(n)), golden_pictures(p.cfg.model, p.pre, n), None
    candidates = list(range(n + GOLDEN_CANDIDATES))
    pictures = golden_pictures(p.cfg.model, p.pre, candidates)
    raw = np.stack([p.pre.raw(img) for img in pictures])
    scores = next(iter(reference_for_artifact(net, p.pre.normalize(raw), names, names).values()))
    margins = top2_margins(scores.reshape(len(scores), -1).astype(np.float64))
    clear = [i for i in candidates if margins[i] >= 2 * CLEAR_REL]
    rest = sorted((i for i in candidates if i not in clear), key=lambda i: -margins[i])
    chosen = sorted((clear + rest)[:n]) if len(clear) < n else clear[:n]
    return chosen, [pictures[i] for i in chosen], [round(float(margins[i]), 6) for i in chosen]


def resize_check_picture(pre):
    """A non-square picture larger than the resize extent, so an app's resize (downscaling, antialiased) runs."""
    from edgevit.preprocess import golden_image

    h, w = pre.resize_shorter_to()
    return golden_image((round(h * 2.3) + 3, round(w * 1.7) + 5), seed=11)


def golden_data(p: Plan, net, names, art_names) -> Golden:
    from edgevit.verify.parity import reference_for_artifact

    chosen, pictures, margins = choose_golden(p, net, names, art_names)
    raw = np.stack([p.pre.raw(img) for img in pictures])  # the pictures are already at the resize size
    x = p.pre.normalize(raw)
    source = resize_check_picture(p.pre)
    resize_raw = p.pre.raw(source)[None]
    extra = []
    for size in p.sizes[1:]:  # the same pictures, preprocessed for each other size
        pre = replace(p.pre, size=size)
        pics = golden_pictures(p.cfg.model, pre, chosen)
        raw_s = np.stack([pre.raw(img) for img in pics])
        x_s = pre.normalize(raw_s)
        extra.append({"size": size, "pictures": pics, "x_in": raw_s if p.raw_input else x_s,
                      "ref": reference_for_artifact(net, x_s, names, art_names)})
    return Golden(pictures=pictures, x=x, x_in=raw if p.raw_input else x,
                  ref=reference_for_artifact(net, x, names, art_names), resize_source=source,
                  resize_input=resize_raw if p.raw_input else p.pre.normalize(resize_raw), extra=extra,
                  top2_margins=margins)


def parity_images(p: Plan, net, names, art_names):
    """(inputs as the artifact takes them, reference outputs) for ``--images``, or None."""
    if not p.cfg.images:
        return None
    from edgevit.preprocess import load_images
    from edgevit.verify.parity import reference_for_artifact

    raw, used = load_images(p.cfg.images, p.pre, raw=True)
    log.info("parity images: %d from %s", len(used), p.cfg.images)
    ref = reference_for_artifact(net, p.pre.normalize(raw), names, art_names)
    return (raw if p.raw_input else p.pre.normalize(raw)), ref


# ---------------------------------------------------------------------------------------------------------------
# 4. rewrite


def rewrite(p: Plan, net, x: np.ndarray):
    """(model to export, the manifest's rewrite section with aten op counts before/after)."""
    import torch

    from edgevit.rewrites import aten_op_counts, deploy

    if p.cfg.rewrite:
        deployed = deploy(net, p.target.form_for(p.cfg.delegate), img_size=p.size)
        export_model, info = deployed.model, deployed.to_manifest()
    else:
        export_model, info = net, {"form": "original", "reason": "rewrites disabled (--no-rewrite)", "passes": []}
    example = torch.from_numpy(x)  # normalized, as the model itself takes it
    info["op_counts"] = {"original": aten_op_counts(net, example)}
    if export_model is not net:
        info["op_counts"]["deployed"] = aten_op_counts(export_model, example)
    return export_model, info


def _io_spec(p: Plan, golden: Golden, art_names, weights_hash: str):
    from edgevit.targets import IOSpec

    return IOSpec(input_name="image", input_shape=tuple(golden.x.shape), output_names=art_names,
                  dynamic_batch=p.cfg.dynamic_batch, dynamic_hw=bool(p.sizes), preprocess=_preprocess_manifest(p),
                  labels=tuple(p.labels) if p.labels else None, provenance=provenance(p.cfg, weights_hash))


def _preprocess_manifest(p: Plan) -> dict:
    return dict(p.pre.to_manifest(), sources=dict(p.pre_sources))


def provenance(cfg: ConvertConfig, weights_hash: str) -> dict:
    """What is known about the weights, and only that: file name and hash, or the random init; license/author
    only when the user stated them."""
    if cfg.random_init:
        weights = f"deterministic random init (seed {cfg.seed})"
    elif cfg.weights:
        weights = Path(cfg.weights).name if Path(cfg.weights).exists() else cfg.weights
    else:
        weights = f"{Path(embedded_weights(cfg.model)).name} (shipped with edgevit)"
    import edgevit

    return {"weights": weights, "weights_sha256": weights_hash, "license": cfg.license, "author": cfg.author,
            "edgevit": edgevit.__version__}


# ---------------------------------------------------------------------------------------------------------------
# 5. quantization data and the budget


def quantization_data(p: Plan, steps):
    """Calibration images (for precisions that need them) and evaluation images (for every reduced precision)."""
    from edgevit.quantize.calibration import calibration_set, evaluation_set

    cfg = p.cfg
    needs_calib = cfg.precision in p.target.needs_calibration
    if not (needs_calib or cfg.precision != "fp32"):
        return None, None
    calib_dir = cfg.calib_dir or embedded_data(cfg.model, "calib")
    if needs_calib and calib_dir is None:
        raise ConfigError(f"{cfg.target} {cfg.precision} is calibrated on real images: pass --calib-dir DIR (jpg, "
                          "png, webp or bmp; a few hundred images of the deployment domain)")
    calib = eval_set = None
    with steps("load calibration/evaluation images"):
        if calib_dir is not None:
            calib = calibration_set(calib_dir, p.pre, cfg.calib_count, seed=cfg.seed)
            log.info("calibration: %d images from %s (%d unreadable skipped)", len(calib.files), calib_dir,
                     calib.skipped)
        eval_dir = cfg.eval_dir or embedded_data(cfg.model, "eval")
        if eval_dir is not None:
            eval_set = evaluation_set(eval_dir, p.pre, p.labels, cfg.eval_count)
            eval_set.source = "evaluation"
        elif calib is not None:
            eval_set = calib
            eval_set.source = "calibration"
    if cfg.max_accuracy_drop is not None and (eval_set is None or eval_set.labels is None):
        raise ConfigError("--max-accuracy-drop needs labeled evaluation images (DIR/<class>/*.png); use "
                          "--min-agreement to budget on agreement with fp32 instead")
    return calib, eval_set


def budget_candidates(p: Plan, export_model, calib_set, eval_set, steps):
    """(ranking, the sets of modules to keep in float, tried in order). Every export first tries nothing in float;
    the ranking is made only once that misses the budget (``export_within_budget``), so nothing is ranked here."""
    cfg = p.cfg
    if (cfg.max_accuracy_drop is not None or cfg.min_agreement is not None) and calib_set is None:
        raise ConfigError(f"an accuracy budget needs a quantized precision with calibration; {cfg.target}/"
                          f"{cfg.precision} has nothing to keep in float")
    return [], [()]


def pytorch_layer_ranking(export_model, calib_set, eval_set, steps) -> list[dict]:
    """Every conv/linear layer by its sensitivity, each alone fake-quantized in PyTorch (for runtimes without a drift
    mechanism)."""
    with steps("rank layers by quantization sensitivity"):
        from edgevit.quantize.sensitivity import rank_layers

        return rank_layers(export_model, calib_set.normalized, eval_set.normalized)


# ---------------------------------------------------------------------------------------------------------------
# 6. export


def _runtime_spec(p: Plan, io_spec, result):
    from edgevit.targets import RuntimeSpec

    return RuntimeSpec.from_export(io_spec, result, raw_pixels=p.raw_input, layout=p.cfg.layout.upper())


def export_within_budget(p: Plan, export_model, x_in, io_spec, calib_set, eval_set, candidates, ranking, staging,
                         steps, net, names):
    """Export into ``staging``; with a budget, again with more layers in float until it holds.

    Returns (ExportResult, accuracy report or None). The accuracy report's ``kept_float`` lists the layers the
    toolchain really kept in float (read back from the export), not the ones asked for.
    """
    import torch

    from edgevit.verify.parity import reference_for_artifact

    cfg = p.cfg
    calib_in = None if calib_set is None else (calib_set.raw if p.raw_input else calib_set.normalized)
    budget = cfg.max_accuracy_drop is not None or cfg.min_agreement is not None
    accuracy = None
    # PyTorch's outputs on the evaluation images do not change between budget attempts
    eval_ref = None if eval_set is None else reference_for_artifact(net, eval_set.normalized, names,
                                                                    io_spec.output_names)
    ranked_by = None
    attempt = -1
    while attempt + 1 < len(candidates):
        attempt += 1
        keep = candidates[attempt]
        for leftover in staging.iterdir():  # a previous attempt's files
            shutil.rmtree(leftover) if leftover.is_dir() else leftover.unlink()
        label = f"export {cfg.target} {cfg.precision}" + (f" ({len(keep)} modules kept in float)" if keep else "")
        with steps(label):
            with torch.no_grad():
                result = p.target.export(export_model, torch.from_numpy(x_in), staging, io_spec, cfg,
                                         calibration=calib_in, keep_float=keep)
        if eval_set is None:
            return result, None
        with steps("measure accuracy"):
            accuracy = measure_accuracy(p, staging / result.artifact, _runtime_spec(p, io_spec, result), eval_ref,
                                        eval_set)
            accuracy["kept_float"] = list(result.details.get("quantization", {}).get("kept_float", []))
        if not budget or within_budget(accuracy, max_accuracy_drop=cfg.max_accuracy_drop,
                                       min_agreement=cfg.min_agreement):
            break
        log.info("budget not met with %d modules in float: %s", len(keep), format_accuracy(accuracy))
        if attempt == 0:  # the fully quantized artifact exists now: where does its own runtime lose accuracy?
            with steps("rank blocks by drift in the runtime"):
                measured = runtime_block_ranking(p, staging / result.artifact, _runtime_spec(p, io_spec, result),
                                                 export_model, eval_set, calib_in)
            if measured is None:
                ranking = pytorch_layer_ranking(export_model, calib_set, eval_set, steps)
                ranked_by = "PyTorch fake-quant sensitivity per layer"
            else:
                ranking, ranked_by = measured
            candidates = [(), *block_candidates([r["module"] for r in ranking])]
    else:
        raise ParityError(f"the accuracy budget (max drop {cfg.max_accuracy_drop}, min agreement "
                          f"{cfg.min_agreement}) is not met even with all {len(candidates[-1])} ranked modules "
                          f"in float:\n{format_accuracy(accuracy)}")
    if budget:
        accuracy["budget"] = {"max_accuracy_drop": cfg.max_accuracy_drop, "min_agreement": cfg.min_agreement,
                              "attempts": attempt + 1, "ranked_by": ranked_by}
        accuracy["ranking"] = ranking[:10]
    return result, accuracy


def block_candidates(blocks: list[str]) -> list[tuple[str, ...]]:
    """Keep the worst 1, 2, 4 ... ranked modules (units or layers) in float, then all of them."""
    out, k = [], 1
    while k < len(blocks):
        out.append(tuple(blocks[:k]))
        k *= 2
    return [*out, tuple(blocks)]


def runtime_block_ranking(p: Plan, artifact: Path, spec, export_model, eval_set, calibration=None, *,
                          max_images: int = 64):
    """Next-ViT units (stem, each block, the classifier head) ranked by the drift each one adds in the artifact's own runtime, from
    ``edgevit drift``'s mechanism on up to ``max_images`` evaluation images: a unit's share is how much the mean
    cosine of its output to PyTorch's falls below the previous unit's. Returns (ranking, how it was measured), or
    None where the target has no drift mechanism for this artifact (then PyTorch ranks the layers)."""
    from torch import nn

    from edgevit.verify.drift import in_reference_layout, pytorch_block_outputs, units_of
    from edgevit.verify.metrics import compare

    if not hasattr(export_model, "stages"):
        return None
    units = [u for u, _, _ in units_of(export_model)]
    x_norm = eval_set.normalized[:max_images].astype(np.float32)
    x_in = (eval_set.raw if p.raw_input else eval_set.normalized)[:max_images].astype(np.float32)
    try:
        got, mechanism, _ = p.target.block_outputs(artifact, spec, units, x_in, model=export_model,
                                                   calibration=calibration)
    except ConfigError as e:
        log.info("no runtime drift for the budget ranking (%s); using the PyTorch ranking", e)
        return None
    ref = pytorch_block_outputs(export_model, x_norm, units)
    rows, previous = [], 0.0
    for unit in units:
        if unit not in got:
            continue
        value = in_reference_layout(unit, np.asarray(got[unit], np.float32), ref[unit].shape)
        cos = compare(unit, ref[unit], value, classification=False).cosine_mean
        rows.append({"module": unit, "drift": max(0.0, (1.0 - cos) - previous), "cosine_mean": cos})
        previous = 1.0 - cos
    final = spec.output_names[0]
    head = getattr(export_model, "head", None)
    if rows and final in got and isinstance(head, nn.Module) and any(True for _ in head.parameters()):
        # the classifier after the last block: what the final output loses beyond the last block's drift, so that a
        # budget can keep it in float too (quantizing the logits alone can flip close classes)
        out = pytorch_block_outputs(export_model, x_norm, ["head"])["head"]
        cos = compare(final, out, np.asarray(got[final], np.float32).reshape(out.shape),
                      classification=False).cosine_mean
        rows.append({"module": "head", "drift": max(0.0, (1.0 - cos) - previous), "cosine_mean": cos})
    if not rows:
        return None
    return sorted(rows, key=lambda r: -r["drift"]), f"drift each block adds in the runtime ({mechanism})"


def measure_accuracy(p: Plan, artifact: Path, spec, ref: dict[str, np.ndarray], eval_set) -> dict:
    """The accuracy report of the staged artifact on ``eval_set`` against PyTorch's outputs ``ref``."""
    runner = p.target.load(artifact, spec, threads=None)
    out = runner(eval_set.raw if p.raw_input else eval_set.normalized)
    flat_ref = np.concatenate([r.reshape(len(r), -1) for r in ref.values()], 1) if len(ref) > 1 else \
        next(iter(ref.values()))
    flat_out = np.concatenate([o.reshape(len(o), -1) for o in out], 1) if len(out) > 1 else out[0]
    return accuracy_report(flat_ref, flat_out, eval_set.labels, source=eval_set.source, tol=p.tolerance)


# ---------------------------------------------------------------------------------------------------------------
# 7. manifest and verification


def _versions(target) -> dict[str, str]:
    import torch

    import edgevit

    return {"edgevit": edgevit.__version__, "python": platform.python_version(), "torch": torch.__version__,
            **target.versions()}


def build_manifest(p: Plan, staging: Path, result, io_spec, golden: Golden, names, net, weights_hash: str,
                   rewrite_info: dict, accuracy) -> dict:
    """The manifest of the staged artifact (parity is added by ``convert`` once verified), with its golden files."""
    from edgevit.manifest import FORMAT_VERSION, write_golden, write_golden_size

    cfg = p.cfg
    artifact = staging / result.artifact
    layout = cfg.layout.upper()
    gold = write_golden(staging, golden.pictures, golden.x_in, golden.ref,
                        resize_check=(golden.resize_source, golden.resize_input), layout=layout)
    if golden.top2_margins is not None:
        gold["top2_margin_rel"] = golden.top2_margins
    if golden.extra:
        gold["sizes"] = [write_golden_size(staging, e["size"], e["pictures"], e["x_in"], e["ref"], layout=layout)
                         for e in golden.extra]
    x_shape = list(golden.x.shape)
    if layout == "NHWC":
        x_shape = [x_shape[0], x_shape[2], x_shape[3], x_shape[1]]
    return {
        "format_version": FORMAT_VERSION,
        "model": cfg.model,
        "target": cfg.target,
        "precision": cfg.precision,
        "artifact": result.artifact,
        "files": sorted([result.artifact, *result.extra_files]),
        "input": {"name": io_spec.input_name, "shape": ["batch", *x_shape[1:]] if cfg.dynamic_batch else x_shape,
                  "dtype": "float32", "layout": layout,
                  "pixels": "raw_rgb_0_255" if p.raw_input else "normalized",
                  "type": p.target.input_kind(cfg),
                  # a multi-size artifact: the sizes parity was checked at ("shape" holds the primary one)
                  **({"sizes": [list(sz) for sz in p.sizes], "multi_size": p.target.multi_size} if p.sizes else {})},
        "preprocess": io_spec.preprocess,
        "outputs": [{"name": n, "shape": list(golden.ref[n].shape)} for n in io_spec.output_names],
        "labels": p.labels,
        "num_classes": net.cfg.num_classes if not cfg.features and cfg.module is None else None,
        "source": {"model": cfg.model, "weights": portable_source(cfg.weights), "random_init": cfg.random_init,
                   "seed": cfg.seed, "num_classes": cfg.num_classes, "features": cfg.features,
                   "feature_norms": net.cfg.feature_norms if cfg.features else None,
                   "attention": cfg.attention,
                   "module": module_source(cfg.module),
                   # what verify --module checks the module it is given against (the folder never names code to run)
                   "module_sha256": sha256_file(Path(cfg.module.rpartition(":")[0])) if cfg.module else None,
                   "reset_head": cfg.reset_head},
        "provenance": io_spec.provenance,
        "weights_sha256": weights_hash,
        "tolerance_row": p.tol_key,
        "artifact_sha256": sha256_file(artifact),
        "artifact_bytes": path_bytes(artifact),
        "versions": _versions(p.target),
        "runtime_requirements": p.target.runtime_requirements(cfg),
        "rewrite": rewrite_info,
        "accuracy": accuracy,
        cfg.target: result.details,
        "golden": gold,
    }


def calibration_record(p: Plan, calib) -> dict:
    """Which calibration images made the artifact: the folder (``shipped`` for a model's own images), the selection
    (count, seed) and the sha256 of the exact inputs the quantizer saw, enough to calibrate again and check that
    the same inputs were used."""
    from edgevit.quantize.calibration import inputs_sha256

    cfg = p.cfg
    inputs = calib.raw if p.raw_input else calib.normalized
    return {"folder": portable_source(cfg.calib_dir) if cfg.calib_dir else "shipped", "count": cfg.calib_count,
            "seed": cfg.seed, "images": len(calib.files),
            "inputs_sha256": inputs_sha256(inputs)}


def verify_artifact(p: Plan, artifact: Path, spec, golden: Golden, real):
    """Run the staged artifact in its own runtime on the golden batch (and ``--images``) against PyTorch."""
    from edgevit.verify.parity import ParityReport, measure

    runner = p.target.load(artifact, spec)
    report = ParityReport(target=p.tol_key, precision=p.cfg.precision, runtime=p.target.runtime_for(p.cfg.delegate),
                          tolerance=p.tolerance)
    classification = is_classifier(spec.output_names)
    measure(report, "golden", runner, golden.x_in, golden.ref, classification=classification)
    for e in golden.extra:
        measure(report, f"golden {e['size'][0]}x{e['size'][1]}", runner, e["x_in"], e["ref"],
                classification=classification)
    if real is not None:
        measure(report, "images", runner, real[0], real[1], classification=classification)
    return report


def read_labels(path: str | None) -> list[str] | None:
    if path is None:
        return None
    try:
        labels = [line.strip() for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]
    except UnicodeDecodeError as e:
        raise ConfigError(f"labels file {path} is not UTF-8 text ({e.reason} at byte {e.start}); expected one "
                          "class name a line") from None
    except OSError as e:
        raise ConfigError(f"labels file {path} cannot be read: {e.strerror}") from None
    if not labels:
        raise ConfigError(f"labels file {path} is empty; expected one class name a line")
    return labels


def module_source(spec: str | None) -> str | None:
    """``FILE.py:FACTORY`` with the file as ``portable_source`` writes paths."""
    if spec is None:
        return None
    file, _, name = spec.rpartition(":")
    return f"{portable_source(file)}:{name}"


def portable_source(weights: str | None) -> str | None:
    """A local weights path made absolute so ``verify`` finds it from any folder; hub ids stay as they are."""
    if weights and Path(weights).exists():
        return str(Path(weights).resolve())
    return weights
