"""Image preprocessing of the published checkpoints, shared by parity checks, calibration and the manifest.

RGB -> resize the shorter side to ``size / crop_pct`` (bicubic) -> center crop ``size`` -> [0, 1] ->
(x - mean) / std -> (3, H, W) float32. The same numbers go into every manifest so apps reproduce it exactly.

The resize and crop geometry is timm's evaluation transform (``timm.data.transforms_factory.
transforms_imagenet_eval``, crop mode "center"), which the published checkpoints were evaluated with:

- the resize extent is ``floor(size / crop_pct)`` per side;
- a square extent ``S`` goes through torchvision's ``Resize(S)`` (``torchvision.transforms.functional.
  _compute_resized_output_size``): the shorter side becomes ``S`` and the longer ``int(S * long / short)``
  (truncated); a non-square one through timm's ``ResizeKeepRatio``: ``ratio = min(h / th, w / tw)`` and each side
  ``round(side / ratio)`` (Python's round: halves to even);
- torchvision's ``center_crop`` starts at ``int(round((H - h) / 2.0))`` (halves to even) on each axis.

``GEOMETRY`` names that rule in every manifest (``preprocess.geometry``). Artifacts made before it was recorded
(no key) used edgevit's first rule, kept as ``"edgevit-v1"`` so they stay verifiable as they were made: the
smallest size covering the extent with both sides rounded, and a crop offset of ``(H - h) // 2``; at 224 with
crop 0.95 its crop starts one row and one column before timm's.
"""

from __future__ import annotations

import logging
import math
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from edgevit.errors import ConfigError

log = logging.getLogger(__name__)

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".webp", ".bmp")
# 8000 x 8000: far above any camera picture a classifier is fed (a 48 MP phone photo is 8064 x 6048 = 48.8 MP);
# a file declaring more is a decompression bomb or a picture to downscale first. Checked on the header, before
# any pixel is decoded (Pillow's own guard only warns below 179 MP and then raises an error of its own type).
MAX_DECODE_PIXELS = 64_000_000
_SIXTEEN_BIT_GRAY = ("I;16", "I;16L", "I;16B", "I;16N")
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
INTERPOLATIONS = ("bicubic", "bilinear", "nearest")  # PIL filters of the same names (antialiased when shrinking)
GEOMETRY = "timm-eval"  # the resize/crop rule of new artifacts (module docstring)
GEOMETRIES = ("timm-eval", "edgevit-v1")


