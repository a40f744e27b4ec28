"""The engine as the UI and the HTTP API see it: models and their states, the active model,
generation with progress and cancel, LoRA choices, control previews and saved outputs.

``ui/`` depends on this shape only (see ``ui/service.py``); tests give the UI a fake instead.
"""

from __future__ import annotations

import logging
import threading
from functools import cached_property
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

from PIL import Image

from engine.store.catalog import (
    LocalKind, LocalModelStatus, LoraChoice, ModelState, ModelStatus, folder_files, folder_size,
    local_checkpoints, lora_choice_from_entry, lora_choice_from_file, lora_files,
    pickled_checkpoints, required_paths_present, single_file_checkpoints, user_model_name,
)
from engine.downloads.sources import DownloadSource
from engine.downloads.jobs import FINISHED, DownloadJob, DownloadStatus
from engine.downloads.downloader import Downloader
from engine.errors import EngineError, ModelError, ResourceError
from engine.jobs import Job, JobQueue, ModelAction, QueuedRequest
from engine.limits import Limits
from engine.store.manifest import Manifest, ManifestEntry, ModelKind
from engine.store.model_store import ModelStore
from engine.generate.preprocessors import CONTROL_TYPES
from engine.requests import (
    ControlSpec, GenerationRequest, GenerationResult, PreparedRequest, ProgressUpdate, PromptInfo,
)
from engine.settings import EngineSettings
from engine.store.single_file import is_single_file

if TYPE_CHECKING:
    from engine.generate.engine import Engine  # torch and diffusers: imported only when built

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[ProgressUpdate], None]
MAX_WAITING_JOBS = 32


def default_engine_factory(settings: EngineSettings, manifest: Manifest) -> Engine:
    from engine.logging_setup import quiet_libraries

    quiet_libraries()
    from engine.generate.engine import Engine  # torch and diffusers: seconds to import

    return Engine(settings, manifest)


def _folder_default_size(folder: Path) -> tuple[int, int]:
    """A user folder's UNet says its native size (latent size x the VAE's factor 8)."""
    import json

    try:
        side = int(json.loads((folder / "unet" / "config.json").read_text())["sample_size"]) * 8
    except (OSError, ValueError, KeyError, TypeError):
        side = 512
    return side, side


