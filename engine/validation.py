"""The one place where a request is prepared and checked against the ``Limits``.

``prepare_request`` is the one request path: it canonicalises a request, validates it once and
returns the ``PreparedRequest`` that is queued and run. Each failure raises ``InvalidRequest``
with a stable code and the offending value, before any model is touched, so a bad request costs
nothing and changes nothing.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable
from typing import Any

from PIL import Image

from engine.errors import InvalidRequest, ModelError
from engine.limits import Limits
from engine.prompt_syntax import split_lora_tags
from engine.requests import (
    ControlNetRequest,
    ControlSpec,
    GenerationRequest,
    Img2ImgRequest,
    InpaintRequest,
    LoraWeight,
    PreparedRequest,
    ResizeMode,
)
from engine.samplers import SAMPLERS, find_sampler, find_schedule


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return (_is_int(value) or isinstance(value, float)) and math.isfinite(value)


def _check_int(code: str, value: Any, low: int, high: int) -> None:
    if not _is_int(value) or not low <= value <= high:
        raise InvalidRequest(code, value=repr(value), min=low, max=high)


def _check_number(code: str, value: Any, low: float, high: float) -> None:
    if not _is_number(value) or not low <= value <= high:
        raise InvalidRequest(code, value=repr(value), min=low, max=high)


def check_prompt_text(field: str, text: Any, limits: Limits) -> None:
    if not isinstance(text, str):
        raise InvalidRequest("invalid_prompt", field=field)
    if len(text) > limits.max_prompt_chars:
        raise InvalidRequest("prompt_too_long", field=field, length=len(text),
                             max=limits.max_prompt_chars)
    try:
        text.encode("utf-8")  # lone surrogates (half an emoji) cannot be tokenized
    except UnicodeEncodeError:
        raise InvalidRequest("prompt_invalid_characters", field=field) from None
    if "\x00" in text:
        raise InvalidRequest("prompt_invalid_characters", field=field)


def _check_size(value: Any, limits: Limits) -> None:
    if value is None:
        return
    if (not _is_int(value) or not limits.min_size <= value <= limits.max_size
            or value % limits.size_step):
        raise InvalidRequest("invalid_size", value=repr(value), min=limits.min_size,
                             max=limits.max_size, step=limits.size_step)


def check_input_image(field: str, image: Any, limits: Limits) -> None:
    """Refuse what cannot be an input image: not decoded, tiny, huge or extremely thin."""
    if not isinstance(image, Image.Image):
        raise InvalidRequest("missing_image", field=field)
    width, height = image.size
    if min(width, height) < limits.min_input_side:
        raise InvalidRequest("image_too_small", field=field, width=width, height=height,
                             min=limits.min_input_side)
    if width * height > limits.max_input_pixels:
        raise InvalidRequest("image_too_large", field=field, width=width, height=height,
                             max_pixels=limits.max_input_pixels)
    if max(width, height) / min(width, height) > limits.max_input_aspect:
        raise InvalidRequest("image_aspect_extreme", field=field, width=width, height=height)


def _check_sampling(request: GenerationRequest, limits: Limits) -> None:
    sampler = SAMPLERS.get(request.sampler) if isinstance(request.sampler, str) else None
    if sampler is None:
        raise InvalidRequest("unknown_sampler", name=str(request.sampler),
                             known=", ".join(SAMPLERS))
    if not isinstance(request.schedule, str) or find_schedule(request.schedule) is None:
        raise InvalidRequest("unknown_schedule", name=str(request.schedule))
    if find_schedule(request.schedule) not in sampler.schedules:
        raise InvalidRequest("schedule_not_supported", sampler=sampler.name,
                             schedule=request.schedule)
    _check_int("invalid_steps", request.steps, limits.min_steps, limits.max_steps)
    _check_number("invalid_guidance", request.guidance, limits.min_guidance, limits.max_guidance)
    if not _is_int(request.seed) or not (request.seed == -1
                                         or 0 <= request.seed <= limits.max_seed):
        raise InvalidRequest("invalid_seed", value=repr(request.seed), max=limits.max_seed)


def _check_batch(request: GenerationRequest, limits: Limits) -> None:
    _check_size(request.width, limits)
    _check_size(request.height, limits)
    _check_int("invalid_batch_size", request.batch_size, 1, limits.max_batch_size)
    _check_int("invalid_batch_count", request.batch_count, 1, limits.max_batch_count)
    if request.width and request.height:
        if request.width * request.height > limits.pixels_per_image(request.batch_size):
            raise InvalidRequest("too_many_pixels", width=request.width, height=request.height,
                                 batch_size=request.batch_size, max_pixels=limits.max_batch_pixels)


def _check_loras(request: GenerationRequest, limits: Limits,
                 lora_exists: Callable[[str], bool] | None) -> None:
    if len(request.loras) > limits.max_loras:
        raise InvalidRequest("too_many_loras", count=len(request.loras), max=limits.max_loras)
    for lora in request.loras:
        if not isinstance(lora.name, str) or not lora.name.strip():
            raise InvalidRequest("unknown_lora", name=repr(lora.name))
        _check_number("invalid_lora_weight", lora.weight, limits.min_lora_weight,
                      limits.max_lora_weight)
        if lora_exists is not None and not lora_exists(lora.name):
            raise ModelError("unknown_lora", name=lora.name)


def _check_img2img(request: Img2ImgRequest, limits: Limits) -> None:
    check_input_image("init_image", request.init_image, limits)
    _check_number("invalid_strength", request.strength, limits.min_strength, limits.max_strength)
    if not isinstance(request.resize_mode, ResizeMode):
        raise InvalidRequest("invalid_resize_mode", value=repr(request.resize_mode))
    if isinstance(request, InpaintRequest):
        check_input_image("mask", request.mask, limits)
        _check_int("invalid_mask_blur", request.mask_blur, 0, limits.max_mask_blur)


def validate_control(control: Any, limits: Limits, control_types: tuple[str, ...]) -> None:
    if not isinstance(control, ControlSpec) or control.image is None:
        raise InvalidRequest("missing_control_image")
    check_input_image("control_image", control.image, limits)
    if not isinstance(control.model, str) or not control.model.strip():
        raise InvalidRequest("missing_controlnet")
    if control.preprocess and control.control_type not in control_types:
        raise InvalidRequest("unknown_control_type", name=str(control.control_type),
                             known=", ".join(control_types))
    _check_number("invalid_control_weight", control.weight, limits.min_control_weight,
                  limits.max_control_weight)
    if not (_is_number(control.start) and _is_number(control.end)
            and 0.0 <= control.start < control.end <= 1.0):
        raise InvalidRequest("invalid_control_range", start=repr(control.start),
                             end=repr(control.end))
    top = limits.max_canny_threshold
    if not (_is_int(control.low_threshold) and _is_int(control.high_threshold)
            and 0 <= control.low_threshold <= control.high_threshold <= top):
        raise InvalidRequest("invalid_canny_thresholds", low=repr(control.low_threshold),
                             high=repr(control.high_threshold), max=top)


def validate_request(request: GenerationRequest, limits: Limits, *,
                     control_types: tuple[str, ...] = (),
                     lora_exists: Callable[[str], bool] | None = None) -> None:
    """Raise ``InvalidRequest`` (or ``ModelError`` for an unknown LoRA) on the first problem."""
    if not isinstance(request, GenerationRequest):
        raise InvalidRequest("invalid_request")
    if not isinstance(request.model, str) or not request.model.strip():
        raise InvalidRequest("missing_model")
    check_prompt_text("prompt", request.prompt, limits)
    check_prompt_text("negative_prompt", request.negative_prompt, limits)
    _check_sampling(request, limits)
    _check_batch(request, limits)
    _check_loras(request, limits, lora_exists)
    if isinstance(request, Img2ImgRequest):
        _check_img2img(request, limits)
    if isinstance(request, ControlNetRequest):
        validate_control(request.control, limits, control_types)


def normalise_sampler(sampler: str, schedule: str) -> tuple[str, str]:
    """Canonical names for aliases and legacy combined names ('DPM++ 2M Karras').

    Unknown names are returned unchanged for the validator to reject with their own text.
    """
    from engine.samplers import split_legacy_sampler_name

    name, legacy_schedule = split_legacy_sampler_name(sampler) if isinstance(sampler, str) \
        else (sampler, None)
    spec = find_sampler(name) if isinstance(name, str) else None
    canonical_schedule = find_schedule(schedule) if isinstance(schedule, str) else None
    if legacy_schedule and canonical_schedule in (None, "automatic"):
        canonical_schedule = legacy_schedule
    return (spec.name if spec else sampler), (canonical_schedule or schedule)


def canonical_request(request: GenerationRequest, limits: Limits) -> GenerationRequest:
    """Canonical sampler names, and the prompt's ``<lora:name:w>`` tags moved into ``loras``.

    Idempotent: the tags leave the prompt text, so a second pass finds none; a tag already in
    ``loras`` (same name and weight) is not added twice. A prompt too long to accept is left
    as it is, unparsed, for the validator to refuse.
    """
    sampler, schedule = normalise_sampler(request.sampler, request.schedule)
    prompt, loras = request.prompt, tuple(request.loras)
    if isinstance(prompt, str) and len(prompt) <= limits.max_prompt_chars:
        prompt, tags = split_lora_tags(prompt)
        for tag in tags:
            lora = LoraWeight(tag.name, tag.weight)
            if lora not in loras:
                loras += (lora,)
    return dataclasses.replace(request, sampler=sampler, schedule=schedule, prompt=prompt,
                               loras=loras)


def prepare_request(request: GenerationRequest | PreparedRequest, limits: Limits, *,
                    control_types: tuple[str, ...] = (),
                    lora_exists: Callable[[str], bool] | None = None) -> PreparedRequest:
    """The request as it is queued and run: canonical (``canonical_request``) and validated.

    The one way to a ``PreparedRequest``; preparing one again gives an equal one.
    """
    if isinstance(request, PreparedRequest):
        written, request = request.written_prompt, request.request
    else:
        written = request.prompt
    if not isinstance(request, GenerationRequest):
        raise InvalidRequest("invalid_request")
    prepared = canonical_request(request, limits)
    validate_request(prepared, limits, control_types=control_types, lora_exists=lora_exists)
    return PreparedRequest(prepared, written)
