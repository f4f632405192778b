"""Calibration and evaluation images, preprocessed exactly as the artifact's manifest says."""

from __future__ import annotations

import logging
import random
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevit.errors import ConfigError
from edgevit.preprocess import (Preprocess, UnreadableImage, list_images, open_image,
                                 warn_skipped)

log = logging.getLogger(__name__)


@dataclass
class ImageSet:
    normalized: np.ndarray  # (N, 3, H, W) what PyTorch takes
    raw: np.ndarray  # (N, 3, H, W) 0-255 pixels, for artifacts that normalise inside
    files: list[Path]
    labels: np.ndarray | None = None  # class index per image, for labeled evaluation folders
    skipped: int = 0
    source: str = ""


def select(files: list[Path], count: int | None, seed: int = 0) -> list[Path]:
    """A deterministic subset: the same ``count`` files for the same folder and seed, spread over the folder."""
    if count is None or count >= len(files):
        return files
    rng = random.Random(seed)
    return sorted(rng.sample(files, count))


def load_set(files: list[Path], pre: Preprocess, what: str, labels: list[int] | None = None) -> ImageSet:
    from edgevit._progress import progress

    raws, used, used_labels, skipped = [], [], [], []
    for i, path in enumerate(progress(files, desc=f"{what} images")):
        try:
            img = open_image(path)
        except UnreadableImage as e:
            skipped.append((path, str(e)))
            continue
        raws.append(pre.raw(img))
        used.append(path)
        if labels is not None:
            used_labels.append(labels[i])
    if not raws:
        raise ConfigError(f"none of the {len(files)} {what} images could be read (first: {skipped[0][0]}: "
                          f"{skipped[0][1]})")
    warn_skipped(skipped, f"{what} images", len(raws))
    raw = np.stack(raws)
    return ImageSet(normalized=pre.normalize(raw), raw=raw, files=used, skipped=len(skipped),
                    labels=np.asarray(used_labels) if labels is not None else None)


def calibration_batches(calibration: np.ndarray, batch: int):
    """Every calibration image in batches of the artifact's fixed ``batch``; a short last batch is filled with
    images from the start of the set (wrap-around), so no image is dropped and none is invented."""
    n = len(calibration)
    if n == 0:
        raise ConfigError("no calibration images: pass --calib-dir with at least one readable image")
    for i in range(0, n, batch):
        yield np.ascontiguousarray(calibration[[(i + j) % n for j in range(batch)]], dtype=np.float32)


def inputs_sha256(inputs: np.ndarray) -> str:
    """The fingerprint of the exact float32 inputs a quantizer saw (the manifest's calibration record; drift
    checks a rebuilt calibration set against it)."""
    import hashlib

    return hashlib.sha256(np.ascontiguousarray(inputs, np.float32).tobytes()).hexdigest()


def calibration_set(folder: str | Path, pre: Preprocess, count: int | None = 128, seed: int = 0) -> ImageSet:
    """Calibration images from ``folder`` (any size or mode: converted to RGB), ``count`` of them at most."""
    files = select(list_images(folder), count, seed)
    return load_set(files, pre, "calibration")


def folder_labels(folder: str | Path, class_names: list[str] | None, num_classes: int | None = None, *,
                  required_for: str | None = None, quiet: bool = False) -> tuple[list[Path], list[int] | None]:
    """(image files, class index per file or None) of an evaluation folder.

    ``folder/<class>/*`` is labeled when every subfolder is one of ``class_names`` or a class index below
    ``num_classes``; a flat folder is unlabeled. With ``required_for`` (the option that needs labels), an unlabeled
    folder is an error saying how to lay it out; a class index outside the model's classes always is.
    """
    folder = Path(folder)
    files = list_images(folder)
    names = list(class_names or [])
    index = {n: i for i, n in enumerate(names)}
    subdirs = sorted({p.relative_to(folder).parts[0] for p in files if len(p.relative_to(folder).parts) > 1})
    flat = any(len(p.relative_to(folder).parts) == 1 for p in files)
    problem = None
    if flat or not subdirs:
        problem = f"{folder} has images directly in it, not in one subfolder per class"
    else:
        unknown = [d for d in subdirs if d not in index and not d.isdigit()]
        if unknown:
            known = f"the model's labels ({', '.join(names[:5])}{' ...' if len(names) > 5 else ''})" if names \
                else "class indices (the model has no labels file)"
            problem = (f"subfolders of {folder} such as {', '.join(unknown[:3])} are neither {known} nor class "
                       "indices")
    if problem is None:
        labels = [index[d] if d in index else int(d) for d in (p.relative_to(folder).parts[0] for p in files)]
        limit = num_classes if num_classes is not None else (len(names) or None)
        bad = sorted({v for v in labels if limit is not None and v >= limit})
        if bad:
            raise ConfigError(f"evaluation folder {folder} has class folders {bad[:5]} but the model has {limit} "
                              f"classes (0..{limit - 1}); remove them or pass the matching --labels")
        return files, labels
    if required_for:
        raise ConfigError(f"{required_for} needs labeled evaluation images, but {problem}. Lay the folder out as "
                          "DIR/<class name>/*.png (names from --labels) or DIR/<class index>/*.png, or use "
                          "--min-agreement, which compares with fp32 and needs no labels")
    if subdirs and not quiet:
        log.warning("%s; evaluating without labels (agreement with fp32 only)", problem)
    return files, None


def evaluation_set(folder: str | Path, pre: Preprocess, class_names: list[str] | None,
                   count: int | None = None, num_classes: int | None = None) -> ImageSet:
    """Evaluation images, labeled per ``folder_labels`` (a flat folder gives agreement with fp32 only)."""
    files, labels = folder_labels(folder, class_names, num_classes)
    if count is not None and count < len(files):
        keep = select(list(range(len(files))), count)
        files = [files[i] for i in keep]
        labels = [labels[i] for i in keep] if labels is not None else None
    return load_set(files, pre, "evaluation", labels)
