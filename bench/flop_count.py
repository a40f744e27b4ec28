"""A FLOP table counted with torch's FLOP counter on the models actually loaded.

The full-size table comes from the performance brief; a tiny replica's work is nothing like it,
so ``--tiny`` counts its own, the same way the brief's numbers were counted.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any

import torch
from torch.utils.flop_counter import FlopCounterMode

from bench.floor import TERA, FlopTable

LATENT_FACTOR = 8  # the VAE's downscale


def _counted(work: Callable[[], object]) -> float:
    """TFLOPs of one call of ``work``."""
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        work()
    return counter.get_total_flops() / TERA


def count_flop_table(modules: dict[str, Any], sides: tuple[int, ...],
                     context_length: int) -> FlopTable:
    """FLOPs of one guided UNet step, its ControlNet share and one decode, per side."""
    unet, vae, controlnet = modules["unet"], modules["vae"], modules["controlnet"]
    text_encoder = modules["text_encoder"]
    device, dtype = unet.device, unet.dtype
    width = unet.config.cross_attention_dim
    prompts = torch.zeros(2, context_length, width, device=device, dtype=dtype)
    timestep = torch.tensor(500, device=device)
    steps, controls, decodes = {}, {}, {}
    for side in sides:
        latent = side // LATENT_FACTOR
        latents = torch.zeros(2, 4, latent, latent, device=device, dtype=dtype)
        steps[side] = _counted(partial(unet, latents, timestep, prompts))
        image = torch.zeros(2, 3, side, side, device=device, dtype=dtype)
        controls[side] = _counted(partial(controlnet, latents, timestep, prompts, image))
        decodes[side] = _counted(partial(vae.decode, latents[:1]))
    ids = torch.zeros(1, context_length, dtype=torch.long, device=device)
    text = _counted(partial(text_encoder, ids))
    extra = sum(controls.values()) / sum(steps.values())
    return FlopTable(unet_guided_step_tflop=steps, controlnet_extra=extra,
                     vae_decode_tflop=decodes, text_encoder_tflop=2 * text,
                     source="counted here with torch's FLOP counter on the loaded models")
