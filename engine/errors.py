"""Errors with stable codes.

The UI, the HTTP API and the command line turn ``code`` and ``params`` into translated text
(``locales/<lang>.yaml``, key ``errors.<code>``); the user never sees a traceback or a path.

Every code is registered here (``ErrorCode``, ``WarningCode``), so the locale test can check
that each one has a text in every language, and that no text is left without its code. An
error built with an unregistered code fails at once (``UnregisteredCode``), not later as a
raw key shown to the user.
"""

from __future__ import annotations

import enum
from typing import Any, TypeVar


class ErrorCode(enum.StrEnum):
    """Every error code: str-valued, so JSON answers and ``error.code == "unknown_model"``
    keep working. The text is ``errors.<value>`` in each locale. (The request guard's
    refusals are ``api.guard.GuardCode``, texts ``errors.guard_<value>``.)"""

    # A request breaks a limit, or cannot be read.
    IMAGE_ASPECT_EXTREME = "image_aspect_extreme"
    IMAGE_TOO_LARGE = "image_too_large"
    IMAGE_TOO_SMALL = "image_too_small"
    IMAGE_UNREADABLE = "image_unreadable"
    INVALID_BATCH_COUNT = "invalid_batch_count"
    INVALID_BATCH_SIZE = "invalid_batch_size"
    INVALID_BODY = "invalid_body"
    INVALID_CANNY_THRESHOLDS = "invalid_canny_thresholds"
    INVALID_CONTROL_RANGE = "invalid_control_range"
    INVALID_CONTROL_WEIGHT = "invalid_control_weight"
    INVALID_GUIDANCE = "invalid_guidance"
    INVALID_LORA_WEIGHT = "invalid_lora_weight"
    INVALID_MASK_BLUR = "invalid_mask_blur"
    INVALID_PROMPT = "invalid_prompt"
    INVALID_REQUEST = "invalid_request"
    INVALID_RESIZE_MODE = "invalid_resize_mode"
    INVALID_RESOLUTION = "invalid_resolution"
    INVALID_SEED = "invalid_seed"
    INVALID_SIZE = "invalid_size"
    INVALID_STEPS = "invalid_steps"
    INVALID_STRENGTH = "invalid_strength"
    MISSING_CONTROL_IMAGE = "missing_control_image"
    MISSING_CONTROLNET = "missing_controlnet"
    MISSING_IMAGE = "missing_image"
    MISSING_MODEL = "missing_model"
    PROMPT_INVALID_CHARACTERS = "prompt_invalid_characters"
    PROMPT_TOO_LONG = "prompt_too_long"
    SCHEDULE_NOT_SUPPORTED = "schedule_not_supported"
    TOO_MANY_LORAS = "too_many_loras"
    TOO_MANY_PIXELS = "too_many_pixels"
    UNKNOWN_CONTROL_TYPE = "unknown_control_type"
    UNKNOWN_PREPROCESSOR = "unknown_preprocessor"
    UNKNOWN_SAMPLER = "unknown_sampler"
    UNKNOWN_SCHEDULE = "unknown_schedule"
    # Settings and download sources.
    ENDPOINT_UNRESOLVED = "endpoint_unresolved"
    INVALID_ENDPOINT = "invalid_endpoint"
    INVALID_SPEED_SETTING = "invalid_speed_setting"
    OUTPUT_DIR_OUTSIDE_BASE = "output_dir_outside_base"
    PRIVATE_ENDPOINT = "private_endpoint"
    UNKNOWN_DEVICE = "unknown_device"
    UNKNOWN_MEMORY_MODE = "unknown_memory_mode"
    UNKNOWN_PRECISION = "unknown_precision"
    UNKNOWN_SOURCE = "unknown_source"
    # Models, LoRAs and ControlNets: found, loaded, used with this base.
    CHECKPOINT_NEEDS_CONFIG = "checkpoint_needs_config"
    CHECKPOINT_NEEDS_PAI_BASE = "checkpoint_needs_pai_base"
    CHECKPOINT_PICKLE = "checkpoint_pickle"
    CHECKPOINT_UNREADABLE = "checkpoint_unreadable"
    CHECKPOINT_UNSUPPORTED = "checkpoint_unsupported"
    CONVERSION_FAILED = "conversion_failed"
    IMPORT_FOLDER_INVALID = "import_folder_invalid"
    LORA_CORRUPT = "lora_corrupt"
    LORA_INCOMPATIBLE = "lora_incompatible"
    LORA_PICKLE_REFUSED = "lora_pickle_refused"
    LORA_UNKNOWN_FORMAT = "lora_unknown_format"
    LORA_UNSUPPORTED_FILE = "lora_unsupported_file"
    MANIFEST_INVALID = "manifest_invalid"
    MODEL_BUSY = "model_busy"
    MODEL_FOLDER_INVALID = "model_folder_invalid"
    MODEL_INCOMPLETE = "model_incomplete"
    MODEL_LOAD_FAILED = "model_load_failed"
    MODEL_NOT_DOWNLOADED = "model_not_downloaded"
    UNKNOWN_LORA = "unknown_lora"
    UNKNOWN_MODEL = "unknown_model"
    WEIGHTS_ONLY_DISABLED = "weights_only_disabled"
    # Downloads.
    CHECKSUM_MISMATCH = "checksum_mismatch"
    DISK_FULL = "disk_full"
    DOWNLOAD_FILE_NOT_FOUND = "download_file_not_found"
    DOWNLOAD_LAYOUT_UNEXPECTED = "download_layout_unexpected"
    DOWNLOAD_NETWORK_ERROR = "download_network_error"
    DOWNLOAD_NO_FILES = "download_no_files"
    DOWNLOAD_NOT_ON_MODELSCOPE = "download_not_on_modelscope"
    DOWNLOAD_OFFLINE = "download_offline"
    DOWNLOAD_REPO_NOT_FOUND = "download_repo_not_found"
    DOWNLOAD_SERVER_ERROR = "download_server_error"
    DOWNLOAD_UNAUTHORIZED = "download_unauthorized"
    # Jobs, the queue and the machine.
    CANCELLED = "cancelled"
    DEVICE_UNAVAILABLE = "device_unavailable"
    ENGINE_FAILED = "engine_failed"
    JOB_FAILED = "job_failed"
    JOB_NOT_FOUND = "job_not_found"
    JOB_NOT_YOURS = "job_not_yours"
    JOB_TIMEOUT = "job_timeout"
    NAN_OUTPUT = "nan_output"
    OUT_OF_MEMORY = "out_of_memory"
    QUEUE_FULL = "queue_full"
    QUEUE_SHARE_FULL = "queue_share_full"
    SAVE_FAILED = "save_failed"
    SKIPPED = "skipped"
    # Who may do what.
    ADMIN_ONLY = "admin_only"
    ADMIN_PASSWORD_WRONG = "admin_password_wrong"
    AUTH_REQUIRED_FOR_MODELS = "auth_required_for_models"


