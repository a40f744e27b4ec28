"""Request bodies in AUTOMATIC1111's field names and defaults. Unknown fields are accepted and
ignored (clients post whole dumps); which ones were ignored is said in ``info``."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class _Lenient(BaseModel):
    # NaN and infinity parse as JSON in Python; no field of ours means them.
    model_config = ConfigDict(extra="allow", allow_inf_nan=False)

    def ignored_fields(self) -> list[str]:
        return sorted(self.model_extra or {})


class ControlNetUnit(_Lenient):
    """One unit of the ControlNet extension's ``args``, typed so that a wrong shape is a 422
    naming the field (the extension's other fields are accepted and ignored)."""

    enabled: bool = True
    image: str | dict[str, Any] | None = None  # newer clients: {"image": b64, "mask": ...}
    input_image: str | None = None
    module: str | None = None
    model: str | None = None
    weight: float = 1.0
    guidance_start: float = 0.0
    guidance_end: float = 1.0
    threshold_a: float | None = None
    threshold_b: float | None = None


class ControlNetScript(_Lenient):
    args: list[ControlNetUnit] = Field(default_factory=list)


class AlwaysOnScripts(_Lenient):
    """Only ControlNet runs; other scripts are accepted and ignored, whatever their shape."""

    controlnet: ControlNetScript | None = None


class Txt2ImgBody(_Lenient):
    prompt: str = ""
    negative_prompt: str = ""
    styles: list[str] = Field(default_factory=list)
    seed: int = -1
    subseed: int = -1
    subseed_strength: float = 0
    sampler_name: str | None = None
    scheduler: str | None = None
    sampler_index: str = "Euler"
    batch_size: int = 1
    n_iter: int = 1
    steps: int = 50
    cfg_scale: float = 7.0
    width: int = 512
    height: int = 512
    restore_faces: bool | None = None
    tiling: bool | None = None
    denoising_strength: float | None = 0.75
    override_settings: dict[str, Any] = Field(default_factory=dict)
    override_settings_restore_afterwards: bool = True
    enable_hr: bool = False
    send_images: bool = True
    save_images: bool = False
    alwayson_scripts: AlwaysOnScripts = Field(default_factory=AlwaysOnScripts)


class Img2ImgBody(Txt2ImgBody):
    init_images: list[str] = Field(default_factory=list)
    resize_mode: int = 0
    mask: str | None = None
    mask_blur: int = 4
    inpainting_fill: int = 0
    inpaint_full_res: bool = True
    inpaint_full_res_padding: int = 0
    inpainting_mask_invert: int = 0
    include_init_images: bool = False


class OptionsBody(_Lenient):
    sd_model_checkpoint: str | None = None


class PngInfoBody(BaseModel):
    image: str


class DetectBody(_Lenient):
    """The ControlNet extension's /controlnet/detect."""

    controlnet_module: str = "none"
    controlnet_input_images: list[str] = Field(default_factory=list)
    controlnet_processor_res: int = 512
    controlnet_threshold_a: float = 100
    controlnet_threshold_b: float = 200


class JobBody(Img2ImgBody):
    """``/sdapi/v2/jobs``: a txt2img or img2img body plus which one it is."""

    type: Literal["txt2img", "img2img"] = "txt2img"


class GenerationResponse(BaseModel):
    images: list[str]
    parameters: dict[str, Any]
    info: str


class JobCreated(BaseModel):
    id: str
    token: str


class JobStatusResponse(BaseModel):
    id: str
    state: str
    position: int
    progress: float
    eta_relative: float | None
    preview: str | None = None  # base64 PNG of the first image so far, while running
    result: GenerationResponse | None = None
    error: str | None = None
    detail: str | None = None
