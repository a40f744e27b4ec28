"""AUTOMATIC1111 bodies to our typed requests, and our results to A1111's response shape."""

from __future__ import annotations

import base64
import binascii
import dataclasses
import io
import json
from pathlib import PurePosixPath
from typing import Any

from PIL import Image

from api.schemas import GenerationResponse, Img2ImgBody, Txt2ImgBody
from engine.errors import InvalidRequest, ResourceError, WarningCode
from engine.interfaces import ImageServiceLike
from engine.limits import Limits
from engine.metadata.infotext import format_infotext
from engine.metadata.outputs import png_of, with_png
from engine.requests import (
    ControlNetRequest,
    ControlSpec,
    EngineWarning,
    GenerationRequest,
    GenerationResult,
    Img2ImgRequest,
    InpaintRequest,
    ResizeMode,
    Txt2ImgRequest,
)
from engine.settings import CHECKPOINTS_FOLDER

RESIZE_MODES = {0: ResizeMode.JUST_RESIZE, 1: ResizeMode.CROP_AND_RESIZE,
                2: ResizeMode.RESIZE_AND_FILL, 3: ResizeMode.JUST_RESIZE}
CONTROL_RESIZE = {"Just Resize": 0, "Crop and Resize": 1, "Resize and Fill": 2}
# A1111's ControlNet module names for what we call them.
CONTROL_MODULES = {"canny": "canny", "depth": "depth", "depth_dpt": "depth",
                   "depth_midas": "depth_midas", "lineart": "lineart",
                   "lineart_realistic": "lineart", "lineart_coarse": "lineart_coarse",
                   "softedge_hed": "softedge_hed", "hed": "softedge_hed",
                   "softedge_pidinet": "softedge_pidinet", "mlsd": "mlsd",
                   "shuffle": "shuffle"}
NO_PREPROCESSOR = ("none", "", None)


def decode_image(data: str, field: str, limits: Limits) -> Image.Image:
    """A base64 image (a data URL too); bombs and garbage become clear errors."""
    if not isinstance(data, str) or not data:
        raise InvalidRequest("missing_image", field=field)
    if data.startswith("data:") and "," in data:
        data = data.split(",", 1)[1]
    try:
        raw = base64.b64decode(data, validate=False)
        image = Image.open(io.BytesIO(raw))
        if image.width * image.height > limits.max_input_pixels:
            raise InvalidRequest("image_too_large", field=field, width=image.width,
                                 height=image.height, max_pixels=limits.max_input_pixels)
        image.load()
    except (binascii.Error, OSError, ValueError, SyntaxError, Image.DecompressionBombError):
        raise InvalidRequest("missing_image", field=field) from None
    return image


def _common(body: Txt2ImgBody, model: str) -> dict[str, Any]:
    return dict(
        model=str(body.override_settings.get("sd_model_checkpoint") or model),
        prompt=body.prompt, negative_prompt=body.negative_prompt,
        sampler=body.sampler_name or body.sampler_index,
        schedule=body.scheduler or "automatic", steps=body.steps,
        guidance=body.cfg_scale, seed=body.seed, width=body.width, height=body.height,
        batch_size=body.batch_size, batch_count=body.n_iter)


def _control_unit(body: Txt2ImgBody, limits: Limits) -> ControlSpec | None:
    script = body.alwayson_scripts.controlnet
    unit = next((u for u in (script.args if script else ()) if u.enabled), None)
    if unit is None:
        return None
    image = unit.image or unit.input_image
    if isinstance(image, dict):  # newer clients send {"image": b64, "mask": ...}
        image = image.get("image")
    module = str(unit.module)  # no module (None) gives "None", which names no control type
    return ControlSpec(
        model=unit.model or "", control_type=CONTROL_MODULES.get(module, module),
        image=decode_image(image, "control_image", limits) if image else None,
        weight=unit.weight, start=unit.guidance_start, end=unit.guidance_end,
        low_threshold=_threshold(unit.threshold_a, 100),
        high_threshold=_threshold(unit.threshold_b, 200),
        preprocess=unit.module not in NO_PREPROCESSOR)


