"""edgevit's resize and center crop against timm's evaluation transform, pixel for pixel.

The oracle is transcribed from the sources that define timm's eval transform (no torchvision is installed here):

- ``timm/data/transforms_factory.py: transforms_imagenet_eval`` (crop mode "center"): ``scale_size =
  floor(x / crop_pct)`` per side; a square ``scale_size`` goes to ``transforms.Resize(scale_size[0])``, a non-square
  one to ``ResizeKeepRatio(scale_size)``; then ``transforms.CenterCrop(img_size)``;
- ``torchvision/transforms/functional.py: _compute_resized_output_size``: ``short, long = (w, h) if w <= h else
  (h, w)``; ``new_short, new_long = size, int(size * long / short)``; ``(new_w, new_h) = (new_short, new_long) if
  w <= h else (new_long, new_short)``; PIL images are then resized with ``Image.resize`` and the same filter;
- ``timm/data/transforms.py: ResizeKeepRatio.get_params`` (longest 0, no random scale or aspect): ``ratio =
  min(h / target_h, w / target_w)``; ``size = [round(x / ratio) for x in (h, w)]``;
- ``torchvision/transforms/functional.py: center_crop``: ``crop_top = int(round((image_height - crop_height) /
  2.0))``, ``crop_left = int(round((image_width - crop_width) / 2.0))``.
"""

from __future__ import annotations

import math

import numpy as np
import pytest

from edgevit.preprocess import Preprocess

FILTERS = {"bicubic": 3, "bilinear": 2, "nearest": 0}  # PIL.Image.BICUBIC / BILINEAR / NEAREST


def _picture(width: int, height: int, seed: int):
    from PIL import Image

    rng = np.random.default_rng(seed)
    return Image.fromarray(rng.integers(0, 256, (height, width, 3), dtype=np.uint8), "RGB")


def timm_eval_pixels(img, size: tuple[int, int], crop_pct: float, interpolation: str) -> np.ndarray:
    """timm's eval resize + center crop (module docstring), as (3, H, W) float32 0-255."""
    scale_size = tuple(math.floor(x / crop_pct) for x in size)
    w, h = img.size
    if scale_size[0] == scale_size[1]:
        short, long = (w, h) if w <= h else (h, w)
        new_short, new_long = scale_size[0], int(scale_size[0] * long / short)
        new_w, new_h = (new_short, new_long) if w <= h else (new_long, new_short)
    else:
        ratio = min(h / scale_size[0], w / scale_size[1])
        new_h, new_w = [round(x / ratio) for x in (h, w)]
    if (new_w, new_h) != (w, h):
        img = img.resize((new_w, new_h), FILTERS[interpolation])
    crop_h, crop_w = size
    top = int(round((new_h - crop_h) / 2.0))
    left = int(round((new_w - crop_w) / 2.0))
    out = np.asarray(img.crop((left, top, left + crop_w, top + crop_h)), dtype=np.float32)
    return out.transpose(2, 0, 1)


@pytest.mark.parametrize("width,height", [(333, 500), (500, 333), (224, 224), (235, 236), (641, 480), (17, 900)])
@pytest.mark.parametrize("crop_pct", [0.875, 0.95, 1.0])
def test_square_size_is_pixel_identical_to_timm_eval(width, height, crop_pct):
    img = _picture(width, height, seed=width * 7 + height)
    pre = Preprocess(size=(224, 224), crop_pct=crop_pct, interpolation="bicubic")
    np.testing.assert_array_equal(pre.raw(img), timm_eval_pixels(img, (224, 224), crop_pct, "bicubic"))


@pytest.mark.parametrize("interpolation", ["bilinear", "nearest"])
@pytest.mark.parametrize("size", [(64, 64), (384, 384), (7, 7)])
def test_other_sizes_and_filters_are_pixel_identical(size, interpolation):
    for width, height in [(333, 500), (500, 333), (99, 101)]:
        img = _picture(width, height, seed=width + height + size[0])
        pre = Preprocess(size=size, crop_pct=0.95, interpolation=interpolation)
        np.testing.assert_array_equal(pre.raw(img), timm_eval_pixels(img, size, 0.95, interpolation))


