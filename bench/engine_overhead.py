"""``engine_overhead_ratio``: the engine's txt2img over a bare diffusers call doing the same work.

The bare side is a ``StableDiffusionPipeline`` made from the very modules the engine loaded
(text encoder, tokenizer, UNet, VAE: the same tensors), with a scheduler of the same class and
config the engine built for the job, the same prompts, size, steps, guidance and seed. It
encodes the prompts itself (``prompt=``): for a short prompt the engine's chunked encoding
gives bit-identical embeddings, so both sides do the same work and the images must match; they
are compared once per run, and a difference stops the benchmark.

Included in the engine side and not in the bare one: the request's preparation (``prepare``),
the pipeline lock, picking the base and the scheduler, prompt parsing, the progress callback
(with no listener), its own VAE decode and the infotext. Neither side saves files.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

from bench.context import NEGATIVE_PROMPT, PROMPT, SEED, BenchContext
from bench.measure import interleaved
from bench.report import Figure

logger = logging.getLogger(__name__)

GOAL_AT_MOST = 1.05


class ImagesDiffer(AssertionError):
    """The engine and the bare pipeline made different images: the comparison is not fair."""


def txt2img_request(context: BenchContext, seed: int = SEED):
    from engine.requests import Txt2ImgRequest

    plan = context.plan
    return Txt2ImgRequest(model=context.base_id, prompt=PROMPT, negative_prompt=NEGATIVE_PROMPT,
                          steps=plan.steps, seed=seed, width=plan.side, height=plan.side)


def bare_pipeline(context: BenchContext):
    """A diffusers pipeline over the engine's loaded modules and the scheduler it last built."""
    from diffusers import StableDiffusionPipeline

    loaded = context.engine.pipelines.base(context.base_id).pipe
    # Any: diffusers sets a pipeline's modules at run time (register_modules).
    bare: Any = StableDiffusionPipeline(**loaded.components)
    bare.set_progress_bar_config(disable=True)
    scheduler = loaded.scheduler
    bare.scheduler = type(scheduler).from_config(scheduler.config)
    return bare


def bare_call(bare: Any, request: Any, seed: int):
    import torch

    return bare(prompt=request.prompt, negative_prompt=request.negative_prompt,
                num_inference_steps=request.steps, guidance_scale=float(request.guidance),
                width=request.width, height=request.height,
                generator=torch.Generator("cpu").manual_seed(seed)).images[0]


def check_same_image(context: BenchContext, bare_seed: int = SEED) -> None:
    """Raise ``ImagesDiffer`` unless the engine and the bare pipeline (seeded with
    ``bare_seed``) make the same pixels."""
    engine = context.engine
    request = txt2img_request(context)
    engine_image = engine.generate(engine.prepare(request)).images[0].image
    bare_image = bare_call(bare_pipeline(context), request, bare_seed)
    engine_pixels = np.asarray(engine_image, dtype=np.int16)
    bare_pixels = np.asarray(bare_image, dtype=np.int16)
    if engine_pixels.shape != bare_pixels.shape or (engine_pixels != bare_pixels).any():
        difference = (int(np.abs(engine_pixels - bare_pixels).max())
                      if engine_pixels.shape == bare_pixels.shape else "shape")
        raise ImagesDiffer(f"engine and bare diffusers images differ (max pixel difference "
                           f"{difference}): the overhead ratio would compare unlike work")


def measure(context: BenchContext, bare_seed: int = SEED) -> list[Figure]:
    check_same_image(context, bare_seed)
    engine = context.engine
    request = txt2img_request(context)
    prepared_once = engine.prepare(request)  # only to build the bare side's scheduler below
    engine.generate(prepared_once)
    bare = bare_pipeline(context)
    timings = interleaved({
        "engine": lambda: engine.generate(engine.prepare(request)),
        "bare": lambda: bare_call(bare, request, bare_seed),
    }, context.plan.repeats)
    ratio = timings.ratio("engine", "bare")
    logger.info("engine %.3f s, bare diffusers %.3f s", timings.median("engine"),
                timings.median("bare"))
    note = (f"engine vs bare diffusers: {timings.describe('engine', 'bare')}; "
            f"{context.plan.steps} steps, {context.plan.side}px; identical images asserted")
    return [Figure("engine_overhead_ratio", ratio, "ratio", GOAL_AT_MOST, note)]
