"""One small request per job kind, on the demo base, for switching between modes and for the
memory of every mode ready."""

from __future__ import annotations

from typing import Any

from PIL import Image

from bench.context import CONTROLNET_ID, PROMPT, SEED

SWITCH_STEPS = 2  # the switch, not the denoising, is measured: as few steps as img2img allows


def input_image(side: int) -> Image.Image:
    """A plain gradient: any picture serves as an init image or a ready control map."""
    ramp = bytes(range(256))[:side] * side * 3
    return Image.frombytes("RGB", (side, side), ramp)


def requests_by_mode(base_id: str, side: int) -> dict:
    """txt2img, img2img and ControlNet requests (the control map given, not preprocessed)."""
    from engine.requests import ControlNetRequest, ControlSpec, Img2ImgRequest, Txt2ImgRequest

    common: dict[str, Any] = dict(model=base_id, prompt=PROMPT, steps=SWITCH_STEPS, seed=SEED,
                                  width=side, height=side)
    control = ControlSpec(model=CONTROLNET_ID, control_type="canny", image=input_image(side),
                          preprocess=False)
    return {"txt2img": Txt2ImgRequest(**common),
            "img2img": Img2ImgRequest(init_image=input_image(side), **common),
            "controlnet": ControlNetRequest(control=control, **common)}
