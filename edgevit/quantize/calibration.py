"""Calibration and evaluation images, preprocessed exactly as the artifact's manifest says."""

from __future__ import annotations

import logging
import random
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from edgevit.errors import ConfigError
from edgevit.preprocess import Preprocess, list_images

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


def _progress(done: int, total: int, what: str) -> None:
    if sys.stderr.isatty():
        width = 30
        filled = int(width * done / max(total, 1))
        print(f"\r{what}: [{'#' * filled}{'.' * (width - filled)}] {done}/{total}", end="" if done < total else "\n",
              file=sys.stderr, flush=True)


def load_set(files: list[Path], pre: Preprocess, what: str, labels: list[int] | None = None) -> ImageSet:
    from PIL import Image, UnidentifiedImageError

    raws, used, used_labels, skipped = [], [], [], 0
    for i, path in enumerate(files):
        try:
            with Image.open(path) as img:
                raws.append(pre.raw(img))
            used.append(path)
            if labels is not None:
                used_labels.append(labels[i])
        except (UnidentifiedImageError, OSError, ValueError) as e:
            skipped += 1
            log.warning("skipping unreadable image %s: %s", path, e)
        _progress(i + 1, len(files), what)
    if not raws:
        raise ConfigError(f"none of the {len(files)} {what} images could be read ({skipped} unreadable)")
    if skipped:
        log.warning("%s: %d unreadable files skipped, %d used", what, skipped, len(raws))
    raw = np.stack(raws)
    return ImageSet(normalized=pre.normalize(raw), raw=raw, files=used, skipped=skipped,
                    labels=np.asarray(used_labels) if labels is not None else None)


def calibration_set(folder: str | Path, pre: Preprocess, count: int | None = 128, seed: int = 0) -> ImageSet:
    """Calibration images from ``folder`` (any size or mode: converted to RGB), ``count`` of them at most."""
    files = select(list_images(folder), count, seed)
    return load_set(files, pre, "calibration")


def evaluation_set(folder: str | Path, pre: Preprocess, class_names: list[str] | None,
                   count: int | None = None) -> ImageSet:
    """Evaluation images. ``folder/<class>/*.png`` is labeled when the subfolder names match ``class_names``
    (or are class indices); a flat folder is unlabeled (agreement with fp32 only)."""
    folder = Path(folder)
    files = list_images(folder)
    labels = None
    subdirs = {p.parent.relative_to(folder).as_posix() for p in files}
    if "." not in subdirs:
        names = class_names or []
        index = {n: i for i, n in enumerate(names)}
        try:
            labels = [index[d] if d in index else int(d) for d in (p.parent.name for p in files)]
        except ValueError:
            labels = None
            log.warning("%s has subfolders that are neither class names nor indices; evaluating without labels",
                        folder)
    if count is not None and count < len(files):
        keep = select(list(range(len(files))), count)
        files = [files[i] for i in keep]
        labels = [labels[i] for i in keep] if labels is not None else None
    return load_set(files, pre, "evaluation", labels)
