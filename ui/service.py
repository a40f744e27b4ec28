"""The engine as the UI needs it. ``engine.service.ImageService`` implements this; UI tests use
a fake that does too. Only torch-free engine types appear here.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Callable, Protocol

from PIL import Image

from engine.catalog import LoraChoice, ModelStatus
from engine.download_sources import DownloadSource
from engine.downloads import DownloadStatus
from engine.limits import Limits
from engine.manifest import ManifestEntry, ModelKind
from engine.requests import (
    ControlSpec, GenerationRequest, GenerationResult, ProgressUpdate, PromptInfo,
)


class ImageServiceLike(Protocol):
    limits: Limits
    output_dir: Path | None

    @property
    def active_model(self) -> str: ...

    def entries(self, kind: ModelKind) -> tuple[ManifestEntry, ...]: ...

    def local_models(self) -> list[Path]: ...

    def model_statuses(self, kind: ModelKind | None = None) -> list[ModelStatus]: ...

    def default_size(self, model: str) -> tuple[int, int]: ...

    def controlnets_for(self, base: str) -> list[ManifestEntry]: ...

    def lora_choices(self) -> list[LoraChoice]: ...

    def lora_preview(self, name: str) -> Path | None: ...

    def control_types(self) -> tuple[str, ...]: ...

    def activate(self, model: str) -> None: ...

    def generate(self, request: GenerationRequest,
                 on_progress: Callable[[ProgressUpdate], None] | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult: ...

    def save(self, result: GenerationResult) -> list[Path]: ...

    def prompt_info(self, model: str, prompt: str) -> PromptInfo | None: ...

    def preprocess(self, control: ControlSpec, width: int | None = None,
                   height: int | None = None) -> Image.Image: ...

    def set_memory_mode(self, mode: str) -> None: ...

    def download(self, model_id: str, source: DownloadSource) -> object: ...

    def import_folder(self, model_id: str, folder: Path) -> object: ...

    def download_status(self, model_id: str) -> DownloadStatus | None: ...

    def cancel_download(self, model_id: str) -> None: ...

    def verify(self, model_id: str) -> bool: ...

    def delete(self, model_id: str) -> None: ...
