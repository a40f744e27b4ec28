"""The two seams of the engine, torch-free.

``ImageServiceLike`` is what the UI and the HTTP API use: ``engine.service.ImageService``
implements it. ``GenerationBackend`` is what that service needs from whatever runs generation:
the in-process ``engine.generate.engine.Engine`` today, a cluster backend later, and in tests a
torch-free fake (``engine.fake_engine``). The service, not the backend, owns the
queue, the catalog, downloads and saving, so a backend is only these few calls.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, Protocol

from PIL import Image

from engine.device_report import DeviceReport
from engine.downloads.jobs import DownloadStatus
from engine.downloads.sources import DownloadSource
from engine.jobs import Job, JobQueue, ModelAction
from engine.limits import Limits
from engine.requests import (
    ControlSpec,
    GenerationRequest,
    GenerationResult,
    PreparedRequest,
    ProgressUpdate,
    PromptInfo,
)
from engine.settings import EngineSettings, SpeedSettings
from engine.store.catalog import LocalModelStatus, LoraChoice, ModelStatus
from engine.store.manifest import Manifest, ManifestEntry, ModelKind

ProgressCallback = Callable[[ProgressUpdate], None]


class GenerationBackend(Protocol):
    """Runs prepared requests on a device and holds the loaded models."""

    def generate(self, prepared: PreparedRequest, *, on_progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """Run one prepared request; ``on_progress`` after each step, ``cancel`` checked at
        each step (raises ``JobCancelled``); a set skip raises ``SkipImage`` per batch."""
        ...

    def load(self, model: str) -> None:
        """Load a base model now. Raises ``ModelError`` (unknown, not downloaded, failed to
        load) or ``ResourceError("out_of_memory")``."""
        ...

    def unload_all(self) -> None: ...

    def set_memory_mode(self, mode: str) -> None:
        """One of ``engine.settings.MEMORY_MODES``; loaded models are released."""
        ...

    def set_speed(self, speed: SpeedSettings) -> None:
        """New optimizations; loaded models are released only when an option applied at load
        time changed (``SpeedSettings.load_time``)."""
        ...

    def device_memory(self) -> dict[str, dict[str, int]] | None:
        """A1111's ``cuda`` part of /sdapi/v1/memory, or None without a CUDA device."""
        ...

    def device_report(self) -> DeviceReport:
        """The device, precision and torch build it runs on, and the problem worth a banner
        (``engine.device_report``); cheap after the first call."""
        ...

    def prompt_info(self, model: str, prompt: str) -> PromptInfo: ...

    def preprocess(self, control: ControlSpec, width: int | None = None,
                   height: int | None = None) -> Image.Image: ...


BackendFactory = Callable[[EngineSettings, Manifest], GenerationBackend]


class ImageServiceLike(Protocol):
    """What the UI and the HTTP API may ask of the engine. Only torch-free types appear."""

    output_dir: Path | None  # where saved images go; an admin may change it

    @property
    def limits(self) -> Limits: ...

    @property
    def active_model(self) -> str: ...

    @property
    def jobs(self) -> JobQueue: ...

    # -- catalog ----------------------------------------------------------------------------

    def entries(self, kind: ModelKind) -> tuple[ManifestEntry, ...]: ...

    def model_statuses(self, kind: ModelKind | None = None) -> list[ModelStatus]: ...

    def local_models(self) -> list[Path]: ...

    def local_model_names(self) -> list[str]: ...

    def local_model_statuses(self) -> list[LocalModelStatus]: ...

    def default_size(self, model: str) -> tuple[int, int]: ...

    def weights_sha256(self, model_id: str) -> str | None: ...

    def controlnets_for(self, base: str) -> list[ManifestEntry]: ...

    def lora_choices(self) -> list[LoraChoice]: ...

    def lora_preview(self, name: str) -> Path | None: ...

    def control_types(self) -> tuple[str, ...]: ...

    # -- downloads (admins only; the UI and the API check the caller) ------------------------

    def download(self, model_id: str, source: DownloadSource) -> object: ...

    def import_folder(self, model_id: str, folder: Path) -> object: ...

    def download_status(self, model_id: str) -> DownloadStatus | None: ...

    def cancel_download(self, model_id: str) -> None: ...

    def verify(self, model_id: str) -> bool: ...

    def delete(self, model_id: str) -> None: ...

    # -- jobs and models ---------------------------------------------------------------------

    def prepare(self, request: GenerationRequest | PreparedRequest) -> PreparedRequest: ...

    def submit(self, request: GenerationRequest, owner: str, user: str = "",
               quota_key: str = "", keep_result: bool = False) -> Job: ...

    def submit_model_action(self, action: ModelAction, owner: str, user: str = "",
                            quota_key: str = "") -> Job: ...

    def cancel(self, job: Job) -> None: ...

    def queue_position(self, job: Job) -> int: ...

    def generate(self, request: GenerationRequest | PreparedRequest,
                 on_progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult: ...

    def activate(self, model: str) -> None: ...

    def unload_models(self) -> None: ...

    def set_memory_mode(self, mode: str) -> None: ...

    def set_speed(self, speed: SpeedSettings) -> None: ...

    def memory(self) -> dict[str, Any]: ...

    def device_report(self) -> DeviceReport | None:
        """None while the backend starts; raises ``ModelError("engine_failed")`` if it could
        not."""
        ...

    def save(self, result: GenerationResult) -> list[Path]: ...

    def prompt_info(self, model: str, prompt: str) -> PromptInfo | None: ...

    def preprocess(self, control: ControlSpec, width: int | None = None,
                   height: int | None = None) -> Image.Image: ...