def _threshold(value: Any, default: int) -> Any:
    """The extension sends -1 (or nothing) for "the module's default", and floats."""
    if value is None or value == -1:
        return default
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def to_request(body: Txt2ImgBody, model: str, limits: Limits) -> GenerationRequest:
    common = _common(body, model)
    control = _control_unit(body, limits)
    if isinstance(body, Img2ImgBody) and body.init_images:
        init = decode_image(body.init_images[0], "init_image", limits)
        fields: dict[str, Any] = dict(init_image=init, strength=body.denoising_strength,
                                      resize_mode=RESIZE_MODES.get(body.resize_mode,
                                                                   ResizeMode.JUST_RESIZE))
        if body.mask:
            return InpaintRequest(mask=decode_image(body.mask, "mask", limits),
                                  mask_blur=body.mask_blur,
                                  invert_mask=bool(body.inpainting_mask_invert),
                                  **fields, **common)
        return Img2ImgRequest(**fields, **common)
    if isinstance(body, Img2ImgBody):
        raise InvalidRequest("missing_image", field="init_image")
    if control is not None:
        return ControlNetRequest(control=control, **common)
    return Txt2ImgRequest(**common)


# A1111 fields we read but do not act on: said in ``info`` when a client set them.
UNSUPPORTED = ("enable_hr", "restore_faces", "tiling", "subseed_strength", "styles",
               "inpaint_full_res", "inpainting_fill")


def unsupported_fields(body: Txt2ImgBody) -> list[str]:
    names = [name for name in UNSUPPORTED if name in body.model_fields_set
             and getattr(body, name) not in (None, False, 0, [], "")]
    script = body.alwayson_scripts.controlnet
    if isinstance(body, Img2ImgBody) and script is not None and script.args:
        names.append("alwayson_scripts.controlnet")  # ControlNet runs with txt2img only
    return names


def _info(result: GenerationResult, body: Txt2ImgBody) -> str:
    first = result.images[0].parameters if result.images else {}
    infotexts = [format_infotext(item.parameters) for item in result.images]
    info: dict[str, Any] = {
        "prompt": body.prompt, "all_prompts": [body.prompt] * len(result.images),
        "negative_prompt": body.negative_prompt,
        "all_negative_prompts": [body.negative_prompt] * len(result.images),
        "seed": result.images[0].seed if result.images else body.seed,
        "all_seeds": [item.seed for item in result.images],
        "subseed": -1, "all_subseeds": [-1] * len(result.images),
        "width": first.get("width"), "height": first.get("height"),
        "sampler_name": first.get("sampler"), "cfg_scale": first.get("guidance"),
        "steps": first.get("steps"), "batch_size": body.batch_size,
        "sd_model_name": first.get("model"), "sd_model_hash": first.get("model_hash"),
        "denoising_strength": first.get("strength"), "extra_generation_params": {},
        "index_of_first_image": 0, "infotexts": infotexts, "styles": body.styles,
        "job_timestamp": "", "clip_skip": 1, "version": first.get("version"),
        "ignored_fields": body.ignored_fields() + unsupported_fields(body),
        "warnings": [warning.code for warning in result.warnings],
    }
    return json.dumps(info, ensure_ascii=False)


def local_model_row(name: str) -> dict:
    """A user's model in ``/sdapi/v1/sd-models``: its title is what options and
    ``override_settings`` accept; no path on the server shows (A1111 gives the full path)."""
    return {"title": name, "model_name": PurePosixPath(name).stem, "hash": None,
            "sha256": None, "filename": f"{CHECKPOINTS_FOLDER}/{name}", "config": None}


def saved_or_warned(service: ImageServiceLike, result: GenerationResult) -> GenerationResult:
    """Save as the client asked; a full or read-only disk must not cost it the images it
    waited for: they come back with ``save_failed`` among the ``info`` warnings (no path).
    The images come back with their PNG attached: the response sends the bytes just saved."""
    result = with_png(result)
    try:
        service.save(result)
    except ResourceError:  # logged where it happened
        return dataclasses.replace(
            result, warnings=result.warnings + (EngineWarning(WarningCode.SAVE_FAILED),))
    return result


def encode_png_image(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode("ascii")


def to_response(result: GenerationResult, body: Txt2ImgBody) -> GenerationResponse:
    images = []
    if body.send_images:
        images = [base64.b64encode(png_of(item)).decode("ascii") for item in result.images]
        if result.control_map is not None:
            images.append(encode_png_image(result.control_map))
    parameters = body.model_dump(exclude={"init_images", "mask"})
    return GenerationResponse(images=images, parameters=parameters, info=_info(result, body))
