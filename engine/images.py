"""Input images made safe to use: upright, RGB, the requested size, masks as clean grey maps."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageFilter, ImageOps

from engine.limits import Limits
from engine.requests import ResizeMode


def to_rgb(image: Image.Image) -> Image.Image:
    """Honour EXIF rotation; flatten transparency on white; convert CMYK, palette and 16-bit."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I"):
        # 16-bit greyscale: keep the top 8 bits instead of clipping everything to white.
        values = np.clip(np.asarray(image, dtype=np.int64), 0, 65535) >> 8
        image = Image.fromarray(values.astype(np.uint8), mode="L")
    if image.mode in ("P", "PA"):
        image = image.convert("RGBA")
    if image.mode in ("RGBA", "LA"):
        background = Image.new("RGB", image.size, (255, 255, 255))
        background.paste(image.convert("RGBA"), mask=image.convert("RGBA").getchannel("A"))
        return background
    return image.convert("RGB")


def to_mask(image: Image.Image, blur: int = 0, invert: bool = False) -> Image.Image:
    """A greyscale mask, white = repaint. An alpha-only mask uses its alpha channel."""
    image = ImageOps.exif_transpose(image)
    if image.mode in ("RGBA", "LA") and image.convert("L").getextrema() == (0, 0):
        mask = image.getchannel("A")
    else:
        mask = to_rgb(image).convert("L")
    if invert:
        mask = ImageOps.invert(mask)
    if blur:
        mask = mask.filter(ImageFilter.GaussianBlur(blur))
    return mask


def fit_size(width: int, height: int, max_side: int, max_pixels: int, step: int = 8,
             min_side: int = 64) -> tuple[int, int]:
    """Scale (width, height) down into the limits, keep the aspect, round down to ``step``."""
    scale = min(1.0, max_side / max(width, height), (max_pixels / (width * height)) ** 0.5)
    fitted = []
    for side in (width * scale, height * scale):
        fitted.append(max(min_side, int(side) // step * step))
    return fitted[0], fitted[1]


def fit_to_limits(width: int, height: int, limits: Limits, batch_size: int) -> tuple[int, int]:
    """``fit_size`` within ``limits`` for one image of a batch of ``batch_size``."""
    return fit_size(width, height, limits.max_size, limits.pixels_per_image(batch_size),
                    limits.size_step, limits.min_size)


def resize(image: Image.Image, width: int, height: int, mode: ResizeMode) -> Image.Image:
    """The three A1111 resize modes: stretch, crop to fill, or fit and pad."""
    if image.size == (width, height):
        return image
    if mode is ResizeMode.CROP_AND_RESIZE:
        return ImageOps.fit(image, (width, height), Image.Resampling.LANCZOS)
    if mode is ResizeMode.RESIZE_AND_FILL:
        return _fit_and_pad(image, width, height)
    return image.resize((width, height), Image.Resampling.LANCZOS)


def _fit_and_pad(image: Image.Image, width: int, height: int) -> Image.Image:
    """Fit inside the target keeping the aspect, centred; the padding repeats the edge rows
    or columns (as A1111's "resize and fill" does) rather than leaving black bars."""
    fitted = np.asarray(ImageOps.contain(image, (width, height), Image.Resampling.LANCZOS))
    top, left = (height - fitted.shape[0]) // 2, (width - fitted.shape[1]) // 2
    padding = [(top, height - fitted.shape[0] - top), (left, width - fitted.shape[1] - left)]
    padding += [(0, 0)] * (fitted.ndim - 2)
    return Image.fromarray(np.pad(fitted, padding, mode="edge"))


def open_image_file(path: str | Path, max_pixels: int) -> Image.Image:
    """Open an image file, refusing decompression bombs before decoding any pixels."""
    from engine.errors import InvalidRequest

    try:
        image = Image.open(path)
        if image.width * image.height > max_pixels:
            raise InvalidRequest("image_too_large", field=str(path), width=image.width,
                                 height=image.height, max_pixels=max_pixels)
        image.load()
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        raise InvalidRequest("image_unreadable", path=str(path)) from None
    return image
