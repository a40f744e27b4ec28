"""The parameters written into each image: built here only, by the engine and by test fakes alike.

A plain dict (JSON in the PNG, and the source of the A1111 infotext, see ``infotext.py``).
Torch-free.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.requests import (
    ControlNetRequest,
    GenerationRequest,
    Img2ImgRequest,
    InpaintRequest,
    PreparedRequest,
    PromptInfo,
)


def image_parameters(prepared: PreparedRequest, *, model: str, seed: int, width: int,
                     height: int, prompt_info: PromptInfo, precision: str, version: str,
                     model_hash: str | None = None,
                     lora_hashes: Mapping[str, str] | None = None,
                     step_cache: int = 0) -> dict[str, Any]:
    """One image's parameters. The prompt is the one the user wrote, ``<lora:...>`` tags
    included (as A1111 writes it); ``loras`` lists every LoRA applied, tags and field alike.
    ``step_cache`` is the step cache's interval, present only when the cache ran (it changes
    the image, so reproducing it needs the same)."""
    request = prepared.request
    hashes = lora_hashes or {}
    parameters = {
        "mode": request.kind.value, "model": model,
        "prompt": prepared.written_prompt, "negative_prompt": request.negative_prompt,
        "sampler": request.sampler, "schedule": request.schedule, "steps": request.steps,
        "guidance": float(request.guidance), "seed": seed, "width": width,
        "height": height, "batch_size": request.batch_size,
        "batch_count": request.batch_count,
        "model_hash": model_hash,
        "loras": [{"name": lora.name, "weight": float(lora.weight),
                   "hash": hashes.get(lora.name)} for lora in request.loras],
        "prompt_tokens": prompt_info.tokens,
        "context_length": prompt_info.context_length,
        "precision": precision, "version": version,
    }
    if step_cache:
        parameters["step_cache"] = step_cache
    parameters.update(mode_parameters(request))
    return parameters


def mode_parameters(request: GenerationRequest) -> dict[str, Any]:
    """What an image's parameters say about its job kind: strength, mask, control unit."""
    parameters: dict[str, Any] = {}
    if isinstance(request, Img2ImgRequest):
        parameters.update(strength=float(request.strength),
                          resize_mode=request.resize_mode.value)
    if isinstance(request, InpaintRequest):
        parameters.update(mask_blur=request.mask_blur, invert_mask=request.invert_mask)
    if isinstance(request, ControlNetRequest):
        control = request.control
        parameters["control"] = {
            "model": control.model, "type": control.control_type,
            "weight": float(control.weight), "start": float(control.start),
            "end": float(control.end), "low_threshold": control.low_threshold,
            "high_threshold": control.high_threshold, "preprocess": control.preprocess}
    return parameters
