"""The widgets every generation tab shows: prompts, sampling parameters and results."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr
from gradio import processing_utils
from PIL import Image

from engine.limits import Limits
from engine.metadata.infotext import format_infotext
from engine.requests import GeneratedImage, GenerationResult
from engine.samplers import ALL_SCHEDULES, SAMPLERS, SCHEDULE_LABELS
from engine.store.manifest import Recommended
from ui.texts import Texts

logger = logging.getLogger(__name__)

PREVIEW_SECONDS = 0.5
GALLERY_FILE_NAME = "image.png"  # the name Gradio gives a gallery image it encodes
RANDOM_SEED = -1


@dataclass(frozen=True)
class PromptWidgets:
    prompt: Any
    negative: Any
    prompt_tokens: Any
    negative_tokens: Any


@dataclass(frozen=True)
class ParameterWidgets:
    sampler: Any
    schedule: Any
    steps: Any
    guidance: Any
    width: Any
    height: Any
    seed: Any
    random_seed: Any
    reuse_seed: Any
    batch_count: Any
    batch_size: Any

    def inputs(self) -> set[Any]:
        return {self.sampler, self.schedule, self.steps, self.guidance, self.width, self.height,
                self.seed, self.batch_count, self.batch_size}


@dataclass(frozen=True)
class ResultWidgets:
    gallery: Any
    info: Any
    seeds: Any  # gr.State: the seeds of the last results, for ♻
    preview: Any  # 实时过程预览: the running job's first image, roughly
    preview_timer: Any

    def showing(self, result: GenerationResult, texts: Texts) -> dict[Any, Any]:
        """The gallery (each image captioned with its seed), the first image's infotext, and
        the seeds (for ♻), by the widget each goes to."""
        gallery = [(self._picture(item), texts("common.seed_caption", seed=item.seed))
                   for item in result.images]
        info = format_infotext(result.images[0].parameters) if result.images else ""
        return {self.gallery: gallery, self.info: info,
                self.seeds: [item.seed for item in result.images]}

    def _picture(self, item: GeneratedImage) -> str | Image.Image:
        """The PNG the job runner encoded (and saved), written into Gradio's cache where
        Gradio would have put its own encoding of the image: the gallery then serves it as it
        is, infotext included, with no second encoding (35 ms for 512x512 here). The cache's
        folder is named by a keyed hash of the content, as for any gallery image, so only
        whoever was sent the path can fetch it. Without a PNG, the image for Gradio to encode."""
        if item.png is None:
            return item.image
        return processing_utils.save_bytes_to_cache(item.png, GALLERY_FILE_NAME,
                                                    self.gallery.GRADIO_CACHE)


def prompt_widgets(texts: Texts, limits: Limits, elem_prefix: str) -> PromptWidgets:
    with gr.Column(scale=4):
        prompt = texts.make(gr.Textbox, label="common.prompt", placeholder="common.prompt_hint",
                            lines=3, max_length=limits.max_prompt_chars,
                            elem_id=f"{elem_prefix}-prompt")
        prompt_tokens = gr.Markdown("", elem_id=f"{elem_prefix}-prompt-tokens")
        negative = texts.make(gr.Textbox, label="common.negative_prompt", lines=2,
                              max_length=limits.max_prompt_chars,
                              elem_id=f"{elem_prefix}-negative")
        negative_tokens = gr.Markdown("", elem_id=f"{elem_prefix}-negative-tokens")
    return PromptWidgets(prompt, negative, prompt_tokens, negative_tokens)


def _schedule_choices(language: str) -> list[tuple[str, str]]:
    """Schedule names stay as users know them (Karras, ...); only "automatic" is translated."""
    from locales import translate

    return [(translate(language, "common.schedule_automatic") if s == "automatic"
             else SCHEDULE_LABELS[s], s) for s in ALL_SCHEDULES]


def parameter_widgets(texts: Texts, limits: Limits, default_sampler: str,
                      size: tuple[int, int], elem_prefix: str,
                      recommended: Recommended | None = None) -> ParameterWidgets:
    """The sampling widgets; ``recommended`` (a manifest entry's) sets the schedule, steps and
    guidance they start at, where it names them."""
    recommended = recommended or Recommended()
    with gr.Row():
        sampler = texts.make(gr.Dropdown, label="common.sampler", choices=list(SAMPLERS),
                             value=default_sampler, elem_id=f"{elem_prefix}-sampler")
        schedule = texts.make(gr.Dropdown, label="common.schedule",
                              choices=_schedule_choices(texts.language),
                              value=(recommended.schedule
                                     if recommended.schedule in ALL_SCHEDULES else "automatic"),
                              elem_id=f"{elem_prefix}-schedule")
        texts.bind(schedule, choices=_schedule_choices)
    steps = texts.make(gr.Slider, label="common.steps", minimum=limits.min_steps,
                       maximum=limits.max_steps, step=1, value=recommended.steps or 20,
                       elem_id=f"{elem_prefix}-steps")
    guidance = texts.make(gr.Slider, label="common.guidance", minimum=limits.min_guidance,
                          maximum=limits.max_guidance, step=0.5,
                          value=7.0 if recommended.guidance is None else recommended.guidance,
                          elem_id=f"{elem_prefix}-guidance")
    with gr.Row():
        width = texts.make(gr.Slider, label="common.width", minimum=limits.min_size,
                           maximum=limits.max_size, step=limits.size_step, value=size[0],
                           elem_id=f"{elem_prefix}-width")
        height = texts.make(gr.Slider, label="common.height", minimum=limits.min_size,
                            maximum=limits.max_size, step=limits.size_step, value=size[1],
                            elem_id=f"{elem_prefix}-height")
    with gr.Row(equal_height=True):
        seed = texts.make(gr.Number, label="common.seed", value=RANDOM_SEED, precision=0,
                          minimum=RANDOM_SEED, maximum=limits.max_seed, scale=4,
                          elem_id=f"{elem_prefix}-seed")
        random_seed = gr.Button("🎲", scale=0, min_width=48, elem_id=f"{elem_prefix}-random")
        reuse_seed = gr.Button("♻", scale=0, min_width=48, elem_id=f"{elem_prefix}-reuse")
    with gr.Row():
        batch_count = texts.make(gr.Slider, label="common.batch_count", minimum=1,
                                 maximum=limits.max_batch_count, step=1, value=1)
        batch_size = texts.make(gr.Slider, label="common.batch_size", minimum=1,
                                maximum=limits.max_batch_size, step=1, value=1)
    return ParameterWidgets(sampler, schedule, steps, guidance, width, height, seed,
                            random_seed, reuse_seed, batch_count, batch_size)


def result_widgets(texts: Texts, elem_prefix: str) -> ResultWidgets:
    gallery = texts.make(gr.Gallery, label="common.results", columns=2, height=480,
                         format="png", type="pil", object_fit="contain", interactive=False,
                         elem_id=f"{elem_prefix}-gallery")
    info = texts.make(gr.Textbox, label="common.generation_info", lines=4, interactive=False,
                      elem_id=f"{elem_prefix}-info")
    preview = texts.make(gr.Image, label="common.live_preview", interactive=False, height=160,
                         format="png", elem_id=f"{elem_prefix}-live-preview")
    return ResultWidgets(gallery, info, gr.State([]), preview,
                         gr.Timer(PREVIEW_SECONDS, active=False))
