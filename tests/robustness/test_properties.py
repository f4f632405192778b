"""Classes of input, not only the cases seen: generated recipes, option strings and picture files.

Recipes and option strings go through ``edgevit.cli.main`` in this process (the same parser, validation and
exit-code mapping as the subprocess tests, at a fraction of the cost per example) with ``--dry-run``, so a valid
combination plans and exits 0 and an invalid one exits 2; nothing else, and never an exception. Pictures go
through ``open_image``, the one decoder every loader uses."""

import io
import struct
import zlib
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import fields

import numpy as np
import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgevit.cli import main
from edgevit.config import ConvertConfig
from edgevit.errors import ConfigError
from edgevit.preprocess import MAX_DECODE_PIXELS, UnreadableImage, open_image
from tests.robustness.images import png

pytestmark = pytest.mark.filterwarnings("ignore")

# weights is left out: a string there is a hub id, and resolving one would go to the network
KEYS = sorted(f.name for f in fields(ConvertConfig) if f.name not in ("weights", "out"))
SCALARS = st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.integers(),
                    st.floats(allow_nan=True, allow_infinity=True), st.text(max_size=12),
                    st.sampled_from(["onnx", "ort", "coreml", "executorch", "fp16", "int8", "xnnpack", "224",
                                     "64x64", "true", "false", "nextvit_digits", ".", "/", ""]))
VALUES = st.one_of(SCALARS, st.lists(SCALARS, max_size=4), st.dictionaries(st.text(max_size=4), SCALARS,
                                                                           max_size=2))


def _run(argv) -> int:
    with redirect_stdout(io.StringIO()), redirect_stderr(io.StringIO()):
        try:
            return main(argv)
        except SystemExit as e:  # argparse's own errors
            return e.code


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(recipe=st.dictionaries(st.sampled_from(KEYS), VALUES, max_size=5))
def test_any_recipe_plans_or_exits_2(tmp_path, recipe):
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"model": "nextvit_digits", **recipe}))
    code = _run(["convert", "--recipe", str(path), "--dry-run", "--out", str(tmp_path / "o")])
    assert code in (0, 2)
    assert not (tmp_path / "o").exists()


@settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=st.binary(max_size=300))
def test_any_recipe_bytes_exit_2_or_plan(tmp_path, data):
    path = tmp_path / "r.yaml"
    path.write_bytes(data)
    assert _run(["convert", "--recipe", str(path), "--dry-run", "--out", str(tmp_path / "o")]) in (0, 2)


FLAGS = ["--img-size", "--batch", "--opset", "--seed", "--calib-count", "--eval-count", "--max-accuracy-drop",
         "--min-agreement", "--crop-pct", "--mean", "--std", "--min-ios", "--target", "--precision", "--delegate",
         "--interpolation", "--input-type", "--compute-units", "--num-classes", "--model", "--calib-method"]
TEXT = st.one_of(st.text(max_size=10), st.sampled_from(["-1", "0", "1e999", "nan", "inf", "-0", "3.5", "64x64",
                                                        "1,2,3", "0.5,0.5,0.5", "99999", " ", "int8", "coreml"]))


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=st.lists(st.tuples(st.sampled_from(FLAGS), TEXT), min_size=1, max_size=3))
def test_any_option_strings_plan_or_exit_2(tmp_path, options):
    argv = ["convert", "--model", "nextvit_digits"]
    for flag, value in options:
        argv += [f"{flag}={value}"]  # '=' keeps values that start with '-' attached to their flag
    assert _run([*argv, "--dry-run", "--out", str(tmp_path / "o")]) in (0, 2)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(options=st.lists(st.tuples(st.sampled_from(["--threads", "--warmup", "--runs", "--min-time", "--batch"]),
                                  TEXT), min_size=1, max_size=2))
def test_bench_and_verify_option_strings_exit_2(tmp_path, options):
    # on a folder that is not an artifact, so a valid option set still ends in the folder's error (exit 2)
    argv = [f"{flag}={value}" for flag, value in options]
    assert _run(["bench", str(tmp_path), "--no-memory", *argv]) == 2
    threads = [a for a in argv if a.startswith("--threads")]
    assert _run(["verify", str(tmp_path), *threads]) == 2


@st.composite
def pictures(draw):
    h, w = draw(st.integers(1, 24)), draw(st.integers(1, 24))
    depth = draw(st.sampled_from([8, 16]))
    channels = draw(st.sampled_from([1, 3]))
    dtype = np.uint16 if depth == 16 else np.uint8
    shape = (h, w) if channels == 1 else (h, w, 3)
    values = draw(st.lists(st.integers(0, np.iinfo(dtype).max), min_size=int(np.prod(shape)),
                           max_size=int(np.prod(shape))))
    return np.asarray(values, dtype=dtype).reshape(shape)


def _expected_rgb(pixels: np.ndarray) -> np.ndarray:
    """Independent of the decoder: 8-bit as is; 16-bit gray to the nearest 8-bit level; 16-bit RGB by its high byte
    (Pillow's reading, within one level of the nearest)."""
    rgb = pixels if pixels.ndim == 3 else np.repeat(pixels[..., None], 3, axis=2)
    if pixels.dtype == np.uint8:
        return rgb.astype(int)
    return np.rint(rgb.astype(float) * 255 / 65535).astype(int)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pixels=pictures())
def test_any_valid_png_decodes_faithfully(tmp_path, pixels):
    got = np.asarray(open_image(png(tmp_path / "p.png", pixels))).astype(int)
    assert got.shape == (*pixels.shape[:2], 3)
    tolerance = 1 if pixels.dtype == np.uint16 and pixels.ndim == 3 else 0
    assert np.abs(got - _expected_rgb(pixels)).max() <= tolerance


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(pixels=pictures(), cut=st.integers(0, 400), noise=st.binary(max_size=64),
       declared=st.tuples(st.integers(1, 2**31 - 1), st.integers(1, 2**31 - 1)), suffix=st.sampled_from(
           [".png", ".jpg", ".webp", ".bmp"]))
def test_any_damaged_file_is_refused_with_a_named_error(tmp_path, pixels, cut, noise, declared, suffix):
    good = png(tmp_path / "g.png", pixels).read_bytes()
    variants = {
        "truncated": good[:cut],
        "noise": noise,
        "spliced": good[:cut] + noise + good[cut + len(noise):],
        # a valid header that lies about the size: a bomb when large, garbage otherwise
        "lying": good[:16] + struct.pack(">II", *declared) + good[24:29] +
                 struct.pack(">I", zlib.crc32(good[12:16] + struct.pack(">II", *declared) + good[24:29])) + good[33:],
    }
    for name, data in variants.items():
        path = tmp_path / f"{name}{suffix}"
        path.write_bytes(data)
        try:
            img = open_image(path)
        except UnreadableImage:
            continue
        except ConfigError as e:
            assert "decompression bomb" in str(e) and path.name in str(e)
            continue
        assert img.mode == "RGB" and img.width * img.height <= MAX_DECODE_PIXELS


def test_the_generators_reach_valid_plans_too(tmp_path):
    # the properties above accept 0 or 2; a dry run of a valid recipe must give 0, or they would prove nothing
    path = tmp_path / "r.yaml"
    path.write_text(yaml.safe_dump({"model": "nextvit_digits", "target": "ort", "precision": "int8", "batch": 2}))
    assert _run(["convert", "--recipe", str(path), "--dry-run", "--out", str(tmp_path / "o")]) == 0
    assert _run(["convert", "--model", "nextvit_digits", "--img-size=96x64", "--dry-run", "--out",
                 str(tmp_path / "o")]) == 0