@dataclass(frozen=True, kw_only=True)
class Preprocess:
    size: tuple[int, int]
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    crop_pct: float = 0.95
    interpolation: str = "bicubic"
    color: str = "RGB"
    geometry: str = GEOMETRY

    @classmethod
    def for_size(cls, size: tuple[int, int]) -> "Preprocess":
        # the published checkpoints use crop_pct 0.95 at 224 and 1.0 at 384 (and above)
        return cls(size=size, crop_pct=1.0 if min(size) >= 384 else 0.95)

    @classmethod
    def from_manifest(cls, p: dict) -> "Preprocess":
        # a manifest without the key was written before the geometry was recorded: edgevit's first rule
        return cls(size=tuple(p["size"]), mean=tuple(p["mean"]), std=tuple(p["std"]), crop_pct=p["crop_pct"],
                   interpolation=p["interpolation"], color=p["color"], geometry=p.get("geometry", "edgevit-v1"))

    def __post_init__(self):
        if self.interpolation not in INTERPOLATIONS:
            raise ConfigError(f"interpolation must be one of {', '.join(INTERPOLATIONS)}, got {self.interpolation!r}")
        if self.geometry not in GEOMETRIES:
            raise ConfigError(f"preprocess geometry {self.geometry!r} is not known to this edgevit (known: "
                              f"{', '.join(GEOMETRIES)}); upgrade edgevit to read this artifact")

    def to_manifest(self) -> dict:
        d = asdict(self)
        d["resize"] = list(self.resize_shorter_to())
        d["size"] = list(self.size)
        d["mean"], d["std"] = list(self.mean), list(self.std)
        return d

    def resize_shorter_to(self) -> tuple[int, int]:
        """Target (H, W) extent before cropping: the crop scaled up by 1 / crop_pct."""
        h, w = self.size
        return math.floor(h / self.crop_pct), math.floor(w / self.crop_pct)

    def __call__(self, image) -> np.ndarray:
        """PIL image (any mode) -> normalized (3, H, W) float32."""
        return self.normalize(self.raw(image))

    def normalize(self, raw: np.ndarray) -> np.ndarray:
        """Raw 0-255 RGB (..., 3, H, W) -> (x / 255 - mean) / std."""
        shape = (3, 1, 1)
        x = raw.astype(np.float32) / 255.0
        return ((x - np.asarray(self.mean, np.float32).reshape(shape)) /
                np.asarray(self.std, np.float32).reshape(shape)).astype(np.float32)

    def resized(self, image):
        """PIL image (any mode) -> RGB, resized with ``interpolation`` so that it covers ``resize_shorter_to()``."""
        from PIL import Image

        img = image.convert("RGB")
        new = self.resized_size(img.width, img.height)
        filters = {"bicubic": Image.BICUBIC, "bilinear": Image.BILINEAR, "nearest": Image.NEAREST}
        return img if new == img.size else img.resize(new, filters[self.interpolation])

    def resized_size(self, width: int, height: int) -> tuple[int, int]:
        """(width, height) a ``width`` x ``height`` picture is resized to before the crop (the module docstring's
        rule for ``geometry``; what the apps reproduce)."""
        th, tw = self.resize_shorter_to()
        if self.geometry == "edgevit-v1":
            scale = max(th / height, tw / width)
            return max(tw, round(width * scale)), max(th, round(height * scale))
        if th == tw:  # torchvision Resize(int): the shorter side becomes S, the longer is truncated
            if width <= height:
                return th, int(th * height / width)
            return int(th * width / height), th
        ratio = min(height / th, width / tw)  # timm ResizeKeepRatio (longest=0): each side rounded, halves to even
        return round(width / ratio), round(height / ratio)

    def crop_box(self, width: int, height: int) -> tuple[int, int, int, int]:
        """(left, top, right, bottom) of the center crop in a ``width`` x ``height`` resized picture."""
        if self.geometry == "edgevit-v1":
            left, top = (width - self.size[1]) // 2, (height - self.size[0]) // 2
        else:  # torchvision center_crop: int(round(slack / 2.0)), halves to even
            left, top = int(round((width - self.size[1]) / 2.0)), int(round((height - self.size[0]) / 2.0))
        return left, top, left + self.size[1], top + self.size[0]

    def raw(self, image) -> np.ndarray:
        """PIL image (any mode) -> resized, center-cropped RGB pixels (3, H, W) float32 in 0..255."""
        img = self.resized(image)
        img = img.crop(self.crop_box(img.width, img.height))
        return np.ascontiguousarray(np.asarray(img, dtype=np.float32).transpose(2, 0, 1))


def list_images(folder: str | Path) -> list[Path]:
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"image folder {folder} does not exist")
    named = sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
    files = [p for p in named if p.is_file()]
    broken = [p for p in named if p.is_symlink() and not p.exists()]  # a link loop or a link to nothing
    if broken:
        log.warning("%s: skipped %d symlink(s) that lead to no file (a loop or a missing target): %s%s", folder,
                    len(broken), "; ".join(map(str, broken[:10])), f"; and {len(broken) - 10} more"
                    if len(broken) > 10 else "")
    if not files:
        raise ConfigError(f"image folder {folder} holds no images ({', '.join(IMAGE_SUFFIXES)})")
    return files


def _refuse_bomb(path: Path, w: int, h: int) -> None:
    if w * h > MAX_DECODE_PIXELS:
        raise ConfigError(f"image {path} declares {w}x{h} pixels ({w * h / 1e6:.0f} MP), more than edgevit "
                          f"decodes ({MAX_DECODE_PIXELS / 1e6:.0f} MP): a decompression bomb or a picture to "
                          "downscale first; remove it from the folder or shrink it")


class UnreadableImage(Exception):
    """A file that is not a picture edgevit can decode faithfully; loaders skip it and name it in a warning."""