class WarningCode(enum.StrEnum):
    """Every warning code (``EngineWarning``); the text is ``warnings.<value>``."""

    # torch.compile failed (no C++ compiler, an unsupported device): the job ran without it.
    COMPILE_SKIPPED = "compile_skipped"
    CONTROLNET_BASE_MISMATCH = "controlnet_base_mismatch"
    # A few-step LoRA (LCM, TCD, Hyper-SD) used far from its sampler, steps or CFG.
    FEW_STEP_LORA_SETTINGS = "few_step_lora_settings"
    # The device report's problems (engine.device_report): an NVIDIA GPU torch cannot use.
    GPU_UNUSED_CUDA_UNAVAILABLE = "gpu_unused_cuda_unavailable"
    GPU_UNUSED_TORCH_CPU = "gpu_unused_torch_cpu"
    LORA_BASE_MISMATCH = "lora_base_mismatch"
    SAVE_FAILED = "save_failed"


Code = TypeVar("Code", bound=enum.StrEnum)


class UnregisteredCode(LookupError):
    """A programming error: a code missing from its registry. Not a ``ValueError``, so the
    ``except ValueError`` around parsing code cannot turn it into a user's error."""


def registered(registry: type[Code], code: Code | str) -> Code:
    """``code`` as a member of ``registry``; an unknown code fails loudly, here and now."""
    try:
        return registry(code)
    except ValueError:
        raise UnregisteredCode(f"{code!r} is not in {registry.__name__}: register it there "
                               "and give it a text in every locale") from None


# The codes a download fixes: the model is not on disk, or its download was cut off.
NOT_ON_DISK = (ErrorCode.MODEL_NOT_DOWNLOADED, ErrorCode.MODEL_INCOMPLETE)


class EngineError(Exception):
    """A failure the user can act on. ``code`` is stable; ``params`` fill the message.

    ``code`` may come as a plain string (most raise sites pass one): it is checked against
    ``ErrorCode`` here, so a misspelt or unregistered code fails where the error is built.
    """

    def __init__(self, code: ErrorCode | str, **params: Any) -> None:
        self.code = registered(ErrorCode, code)
        self.params = params
        super().__init__(f"{code}: {params}" if params else code)


class InvalidRequest(EngineError):
    """The request breaks a limit or names something that does not exist."""


class ModelError(EngineError):
    """A model, LoRA or ControlNet cannot be found, loaded or used with this base."""


class JobCancelled(EngineError):
    def __init__(self) -> None:
        super().__init__(ErrorCode.CANCELLED)


class SkipImage(EngineError):
    """Raised from a progress callback: drop the current batch and go on with the next."""

    def __init__(self) -> None:
        super().__init__(ErrorCode.SKIPPED)


class ResourceError(EngineError):
    """Out of memory or a similar fault; the engine stays usable."""