class ImageService:
    """Answers catalog questions at once; the engine (torch, models) starts in the background,
    so a UI can be served before heavy imports finish. Engine calls wait until it is ready.
    """

    def __init__(self, settings: EngineSettings, manifest: Manifest,
                 output_dir: Path | None = None, active_model: str | None = None,
                 engine_factory: Callable[[EngineSettings, Manifest], Engine] | None = None):
        self.settings = settings
        self.manifest = manifest
        self.store = ModelStore(settings, manifest)
        self.output_dir = output_dir
        bases = manifest.of_kind(ModelKind.BASE)
        self._active = active_model or (bases[0].id if bases else "")
        self._loading: set[str] = set()
        self._broken: set[str] = set()
        self._state_lock = threading.Lock()
        self._engine_factory = engine_factory or default_engine_factory
        self._engine: Engine | None = None
        self._engine_error: BaseException | None = None
        self._engine_ready = threading.Event()
        self._start_lock = threading.Lock()
        self.max_waiting = MAX_WAITING_JOBS

    @property
    def limits(self) -> Limits:
        return self.settings.limits

    @property
    def engine(self):
        """The engine, started now if ``start`` was not called; waits while it starts."""
        self.start(preload=False)
        self._engine_ready.wait()
        if self._engine is None:
            raise ModelError("engine_failed") from self._engine_error
        return self._engine

    def start(self, preload: bool = True) -> None:
        """Import and build the engine in a thread (once); then load the active model."""
        with self._start_lock:
            if self._engine_ready.is_set() or getattr(self, "_starter", None):
                return
            self._starter = threading.Thread(target=self._build_engine, args=(preload,),
                                             name="engine-start", daemon=True)
            self._starter.start()

    def _build_engine(self, preload: bool) -> None:
        try:
            self._engine = self._engine_factory(self.settings, self.manifest)
        except Exception as error:  # reported to every caller of .engine
            logger.exception("the engine could not start")
            self._engine_error = error
        finally:
            self._engine_ready.set()
        if preload and self._engine is not None and self._active:
            try:
                self.activate(self._active)
            except EngineError as error:
                logger.warning("could not preload %s: %s", self._active, error.code)

    @property
    def active_model(self) -> str:
        return self._active

    # -- catalog ----------------------------------------------------------------------------

    def entries(self, kind: ModelKind) -> tuple[ManifestEntry, ...]:
        return self.manifest.of_kind(kind)

    def model_statuses(self, kind: ModelKind | None = None) -> list[ModelStatus]:
        entries = self.manifest.models if kind is None else self.entries(kind)
        return [self._status(entry) for entry in entries]

    def _status(self, entry: ManifestEntry) -> ModelStatus:
        snapshot = self.store.local_snapshot(entry)
        converted = self.store.converted_folder(entry)  # its originals were deleted
        folder = converted or snapshot
        # One walk per folder gives both the size and what is there (this runs every second
        # of a download, for every model).
        files = {f: folder_files(f) for f in (snapshot, converted) if f is not None}
        size = sum(sum(sizes.values()) for sizes in files.values())
        complete = folder is not None and required_paths_present(entry, set(files[folder]))
        download = self.downloader.status(entry.id)
        downloading = download is not None and download.state not in FINISHED
        with self._state_lock:
            if downloading:
                state = ModelState.DOWNLOADING
            elif self.store.is_pending(entry):
                state = ModelState.PARTIAL
            elif entry.id in self._loading:
                state = ModelState.LOADING
            elif folder is None:
                state = ModelState.MISSING
            elif entry.id in self._broken or not complete:
                state = ModelState.BROKEN
            else:
                state = ModelState.READY
        record = self.store.records.read("verified", entry.cache_repo)
        return ModelStatus(entry, state, size, active=entry.id == self._active,
                           progress=download.fraction if download and downloading else None,
                           converted=converted is not None,
                           source=record.source if record else "",
                           size_only=bool(record and record.unhashed))

    # -- downloads --------------------------------------------------------------------------

    def _convert(self, entry: ManifestEntry, snapshot: Path) -> int:
        """Weights that do not load for conversion would not load for a job either: the
        model shows as broken (until it loads after all), not ready."""
        # torch: only once a download is done
        from engine.downloads.conversion import convert_to_fp16

        try:
            saved = convert_to_fp16(self.store, entry, snapshot)
        except ModelError as error:
            if error.code == "model_load_failed":
                with self._state_lock:
                    self._broken.add(entry.id)
            raise
        with self._state_lock:
            self._broken.discard(entry.id)
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
        entry = self.manifest.get(model_id)
        if self._engine is not None and entry is not None:
            self._engine.pipelines.unload_all()
        self.downloader.delete(model_id)

    def default_size(self, model: str) -> tuple[int, int]:
        entry = self.manifest.get(model)
        if entry and entry.default_size:
            return entry.default_size.width, entry.default_size.height
        try:
            path = self.store.user_model(model) or self.store.resolve(model)
        except ModelError:
            return 512, 512  # the error shows when the model loads
        if is_single_file(path):
            try:
                path = self.store.single_file_config(path)  # its architecture's native size
            except ModelError:
                return _folder_default_size(path)  # 512: the error shows when it loads
        return _folder_default_size(path)

    def weights_sha256(self, model_id: str) -> str | None:
        entry = self.manifest.get(model_id)
        return self.store.recorded_weights_sha256(entry) if entry else None

    def local_models(self) -> list[Path]:
        """Users' own models in the models folder, for the model picker: diffusers folders and
        single-file checkpoints (an unusable one says why when picked)."""
        folder = self.settings.checkpoint_dir
        return local_checkpoints(folder) + single_file_checkpoints(folder)

    def local_model_names(self) -> list[str]:
        """``local_models`` as the API names them (inside the checkpoints folder), which is
        what a model switch accepts; no server path."""
        folder = self.settings.checkpoint_dir
        return [user_model_name(p, folder) for p in self.local_models()]

    def local_model_statuses(self) -> list[LocalModelStatus]:
        """What the user placed in the models folder, each with the reason it cannot be used."""
        folder = self.settings.checkpoint_dir
        found = [LocalModelStatus(p, LocalKind.FOLDER, folder_size(p))
                 for p in local_checkpoints(folder)]
        found += [self._single_file_status(p) for p in single_file_checkpoints(folder)]
        found += [LocalModelStatus(p, LocalKind.SINGLE_FILE, p.stat().st_size, "checkpoint_pickle",
                                   {"name": p.name}) for p in pickled_checkpoints(folder)]
        found += [LocalModelStatus(p, LocalKind.LORA, p.stat().st_size)
                  for p in lora_files(self.settings.lora_dir)]
        return found

    def _single_file_status(self, path: Path) -> LocalModelStatus:
        try:
            self.store.single_file_config(path)
        except ModelError as error:
            return LocalModelStatus(path, LocalKind.SINGLE_FILE, path.stat().st_size,
                                    error.code, error.params)
        return LocalModelStatus(path, LocalKind.SINGLE_FILE, path.stat().st_size)

    def controlnets_for(self, base: str) -> list[ManifestEntry]:
        """ControlNets trained for ``base`` first, then the rest (which get a warning)."""
        controlnets = self.entries(ModelKind.CONTROLNET)
        return sorted(controlnets, key=lambda entry: entry.base != base)

    def lora_choices(self) -> list[LoraChoice]:
        choices = [lora_choice_from_entry(e) for e in self.entries(ModelKind.LORA)]
        return choices + [lora_choice_from_file(p) for p in lora_files(self.settings.lora_dir)]

    def lora_preview(self, name: str) -> Path | None:
        """The style's example picture, when its repo is on disk."""
        entry = self.manifest.get(name)
        if entry is None or not entry.preview_image:
            return None
        snapshot = self.store.local_snapshot(entry)
        path = snapshot / entry.preview_image if snapshot else None
        return path if path and path.is_file() else None

    @staticmethod
    def control_types() -> tuple[str, ...]:
        return CONTROL_TYPES

    def set_memory_mode(self, mode: str) -> None:
        """Takes effect as models load again: the loaded ones are released now."""
        engine = self.engine
        with engine.pipelines.lock:
            engine.pipelines.memory_mode = mode
            engine.pipelines.unload_all()

    # -- actions ----------------------------------------------------------------------------

    def activate(self, model: str) -> None:
        """Load ``model`` now and make it the default for new jobs."""
        with self._state_lock:
            self._loading.add(model)
        try:
            self._load_base(model)
        except ModelError as error:
            if error.code == "model_load_failed":
                with self._state_lock:
                    self._broken.add(model)
            raise
        finally:
            with self._state_lock:
                self._loading.discard(model)
        with self._state_lock:
            self._broken.discard(model)
        self._active = model
        logger.info("active model: %s", model)

    def _load_base(self, model: str) -> None:
        import torch

        from engine.generate.pipelines import free_memory

        try:
            self.engine.pipelines.base(model)
            return
        except torch.OutOfMemoryError:
            pass  # freed below, once the traceback no longer holds the tensors
        free_memory()
        raise ResourceError("out_of_memory")

    def prepare(self, request: GenerationRequest | PreparedRequest) -> PreparedRequest:
        """The one request path: canonical and validated (``Engine.prepare``)."""
        return self.engine.prepare(request)

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

    def unload_models(self) -> None:
        """Free the device: every loaded model goes (the next job loads what it needs)."""
        if self._engine is not None:
            self._engine.pipelines.unload_all()

    def memory(self) -> dict:
        """A1111's /sdapi/v1/memory shape: RAM and, on CUDA, device memory in bytes."""
        import psutil

        ram = psutil.virtual_memory()
        report: dict[str, dict[str, Any]] = {
            "ram": {"free": ram.available, "used": ram.used, "total": ram.total}}
        if self._engine is not None and self._engine.placement.device.type == "cuda":
            import torch

            free, total = torch.cuda.mem_get_info()
            report["cuda"] = {"system": {"free": free, "used": total - free, "total": total},
                              "active": {"peak": torch.cuda.max_memory_allocated()}}
        return report

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