def open_image(path: str | Path):
    """Decode ``path`` into an RGB PIL image, safely and faithfully.

    A header that declares more than ``MAX_DECODE_PIXELS`` is refused before decoding (ConfigError, exit 2: it is
    not skipped, a bomb in a data folder is worth stopping for). 16-bit grayscale is scaled to 8 bits (Pillow's
    ``convert("RGB")`` clips it, turning everything above 255 white); 16-bit RGB is read by Pillow at its high byte.
    32-bit integer and float pictures have no fixed range and are refused. Damaged or non-image files raise
    ``UnreadableImage`` with the reason.
    """
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with Image.open(path) as img:
            _refuse_bomb(path, *img.size)
            img.load()
            _note_orientation(path, img)
            if img.mode in _SIXTEEN_BIT_GRAY:
                wide = np.asarray(img, dtype=np.uint32)
                return Image.fromarray(((wide * 255 + 32767) // 65535).astype(np.uint8), "L").convert("RGB")
            if img.mode in ("I", "F"):
                raise UnreadableImage(f"{img.mode} pixels (32-bit {'integer' if img.mode == 'I' else 'float'}) "
                                      "have no fixed range; save the picture with 8 or 16 bits a channel")
            return img.convert("RGB")
    except ConfigError:
        raise
    except Image.DecompressionBombError as e:
        raise ConfigError(f"image {path} is refused by Pillow as a decompression bomb ({e}); remove it from the "
                          "folder or shrink it") from None
    except (UnidentifiedImageError, OSError, ValueError, SyntaxError) as e:  # SyntaxError: Pillow's bad-header error
        raise UnreadableImage(f"{type(e).__name__}: {e}") from None


_ORIENTATION_TAG = 0x0112
_oriented_seen = [False]


def _note_orientation(path: Path, img) -> None:
    """Pixels are read as stored, as timm and Pillow read them: an EXIF orientation tag (a phone photo taken
    sideways) is not applied. Said once per process, naming the first such picture."""
    if _oriented_seen[0]:
        return
    try:
        orientation = img.getexif().get(_ORIENTATION_TAG, 1)
    except Exception:  # noqa: BLE001 - a damaged EXIF block is no reason to refuse the pixels
        return
    if orientation not in (None, 1):
        _oriented_seen[0] = True
        log.warning("%s carries an EXIF orientation tag (%s): edgevit reads pixels as stored, like timm and Pillow, "
                    "without rotating them; rotate such pictures upright first (PIL.ImageOps.exif_transpose) if "
                    "the model should see them as a photo viewer shows them", path, orientation)


def check_headers(folder: str | Path) -> int:
    """Read the header of every picture in ``folder`` (no pixels are decoded) and refuse a decompression bomb before
    any model is built; unreadable files are left to the loaders, which skip and name them. Returns the count."""
    from PIL import Image

    files = list_images(folder)
    for path in files:
        try:
            with Image.open(path) as img:
                w, h = img.size
        except Image.DecompressionBombError:
            open_image(path)  # raises the named ConfigError
        except Exception:  # noqa: BLE001 - damaged files are skipped (and named) when the images are loaded
            continue
        _refuse_bomb(path, w, h)
    return len(files)


def warn_skipped(skipped: list[tuple[Path, str]], what: str, used: int) -> None:
    """One warning naming every skipped file (the first 10) and why."""
    if not skipped:
        return
    names = "; ".join(f"{p} ({why})" for p, why in skipped[:10])
    more = f"; and {len(skipped) - 10} more" if len(skipped) > 10 else ""
    log.warning("%s: skipped %d file(s) that are not readable pictures, used %d: %s%s", what, len(skipped), used,
                names, more)


def load_images(folder: str | Path, pre: Preprocess, *, limit: int | None = None,
                raw: bool = False) -> tuple[np.ndarray, list[Path]]:
    """Preprocess every readable image in ``folder`` (sorted, at most ``limit``); unreadable files are skipped.

    ``raw=True`` stops before normalisation (0-255 pixels, for artifacts that normalise inside).
    """
    batch, used, skipped = [], [], []
    for path in list_images(folder):
        if limit is not None and len(used) >= limit:
            break
        try:
            img = open_image(path)
        except UnreadableImage as e:
            skipped.append((path, str(e)))
            continue
        batch.append(pre.raw(img) if raw else pre(img))
        used.append(path)
    if not batch:
        raise ConfigError(f"none of the images in {folder} could be read ({len(skipped)} skipped; first: "
                          f"{skipped[0][0]}: {skipped[0][1]})")
    warn_skipped(skipped, str(folder), len(used))
    return np.stack(batch), used


def golden_image(size: tuple[int, int], seed: int = 0):
    """A deterministic, image-like RGB picture (gradients, disc, stripes) larger than the crop, as PIL image."""
    from PIL import Image

    h, w = math.ceil(size[0] * 1.25), math.ceil(size[1] * 1.5)
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:h, 0:w].astype(np.float32)
    r = 128 + 100 * np.sin(xx / w * 3.1 + 0.5)
    g = 128 + 100 * np.cos(yy / h * 2.3)
    b = 255 * ((np.hypot(yy - h / 2, xx - w / 2) < min(h, w) / 3) * 0.8)
    stripes = 40 * (np.sin(xx / 3.0 + yy / 5.0) > 0)
    img = np.stack([r + stripes, g, b + stripes], -1) + rng.normal(0, 8, (h, w, 3))
    return Image.fromarray(np.clip(img, 0, 255).astype(np.uint8), "RGB")
