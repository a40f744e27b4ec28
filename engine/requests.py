"""One typed request per job kind, and the results the engine gives back.

These types import neither torch nor gradio: the UI and the HTTP API build them, the engine
validates them in one place (``engine.validation``) and runs them.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from engine.errors import WarningCode, registered
from engine.samplers import DEFAULT_SAMPLER, DEFAULT_SCHEDULE


class JobKind(str, enum.Enum):
    TXT2IMG = "txt2img"
    IMG2IMG = "img2img"
    INPAINT = "inpaint"
    CONTROLNET = "controlnet"


class ResizeMode(str, enum.Enum):
    JUST_RESIZE = "just_resize"
    CROP_AND_RESIZE = "crop_and_resize"
    RESIZE_AND_FILL = "resize_and_fill"


@dataclass(frozen=True)
class LoraWeight:
    """A LoRA by manifest id, hub id, file path or name in the LoRA folder, and its strength."""

    name: str
    weight: float = 1.0


@dataclass(frozen=True, kw_only=True)
class GenerationRequest:
    """What every job kind shares. ``width``/``height`` of None mean the model's default size."""

    model: str
    prompt: str
    negative_prompt: str = ""
    sampler: str = DEFAULT_SAMPLER
    schedule: str = DEFAULT_SCHEDULE
    steps: int = 20
    guidance: float = 7.0
    seed: int = -1
    width: int | None = None
    height: int | None = None
    batch_size: int = 1
    batch_count: int = 1
    loras: tuple[LoraWeight, ...] = ()

    kind = JobKind.TXT2IMG


@dataclass(frozen=True, kw_only=True)
class Txt2ImgRequest(GenerationRequest):
    kind = JobKind.TXT2IMG


@dataclass(frozen=True, kw_only=True)
class Img2ImgRequest(GenerationRequest):
    """Size defaults to the init image's size (rounded down to a multiple of 8).

    An image of None is a missing one (the validator refuses it) or one a job record dropped.
    """

    init_image: Image.Image | None
    strength: float = 0.75
    resize_mode: ResizeMode = ResizeMode.JUST_RESIZE

    kind = JobKind.IMG2IMG


@dataclass(frozen=True, kw_only=True)
class InpaintRequest(Img2ImgRequest):
    """White in ``mask`` is repainted, black is kept."""

    mask: Image.Image | None  # None as for init_image
    mask_blur: int = 4
    invert_mask: bool = False

    kind = JobKind.INPAINT


@dataclass(frozen=True, kw_only=True)
class ControlSpec:
    """One ControlNet unit. ``preprocess=False`` means ``image`` already is the control map."""

    model: str
    control_type: str
    image: Image.Image | None  # None as for Img2ImgRequest.init_image
    weight: float = 1.0
    start: float = 0.0
    end: float = 1.0
    low_threshold: int = 100
    high_threshold: int = 200
    preprocess: bool = True


@dataclass(frozen=True, kw_only=True)
class ControlNetRequest(GenerationRequest):
    control: ControlSpec

    kind = JobKind.CONTROLNET


@dataclass(frozen=True)
class PreparedRequest:
    """A request as ``engine.validation.prepare_request`` leaves it, the one shape that is queued
    and run: canonical sampler names, the prompt's ``<lora:...>`` tags moved into ``loras``
    (and out of the prompt text), validated. Only that function builds one, so the engine runs
    it without preparing or validating again.

    ``written_prompt`` is the prompt as the user wrote it, tags included: what the image's
    parameters show, as A1111 writes them.
    """

    request: GenerationRequest
    written_prompt: str


@dataclass(frozen=True)
class EngineWarning:
    """Something the user should know that did not stop the job (translated like errors)."""

    code: WarningCode
    params: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        # Frozen: set through object; an unregistered code fails here, not in the UI later.
        object.__setattr__(self, "code", registered(WarningCode, self.code))


@dataclass(frozen=True)
class GeneratedImage:
    image: Image.Image
    seed: int
    parameters: dict[str, Any]
    # The image as a PNG file with its infotext, once ``engine.metadata.outputs.with_png`` has
    # encoded it: saving it and showing or sending it then share one encoding.
    png: bytes | None = field(default=None, repr=False, compare=False)


@dataclass(frozen=True)
class PromptInfo:
    """Token counts against the model's context, for the UI's counter."""

    tokens: int
    context_length: int
    chunks: int


@dataclass(frozen=True)
class GenerationResult:
    images: tuple[GeneratedImage, ...]
    control_map: Image.Image | None
    warnings: tuple[EngineWarning, ...]
    prompt_info: PromptInfo
    negative_prompt_info: PromptInfo
    duration_s: float


PHASE_COMPILING = "compiling"


@dataclass(frozen=True)
class ProgressUpdate:
    """Sent after every denoising step; ``batch_index`` counts batches (``batch_count``).

    ``preview`` is a rough picture of the first image so far (a linear projection of the
    latents, milliseconds to make), when the engine has one. ``phase`` is "" while denoising,
    ``PHASE_COMPILING`` while torch.compile works inside a step (the first job after a load
    with compiling on: seconds to minutes, so the UI and the API say why no step comes).
    """

    step: int
    total_steps: int
    batch_index: int
    batch_count: int
    preview: Image.Image | None = None
    phase: str = ""
