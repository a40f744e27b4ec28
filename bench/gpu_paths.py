"""The two ways of making the same images that the GPU benchmark times against each other:
bare diffusers (eager, what a user of the library writes) and our engine (its real loading,
prompt encoding, denoising and decoding code), from the same model files.

Each run returns the images as one uint8 array, so the benchmark can check that both paths
made the same pictures for the same seed: a speed-up that changes the images is a bug.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image

from bench.real_size import BenchRepos

logger = logging.getLogger(__name__)

PROMPT = "浮岛，天空，白云，城堡，幻想世界"
NEGATIVE_PROMPT = "油画，模糊，雾蒙蒙"
GUIDANCE = 7.0
CONTROL_TYPE = "canny"
DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class Job:
    side: int
    batch: int
    dtype: str
    controlnet: bool
    steps: int
    seed: int = 1234

    @property
    def kind(self) -> str:
        return "controlnet" if self.controlnet else "plain"

    def seeds(self) -> list[int]:
        """One seed per image, as the engine numbers a batch."""
        return [self.seed + index for index in range(self.batch)]


@dataclass(frozen=True)
class Run:
    total_s: float  # the whole job: prompts, steps, decode, PIL images
    loop_steps_per_s: float  # guided steps per second inside the denoising loop
    images: np.ndarray  # (batch, height, width, 3) uint8


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


class StepClock:
    """Times the denoising loop from the end of its first step to the end of its last.

    It waits for the device only at those two steps, so the loop runs as it would untimed;
    the first step is left out because it carries one-off work (kernel selection, caches).
    """

    def __init__(self, device: torch.device, steps: int) -> None:
        self.device, self.steps = device, steps
        self.first_end: float | None = None
        self.last_end: float | None = None

    def step_done(self, step: int) -> None:
        """``step`` counts from 1."""
        if step not in (1, self.steps):
            return
        synchronize(self.device)
        now = time.perf_counter()
        if step == 1:
            self.first_end = now
        if step == self.steps:
            self.last_end = now

    def steps_per_s(self) -> float:
        if self.first_end is None or self.last_end is None or self.steps < 2:
            raise RuntimeError("the denoising loop was not timed: fewer than 2 steps ran")
        return (self.steps - 1) / (self.last_end - self.first_end)


def control_image(side: int) -> Image.Image:
    """A fixed, edge-rich control map (already a map: no preprocessing on either path)."""
    rng = np.random.default_rng(7)
    blocks = rng.integers(0, 2, (side // 8, side // 8), dtype=np.uint8) * 255
    pixels = np.repeat(np.repeat(blocks, 8, axis=0), 8, axis=1)
    return Image.fromarray(np.stack([pixels] * 3, axis=-1))


def _as_array(images: list[Image.Image]) -> np.ndarray:
    return np.stack([np.asarray(image.convert("RGB")) for image in images])


class BarePath:
    """diffusers as its documentation shows it: from_pretrained, .to(device), call."""

    label = "diffusers eager (SDPA)"

    def __init__(self, repos: BenchRepos, device: torch.device, dtype: str) -> None:
        from diffusers import (
            ControlNetModel,
            StableDiffusionControlNetPipeline,
            StableDiffusionPipeline,
        )

        torch_dtype = DTYPES[dtype]
        common: dict[str, Any] = {"dtype": torch_dtype, "safety_checker": None,
                                  "feature_extractor": None, "requires_safety_checker": False}
        self.device = device
        self.plain = StableDiffusionPipeline.from_pretrained(repos.base_folder, **common).to(device)
        controlnet = ControlNetModel.from_pretrained(repos.controlnet_folder, dtype=torch_dtype)
        # from_pipe shares the base's modules (diffusers' documented way to add a ControlNet).
        # Its dtype defaults to fp32 and casts those shared modules in place: name it.
        self.control = StableDiffusionControlNetPipeline.from_pipe(
            self.plain, controlnet=controlnet, dtype=torch_dtype).to(device)
        for pipe in (self.plain, self.control):
            pipe.set_progress_bar_config(disable=True)

    def modules(self) -> dict[str, Any]:
        return {"unet": self.plain.unet, "vae": self.plain.vae,
                "text_encoder": self.plain.text_encoder, "controlnet": self.control.controlnet}

    def seeds_for(self, job: Job) -> list[int]:
        return job.seeds()

    def run(self, job: Job) -> Run:
        clock = StepClock(self.device, job.steps)

        def on_step_end(pipeline: Any, step: int, timestep: Any, kwargs: dict) -> dict:
            clock.step_done(step + 1)
            return kwargs

        extra: dict[str, Any] = {}
        pipe = self.plain
        if job.controlnet:
            pipe = self.control
            extra["image"] = control_image(job.side)
        generators = [torch.Generator("cpu").manual_seed(s) for s in self.seeds_for(job)]
        synchronize(self.device)
        started = time.perf_counter()
        output = pipe(PROMPT, negative_prompt=NEGATIVE_PROMPT, height=job.side, width=job.side,
                      num_inference_steps=job.steps, guidance_scale=GUIDANCE,
                      num_images_per_prompt=job.batch, generator=generators,
                      callback_on_step_end=on_step_end, **extra)
        synchronize(self.device)
        total = time.perf_counter() - started
        return Run(total, clock.steps_per_s(), _as_array(output.images))


class EnginePath:
    """Our engine, through ``Engine.prepare`` and ``Engine.generate`` as the app calls it,
    a progress callback included (the app always passes one, for the live preview)."""

    def __init__(self, repos: BenchRepos, device: torch.device, dtype: str, scratch: Path,
                 settings_overrides: dict[str, Any], label: str,
                 compile_backend: str = "inductor") -> None:
        from engine.generate.engine import Engine
        from engine.settings import EngineSettings

        settings = EngineSettings(
            models_dir=scratch / "models", hub_cache_dir=repos.hub_cache, offline=True,
            device=device.type, precision=dtype, max_loaded_models=1,
            convert_downloads=False, **settings_overrides)
        self.label = label
        self.device = device
        self.repos = repos
        self.engine = Engine(settings)
        self.engine.pipelines.compile_watch.backend = compile_backend
        self.engine.load(repos.base_repo)

    def _request(self, job: Job) -> Any:
        from engine.requests import ControlNetRequest, ControlSpec, Txt2ImgRequest

        common: dict[str, Any] = {
            "model": self.repos.base_repo, "prompt": PROMPT, "negative_prompt": NEGATIVE_PROMPT,
            "steps": job.steps, "guidance": GUIDANCE, "seed": job.seed, "width": job.side,
            "height": job.side, "batch_size": job.batch}
        if not job.controlnet:
            return Txt2ImgRequest(**common)
        control = ControlSpec(model=self.repos.controlnet_repo, control_type=CONTROL_TYPE,
                              image=control_image(job.side), preprocess=False)
        return ControlNetRequest(**common, control=control)

    def run(self, job: Job) -> Run:
        prepared = self.engine.prepare(self._request(job))
        clock = StepClock(self.device, job.steps)
        synchronize(self.device)
        started = time.perf_counter()
        result = self.engine.generate(prepared, on_progress=lambda update: clock.step_done(
            update.step))
        synchronize(self.device)
        total = time.perf_counter() - started
        return Run(total, clock.steps_per_s(), _as_array([i.image for i in result.images]))
