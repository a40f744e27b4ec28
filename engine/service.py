"""The engine as the UI and the HTTP API see it (``engine.interfaces.ImageServiceLike``):
models and their states, the active model, generation with progress and cancel, LoRA choices,
control previews and saved outputs.

It is built from named parts: ``catalog`` (torch-free model states and the user's own
models), ``downloader``, ``jobs`` (the one queue) and a ``GenerationBackend`` that runs prepared
requests (the in-process ``Engine`` by default; tests give a torch-free fake). This module
imports no torch: the backend is built in a thread, so a UI can be served before heavy imports
finish, and only calls that need the backend wait for it.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from functools import cached_property, partial
from pathlib import Path
from typing import Any

from PIL import Image

from engine.control_types import CONTROL_TYPES
from engine.device_report import DeviceReport
from engine.downloads.downloader import Downloader
from engine.downloads.jobs import FINISHED, DownloadJob, DownloadStatus
from engine.downloads.sources import DownloadSource
from engine.errors import EngineError, InvalidRequest, ModelError
from engine.interfaces import BackendFactory, GenerationBackend, ProgressCallback
from engine.jobs import Job, JobQueue, ModelAction, QueuedRequest
from engine.limits import Limits
from engine.memory_plan import checked_memory_mode
from engine.requests import (
    ControlSpec,
    GenerationRequest,
    GenerationResult,
    PreparedRequest,
    PromptInfo,
)
from engine.settings import EngineSettings, SpeedSettings
from engine.store.catalog import LocalModelStatus, LoraChoice, ModelStatus
from engine.store.loras import lora_exists
from engine.store.manifest import Manifest, ManifestEntry, ModelKind
from engine.store.model_catalog import ModelCatalog
from engine.store.model_store import ModelStore
from engine.validation import prepare_request

logger = logging.getLogger(__name__)

MAX_WAITING_JOBS = 32


def default_engine_factory(settings: EngineSettings, manifest: Manifest) -> GenerationBackend:
    from engine.logging_setup import quiet_libraries

    quiet_libraries()
    from engine.generate.engine import Engine  # torch and diffusers: seconds to import

    return Engine(settings, manifest)


class ImageService:
    """Answers catalog questions at once; the backend (torch, models) starts in the background.
    Backend calls wait until it is ready."""

    def __init__(self, settings: EngineSettings, manifest: Manifest,
                 output_dir: Path | None = None, active_model: str | None = None,
                 engine_factory: BackendFactory | None = None) -> None:
        self.settings = settings
        self.manifest = manifest
        self.store = ModelStore(settings, manifest)
        self.catalog = ModelCatalog(settings, manifest, self.store, self._download_progress)
        self.output_dir = output_dir
        bases = manifest.of_kind(ModelKind.BASE)
        self._active = active_model or (bases[0].id if bases else "")
        self._engine_factory = engine_factory or default_engine_factory
        self._engine: GenerationBackend | None = None
        self._engine_error: BaseException | None = None
        self._engine_ready = threading.Event()
        self._start_lock = threading.Lock()
        self._starter: threading.Thread | None = None
        self._when_started: list[Callable[[], None]] = []
        self.max_waiting = MAX_WAITING_JOBS

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    @property
    def engine(self) -> GenerationBackend:
        """The backend, started now if ``start`` was not called; waits while it starts."""
        self.start(preload=False)
        self._engine_ready.wait()
        if self._engine is None:
            raise ModelError("engine_failed") from self._engine_error
        return self._engine

    def start(self, preload: bool = True) -> None:
        """Build the backend in a thread (once); then load the active model."""
        with self._start_lock:
            if self._engine_ready.is_set() or self._starter is not None:
                return
            self._starter = threading.Thread(target=self._build_engine, args=(preload,),
                                             name="engine-start", daemon=True)
            self._starter.start()

    def after_start(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the backend has started, in the starting thread before the
        preload (at once, here, if it has started already); never if it failed to start."""
        with self._start_lock:
            if not self._engine_ready.is_set():
                self._when_started.append(callback)
                return
        if self._engine is not None:
            callback()

    def _build_engine(self, preload: bool) -> None:
        try:
            self._engine = self._engine_factory(self.settings, self.manifest)
        except Exception as error:  # reported to every caller of .engine
            logger.exception("the engine could not start")
            self._engine_error = error
        finally:
            with self._start_lock:  # after_start either queues before this or calls itself
                self._engine_ready.set()
                callbacks, self._when_started = self._when_started, []
        if self._engine is None:
            return
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a report hook must not stop the preload
                logger.exception("a start-up hook failed")
        if preload and self._active:
            try:
                self.activate(self._active)
            except EngineError as error:
                logger.warning("could not preload %s: %s", self._active, error.code)

    @property
    def active_model(self) -> str:
        return self._active

    # -- catalog (torch-free: ``ModelCatalog``) ----------------------------------------------

    def entries(self, kind: ModelKind) -> tuple[ManifestEntry, ...]:
        return self.catalog.entries(kind)

    def model_statuses(self, kind: ModelKind | None = None) -> list[ModelStatus]:
        return self.catalog.statuses(self._active, kind)

    def default_size(self, model: str) -> tuple[int, int]:
        return self.catalog.default_size(model)

    def weights_sha256(self, model_id: str) -> str | None:
        return self.catalog.weights_sha256(model_id)

    def local_models(self) -> list[Path]:
        return self.catalog.local_models()

    def local_model_names(self) -> list[str]:
        return self.catalog.local_model_names()

    def local_model_statuses(self) -> list[LocalModelStatus]:
        return self.catalog.local_model_statuses()

    def controlnets_for(self, base: str) -> list[ManifestEntry]:
        return self.catalog.controlnets_for(base)

    def lora_choices(self) -> list[LoraChoice]:
        return self.catalog.lora_choices()

    def lora_preview(self, name: str) -> Path | None:
        return self.catalog.lora_preview(name)

    @staticmethod
    def control_types() -> tuple[str, ...]:
        return CONTROL_TYPES

    # -- downloads --------------------------------------------------------------------------

    def _download_progress(self, model_id: str) -> float | None:
        download = self.downloader.status(model_id)
        return download.fraction if download and download.state not in FINISHED else None

    def _convert(self, entry: ManifestEntry, snapshot: Path) -> int:
        """Weights that do not load for conversion would not load for a job either: the
        model shows as broken (until it loads after all), not ready."""
        # torch: only once a download is done
        from engine.downloads.conversion import convert_to_fp16

        try:
            saved = convert_to_fp16(self.store, entry, snapshot)
        except ModelError as error:
            if error.code == "model_load_failed":
                self.catalog.mark_broken(entry.id)
            raise
        self.catalog.mark_loaded(entry.id)
        return saved

    @cached_property
    def downloader(self) -> Downloader:
        convert = self._convert if self.settings.convert_downloads else None
        return Downloader(self.store, self.manifest, convert=convert)

    def download(self, model_id: str, source: DownloadSource) -> DownloadJob:
        """Start (or join) the download of a manifest model; it runs in the background."""
        return self.downloader.start(model_id, source)

    def import_folder(self, model_id: str, folder: Path) -> DownloadJob:
        """Take a manifest model from a local folder (a copy from elsewhere), verified."""
        return self.downloader.import_folder(model_id, folder)

    def download_status(self, model_id: str) -> DownloadStatus | None:
        return self.downloader.status(model_id)

    def cancel_download(self, model_id: str) -> None:
        self.downloader.cancel(model_id)

    def verify(self, model_id: str) -> bool:
        return self.downloader.verify(model_id)

    def delete(self, model_id: str) -> None:
        """Remove a model from disk; the loaded copy is released first."""
        if self._engine is not None and self.manifest.get(model_id) is not None:
            self._engine.unload_all()
        self.downloader.delete(model_id)

    # -- models on the device ----------------------------------------------------------------

    def activate(self, model: str) -> None:
        """Load ``model`` now and make it the default for new jobs."""
        with self.catalog.loading(model):
            self.engine.load(model)
        self._active = model
        logger.info("active model: %s", model)

    def unload_models(self) -> None:
        """Free the device: every loaded model goes (the next job loads what it needs)."""
        if self._engine is not None:
            self._engine.unload_all()

    def set_memory_mode(self, mode: str) -> None:
        """Takes effect as models load again: the loaded ones are released now. One of
        MEMORY_MODES, or an old name for one ("normal", "low")."""
        self.engine.set_memory_mode(checked_memory_mode(mode))

    def set_speed(self, speed: SpeedSettings) -> None:
        """New optimizations for the jobs that follow (``GenerationBackend.set_speed``)."""
        problems = speed.problems()
        if problems:
            raise InvalidRequest("invalid_speed_setting", name=", ".join(problems))
        self.engine.set_speed(speed)

    def memory(self) -> dict[str, Any]:
        """A1111's /sdapi/v1/memory shape: RAM and, on CUDA, device memory in bytes."""
        import psutil

        ram = psutil.virtual_memory()
        report: dict[str, Any] = {
            "ram": {"free": ram.available, "used": ram.used, "total": ram.total}}
        device = self._engine.device_memory() if self._engine is not None else None
        if device is not None:
            report["cuda"] = device
        return report

    def device_report(self) -> DeviceReport | None:
        """None while the backend starts, rather than waiting: a page asks on every load and
        is served before torch is even imported, so it shows "starting" and asks again."""
        if not self._engine_ready.is_set():
            return None
        return self.engine.device_report()  # raises engine_failed if it could not start

    # -- jobs -------------------------------------------------------------------------------

    def prepare(self, request: GenerationRequest | PreparedRequest) -> PreparedRequest:
        """The one request path (``prepare_request``): canonical and validated, torch-free, so
        a bad request is refused at once even while the backend starts."""
        return prepare_request(request, self.limits, control_types=CONTROL_TYPES,
                               lora_exists=partial(lora_exists, self.store, self.settings))

    def generate(self, request: GenerationRequest | PreparedRequest,
                 on_progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """Run now, in the caller's thread (the job queue's worker calls this). A request that
        did not come through ``submit`` is prepared first, so every one takes the same path."""
        if not isinstance(request, PreparedRequest):
            request = self.prepare(request)
        return self.engine.generate(request, on_progress=on_progress, cancel=cancel)

    @cached_property
    def jobs(self) -> JobQueue:
        """The one queue the UI and the API share: FIFO, one job at a time, bounded."""
        return JobQueue(self._run_queued, max_waiting=self.max_waiting)

    def _run_queued(self, request: QueuedRequest, on_progress: ProgressCallback,
                    cancel: threading.Event) -> GenerationResult | None:
        if isinstance(request, ModelAction):
            request.apply(self)
            return None
        return self.generate(request, on_progress=on_progress, cancel=cancel)  # as it waited

    def submit(self, request: GenerationRequest, owner: str, user: str = "",
               quota_key: str = "", keep_result: bool = False) -> Job:
        """Prepare and validate now (a bad request never waits in line), then queue the
        prepared request: the one that waits is the one that runs."""
        prepared = self.prepare(request)
        return self.jobs.submit(prepared, owner, user, quota_key, keep_result)

    def submit_model_action(self, action: ModelAction, owner: str, user: str = "",
                            quota_key: str = "") -> Job:
        """Queue a model switch or unload: it waits its turn without holding a thread."""
        return self.jobs.submit(action, owner, user, quota_key)

    def cancel(self, job: Job) -> None:
        self.jobs.cancel(job)

    def queue_position(self, job: Job) -> int:
        return self.jobs.position(job)

    def save(self, result: GenerationResult) -> list[Path]:
        from engine.metadata.outputs import save_generated

        if self.output_dir is None:
            return []
        return save_generated(result.images, self.output_dir)

    def prompt_info(self, model: str, prompt: str) -> PromptInfo | None:
        """Token count for the live counter; None while the model is not available."""
        try:
            return self.engine.prompt_info(model, prompt)
        except EngineError:
            return None

    def preprocess(self, control: ControlSpec, width: int | None = None,
                   height: int | None = None) -> Image.Image:
        return self.engine.preprocess(control, width, height)
