"""Input images are normalised correctly whatever their mode, rotation or size."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.errors import InvalidRequest
from engine.images import fit_size, open_image_file, resize, to_mask, to_rgb
from engine.requests import ResizeMode


def test_rgba_is_flattened_on_white():
    image = Image.new("RGBA", (4, 4), (255, 0, 0, 0))
    assert to_rgb(image).getpixel((0, 0)) == (255, 255, 255)


def test_palette_cmyk_and_16_bit_become_rgb():
    palette = Image.new("P", (4, 4), 3)
    cmyk = Image.new("CMYK", (4, 4), (0, 255, 255, 0))
    grey16 = Image.fromarray(np.full((4, 4), 40000, dtype=np.uint16))
    assert {to_rgb(i).mode for i in (palette, cmyk, grey16)} == {"RGB"}
    assert to_rgb(cmyk).getpixel((0, 0)) == (255, 0, 0)
    assert to_rgb(grey16).getpixel((0, 0)) == (156, 156, 156)  # 40000 / 256


def test_exif_rotation_is_applied():
    image = Image.new("RGB", (40, 20))
    exif = image.getexif()
    exif[0x0112] = 6  # rotate 90 degrees clockwise when shown
    buffer = io.BytesIO()
    image.save(buffer, format="JPEG", exif=exif)
    assert to_rgb(Image.open(buffer)).size == (20, 40)


def test_mask_from_alpha_and_inversion():
    painted = Image.new("RGBA", (8, 8), (0, 0, 0, 0))
    painted.paste((0, 0, 0, 255), (0, 0, 4, 8))
    mask = to_mask(painted)
    assert mask.getpixel((1, 1)) == 255 and mask.getpixel((6, 1)) == 0
    assert to_mask(painted, invert=True).getpixel((1, 1)) == 0


def test_mask_blur_softens_the_edge():
    mask = Image.new("L", (16, 16), 0)
    mask.paste(255, (0, 0, 8, 16))
    assert 0 < to_mask(mask, blur=2).getpixel((8, 8)) < 255


@pytest.mark.parametrize("width, height, expected", [
    (1000, 760, (1000, 760)), (4000, 3000, (2048, 1536)), (100, 76, (96, 72)), (30, 30, (64, 64)),
])
def test_fit_size(width, height, expected):
    assert fit_size(width, height, 2048, 2048 * 2048) == expected


@pytest.mark.parametrize("mode", list(ResizeMode))
def test_resize_modes_give_the_target_size(mode):
    assert resize(Image.new("RGB", (90, 40)), 64, 64, mode).size == (64, 64)


def test_crop_and_resize_keeps_the_centre_and_fill_pads():
    image = Image.new("RGB", (200, 100), (0, 0, 255))
    image.paste((255, 0, 0), (50, 0, 150, 100))
    assert resize(image, 64, 64, ResizeMode.CROP_AND_RESIZE).getpixel((4, 32)) == (255, 0, 0)
    filled = resize(image, 64, 64, ResizeMode.RESIZE_AND_FILL)
    assert filled.getpixel((32, 32)) == (255, 0, 0)


def test_resize_and_fill_keeps_the_aspect_and_repeats_the_edges():
    # A vertical gradient 64 x 32: a stretch to 64 x 64 would spread it over every row.
    rows = np.repeat(np.arange(0, 256, 8, dtype=np.uint8)[:, None], 64, axis=1)
    gradient = Image.fromarray(np.stack([rows] * 3, axis=-1))
    filled = np.asarray(resize(gradient, 64, 64, ResizeMode.RESIZE_AND_FILL))[:, :, 0]
    assert np.array_equal(filled[16:48], rows)  # the whole picture, unscaled, centred
    assert (filled[:16] == rows[0]).all() and (filled[48:] == rows[-1]).all()
    stretched = np.asarray(resize(gradient, 64, 64, ResizeMode.JUST_RESIZE))[:, :, 0]
    assert not np.array_equal(filled, stretched)


def test_resize_and_fill_pads_columns_of_a_tall_mask():
    columns = np.repeat(np.arange(0, 256, 8, dtype=np.uint8)[None, :], 64, axis=0)
    filled = np.asarray(resize(Image.fromarray(columns, "L"), 64, 64,
                               ResizeMode.RESIZE_AND_FILL))
    assert np.array_equal(filled[:, 16:48], columns)
    assert (filled[:, :16] == 0).all() and (filled[:, 48:] == 248).all()


def test_open_image_file_refuses_bombs_and_garbage(tmp_path):
    big = tmp_path / "big.png"
    Image.new("L", (3000, 3000)).save(big)
    with pytest.raises(InvalidRequest) as caught:
        open_image_file(big, max_pixels=1000 * 1000)
    assert caught.value.code == "image_too_large"
    truncated = tmp_path / "cut.png"
    data = io.BytesIO()
    Image.new("RGB", (64, 64), (1, 2, 3)).save(data, format="PNG")
    truncated.write_bytes(data.getvalue()[:60])
    with pytest.raises(InvalidRequest) as caught:
        open_image_file(truncated, max_pixels=10**7)
    assert caught.value.code == "image_unreadable"
    text = tmp_path / "notes.png"
    text.write_text("not an image")
    with pytest.raises(InvalidRequest):
        open_image_file(text, max_pixels=10**7)


def test_big_endian_16_bit_and_transparent_palette():
    big_endian = Image.frombytes("I;16B", (2, 2), (40000).to_bytes(2, "big") * 4)
    assert to_rgb(big_endian).getpixel((0, 0)) == (156, 156, 156)
    palette = Image.new("PA", (4, 4))
    palette.putpalette([255, 0, 0] * 256)
    assert to_rgb(palette).getpixel((0, 0)) == (255, 255, 255)  # transparent: on white