@pytest.mark.parametrize("size", [(224, 256), (256, 224), (192, 320)])
def test_non_square_sizes_follow_resize_keep_ratio(size):
    # timm's eval path builds ResizeKeepRatio without the interpolation (bilinear); edgevit keeps the manifest's
    # filter, so the pixels are compared with bilinear, where both agree, and the geometry for bicubic
    for width, height in [(333, 500), (500, 333), (640, 480), (301, 299)]:
        img = _picture(width, height, seed=width - height + size[1])
        pre = Preprocess(size=size, crop_pct=0.95, interpolation="bilinear")
        np.testing.assert_array_equal(pre.raw(img), timm_eval_pixels(img, size, 0.95, "bilinear"))


def test_the_crop_offset_rounds_halves_to_even_as_torchvision_does():
    pre = Preprocess(size=(224, 224), crop_pct=0.95)  # resize extent 235: the shorter side becomes 235
    assert pre.resize_shorter_to() == (235, 235)
    # a 235 x 352 picture: slack 11 -> round(5.5) = 6 (edgevit's first rule took 11 // 2 = 5)
    assert pre.crop_box(235, 352)[:2] == (6, 64)
    # slack 1 -> round(0.5) = 0; slack 3 -> round(1.5) = 2
    assert pre.crop_box(225, 227)[:2] == (0, 2)


def test_the_longer_side_is_truncated_as_torchvision_does():
    pre = Preprocess(size=(224, 224), crop_pct=0.95)
    # 333 x 500: 235 * 500 / 333 = 352.85 -> 352 (edgevit's first rule rounded it to 353)
    assert pre.resized_size(333, 500) == (235, 352)
    assert pre.resized_size(500, 333) == (352, 235)


def test_manifests_without_a_geometry_keep_the_rule_they_were_made_with():
    new = Preprocess(size=(224, 224), crop_pct=0.95)
    old = Preprocess.from_manifest({k: v for k, v in new.to_manifest().items() if k != "geometry"})
    assert new.to_manifest()["geometry"] == "timm-eval" and old.geometry == "edgevit-v1"
    assert old.resized_size(333, 500) == (235, 353) and old.crop_box(235, 353)[:2] == (5, 64)
    assert Preprocess.from_manifest(new.to_manifest()) == new


def test_an_unknown_geometry_is_refused_by_name():
    from edgevit.errors import ConfigError

    with pytest.raises(ConfigError, match="geometry 'squash'.*upgrade edgevit"):
        Preprocess(size=(224, 224), geometry="squash")


# (size, resize extent, picture width x height) -> (scaled width x height, crop left/top): the values the apps'
# own tests hold (android_demo CoreTest "timm-eval geometry ...", ios_demo PreprocessingTests), from the oracle
TIMM_CASES = [
    ((224, 224), (333, 500), (235, 352), (6, 64)),
    ((224, 224), (500, 333), (352, 235), (64, 6)),
    ((224, 224), (640, 480), (313, 235), (44, 6)),
    ((224, 256), (333, 500), (269, 404), (6, 90)),
    ((224, 256), (301, 299), (269, 267), (6, 22)),
]


@pytest.mark.parametrize("size,picture,scaled,origin", TIMM_CASES)
def test_the_apps_expected_values_are_the_oracles(size, picture, scaled, origin):
    from PIL import Image

    img = Image.new("RGB", picture)
    captured = {}
    real_resize = Image.Image.resize

    def spy(self, new_size, *a, **k):
        captured["size"] = tuple(new_size)
        return real_resize(self, new_size, *a, **k)

    Image.Image.resize = spy
    try:
        timm_eval_pixels(img, size, 0.95, "bilinear")
    finally:
        Image.Image.resize = real_resize
    assert captured["size"] == scaled
    w, h = scaled
    assert (int(round((w - size[1]) / 2.0)), int(round((h - size[0]) / 2.0))) == origin
    pre = Preprocess(size=size, crop_pct=0.95)
    assert pre.resized_size(*picture) == scaled and pre.crop_box(*scaled)[:2] == origin
