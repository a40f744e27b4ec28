"""A derived pipeline (img2img, inpaint, ControlNet: made with diffusers' ``from_pipe``, which
shares the base's modules) must leave the base in the engine's precision. diffusers 0.42's
``from_pipe`` casts the shared modules to fp32 unless told a dtype; bench/gpu.py found it."""

from __future__ import annotations

import pytest
import torch

from engine.generate.engine import Engine
from tests.support.helpers import img2img, run
from tests.support.tiny_repos import make_settings


@pytest.mark.engine
def test_an_img2img_job_leaves_a_bf16_base_in_bf16(tiny_repos):
    engine = Engine(make_settings(tiny_repos, precision="bf16"))
    run(engine, img2img(steps=2))
    base = next(iter(engine.pipelines._bases.values()))
    for name in ("unet", "vae", "text_encoder"):
        assert getattr(base.pipe, name).dtype == torch.bfloat16, name
