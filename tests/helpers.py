"""Small request builders and image comparisons shared by the engine tests."""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine.requests import (
    ControlNetRequest, ControlSpec, Img2ImgRequest, InpaintRequest, Txt2ImgRequest,
)

PROMPT = "雾蒙蒙的日出在湖面上"
BASE = "pai-artist-large"
FAST = dict(model=BASE, steps=3, width=64, height=64, seed=7)


def txt2img(**changes) -> Txt2ImgRequest:
    return Txt2ImgRequest(**{"prompt": PROMPT, **FAST, **changes})


def sample_image(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    """A picture with edges (a bright square on noise), so Canny and depth have work to do."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 80, (height, width, 3)).astype(np.uint8)
    pixels[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 230
    return Image.fromarray(pixels)


def img2img(**changes) -> Img2ImgRequest:
    return Img2ImgRequest(**{"prompt": PROMPT, **FAST, "init_image": sample_image(),
                             "strength": 0.7, **changes})


def centre_mask(width: int = 64, height: int = 64) -> Image.Image:
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    return mask


def inpaint(**changes) -> InpaintRequest:
    return InpaintRequest(**{"prompt": PROMPT, **FAST, "init_image": sample_image(),
                             "mask": centre_mask(), "strength": 0.9, **changes})


def controlnet(control_changes: dict | None = None, **changes) -> ControlNetRequest:
    control = dict(model="pai-artist-large-controlnet-canny", control_type="canny",
                   image=sample_image())
    control.update(control_changes or {})
    return ControlNetRequest(**{"prompt": "白色的小鸟", **FAST, "control": ControlSpec(**control),
                                **changes})


def pixels(result, index: int = 0) -> np.ndarray:
    return np.asarray(result.images[index].image, dtype=np.int16)


def difference(a, b) -> int:
    """Largest per-pixel difference between the first images of two results."""
    return int(np.abs(pixels(a) - pixels(b)).max())
