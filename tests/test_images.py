"""Every picture edgevit reads is decoded safely (a bomb is refused from its header) and faithfully (16-bit samples
are scaled, not clipped), and a skipped file is named."""

import logging

import numpy as np
import pytest

from edgevit.errors import ConfigError
from edgevit.preprocess import MAX_DECODE_PIXELS, Preprocess, UnreadableImage, load_images, open_image
from tests.robustness.images import bomb_png, png


def test_sixteen_bit_gray_is_scaled_not_clipped(tmp_path):
    values = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    got = np.asarray(open_image(png(tmp_path / "g16.png", values)))
    assert got.shape == (1, 4, 3)
    # independent expectation: the nearest 8-bit level of v / 65535
    assert got[0, :, 0].tolist() == [round(v / 65535 * 255) for v in values[0].tolist()] == [0, 1, 128, 255]
    assert (got[..., 0] == got[..., 1]).all() and (got[..., 1] == got[..., 2]).all()


def test_sixteen_bit_rgb_keeps_its_colors(tmp_path):
    rgb = np.zeros((2, 2, 3), np.uint16)
    rgb[0, 0] = (65535, 32768, 0)
    rgb[1, 1] = (1000, 40000, 65000)
    got = np.asarray(open_image(png(tmp_path / "rgb16.png", rgb))).astype(int)
    assert np.abs(got - rgb.astype(float) / 257).max() <= 1


@pytest.mark.parametrize("side", [9000, 30000])  # above edgevit's bound; above Pillow's own error threshold
def test_decompression_bomb_is_refused_from_its_header(tmp_path, side):
    assert side * side > MAX_DECODE_PIXELS
    with pytest.raises(ConfigError, match="decompression bomb") as err:
        open_image(bomb_png(tmp_path / "bomb.png", side, side))
    assert "bomb.png" in str(err.value)


def test_damaged_and_fake_files_are_unreadable_with_a_reason(tmp_path):
    (tmp_path / "notes.png").write_text("not a picture")
    good = png(tmp_path / "ok.png", np.full((8, 8, 3), 200, np.uint8)).read_bytes()
    (tmp_path / "cut.png").write_bytes(good[:40])
    for name in ("notes.png", "cut.png"):
        with pytest.raises(UnreadableImage):
            open_image(tmp_path / name)


def test_float_pictures_are_refused_not_guessed(tmp_path):
    from PIL import Image

    Image.fromarray(np.full((8, 8), 0.5, np.float32), "F").save(tmp_path / "f.tiff")
    with pytest.raises(UnreadableImage, match="no fixed range"):
        open_image(tmp_path / "f.tiff")


def test_loader_names_every_skipped_file(tmp_path, caplog):
    png(tmp_path / "a.png", np.full((40, 40, 3), 90, np.uint8))
    (tmp_path / "b.png").write_text("oops")
    (tmp_path / "c.jpg").write_bytes(b"\xff\xd8\xff")
    with caplog.at_level(logging.WARNING, logger="edgevit"):
        batch, used = load_images(tmp_path, Preprocess(size=(32, 32)))
    assert [p.name for p in used] == ["a.png"] and batch.shape == (1, 3, 32, 32)
    warning = " ".join(r.getMessage() for r in caplog.records if r.levelno == logging.WARNING)
    assert "b.png" in warning and "c.jpg" in warning and "skipped 2" in warning


def test_exif_orientation_is_not_applied_and_is_said(tmp_path, caplog, monkeypatch):
    """Issue 32: EXIF orientation was ignored without a word. Pixels stay as stored (timm's reading); a warning
    names the picture once."""
    from PIL import Image

    from edgevit import preprocess

    monkeypatch.setattr(preprocess, "_oriented_seen", [False])
    pixels = np.zeros((20, 40, 3), np.uint8)
    pixels[:, :10] = 255  # a white band on the left, as stored
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to view"
    path = tmp_path / "sideways.png"
    Image.fromarray(pixels).save(path, exif=exif)
    with caplog.at_level("WARNING", logger="edgevit.preprocess"):
        img = preprocess.open_image(path)
        preprocess.open_image(path)
    assert np.array_equal(np.asarray(img), pixels)  # 20x40, not turned to 40x20
    said = [r.getMessage() for r in caplog.records if "EXIF orientation" in r.getMessage()]
    assert len(said) == 1 and "sideways.png" in said[0]


def test_symlinks_that_lead_nowhere_are_named(tmp_path, caplog):
    from PIL import Image

    from edgevit.preprocess import list_images

    Image.new("RGB", (8, 8)).save(tmp_path / "real.png")
    (tmp_path / "loop.png").symlink_to("loop.png")
    (tmp_path / "gone.jpg").symlink_to(tmp_path / "missing.jpg")
    with caplog.at_level("WARNING", logger="edgevit.preprocess"):
        assert list_images(tmp_path) == [tmp_path / "real.png"]
    said = " ".join(r.getMessage() for r in caplog.records)
    assert "loop.png" in said and "gone.jpg" in said and "2 symlink(s)" in said
