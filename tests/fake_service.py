"""A torch-free stand-in for ``engine.service.ImageService``, for the UI tests.

It knows the real manifest and the real ``Limits``, prepares and validates every request with
the real preparer (``engine.validation.prepare_request``), queues the prepared request as the
real service does, reports progress per step, honours cancel, and returns solid-colour images
whose parameters come from the real builder (``engine.metadata.parameters``), so infotexts work.
"""

from __future__ import annotations

import random
import threading
import time
from pathlib import Path
from typing import Callable

from PIL import Image

from engine.jobs import Job, JobQueue, ModelAction
from engine.downloads.sources import DownloadSource
from engine.downloads.jobs import DownloadState, DownloadStatus
from engine.store.catalog import (
    LocalKind, LocalModelStatus, LoraChoice, ModelState, ModelStatus, lora_choice_from_entry,
)
from engine.errors import JobCancelled, ModelError, SkipImage
from engine.limits import Limits
from engine.store.manifest import Manifest, ManifestEntry, ModelKind, load_manifest
from engine.control_types import CONTROL_TYPES
from engine.metadata.parameters import image_parameters
from engine.prompt_syntax import parse_prompt
from engine.requests import (
    ControlNetRequest, ControlSpec, GeneratedImage, GenerationRequest, GenerationResult,
    Img2ImgRequest, PreparedRequest, ProgressUpdate, PromptInfo,
)
from engine.settings import DEFAULT_MANIFEST, MEMORY_MODES
from engine.validation import prepare_request, validate_control

FAKE_CONTROL_TYPES = CONTROL_TYPES  # the real list (torch-free); every map here is grey
CONTEXT_LENGTH = 32
SEED_MODULUS = 2**32
COLOURS = ((200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60))


class FakeImageService:
    """Implements ``engine.interfaces.ImageServiceLike``; keeps every request in ``requests``."""

    def __init__(self, manifest: Manifest | None = None, limits: Limits | None = None,
                 output_dir: Path | None = None, active_model: str | None = None,
                 step_delay: float = 0.0) -> None:
        self.manifest = manifest or load_manifest(DEFAULT_MANIFEST)
        self.limits = limits or Limits()
        self.output_dir = output_dir
        bases = self.manifest.of_kind(ModelKind.BASE)
        self._active = active_model or bases[0].id
        self.step_delay = step_delay  # seconds per step: makes a job slow enough to interrupt
        # When set to an Event, a job waits on it after ``started`` and before its first step,
        # so a test can act while a job is surely running (no timing involved).
        self.gate: threading.Event | None = None
        # Like the engine's pipeline lock: a job holds it while it runs, a model switch waits.
        self.pipeline_lock = threading.RLock()
        self.requests: list[GenerationRequest] = []  # as received, before preparation
        self.progress: list[ProgressUpdate] = []
        self.cancelled: list[GenerationRequest] = []
        self.started = threading.Event()  # set when a job has begun its steps
        self.memory_modes: list[str] = []
        self.activated: list[str] = []
        self.saved: list[Path] = []
        self.preprocessed: list[ControlSpec] = []
        self.downloads: dict[str, DownloadStatus] = {}  # set by tests to show a state
        self.download_calls: list[tuple[str, DownloadSource]] = []
        self.deleted: list[str] = []
        self.local_statuses: list[LocalModelStatus] = []  # set by tests: "the models folder"
        self.missing: set[str] = set()  # set by tests: models not downloaded yet
        self._lock = threading.Lock()
        self._queue: JobQueue | None = None

    # -- downloads --------------------------------------------------------------------------

    def download(self, model_id: str, source: DownloadSource) -> None:
        self.download_calls.append((model_id, source))
        if model_id in self.missing:  # "downloads" at once: the model is then on disk
            self.missing.discard(model_id)
            self.downloads[model_id] = DownloadStatus(model_id, DownloadState.DONE, 100, 100)
            return
        self.downloads[model_id] = DownloadStatus(model_id, DownloadState.DOWNLOADING, 0, 100)

    @property
    def jobs(self) -> JobQueue:
        with self._lock:
            if self._queue is None:
                self._queue = JobQueue(self._run_queued)
            return self._queue

    def _run_queued(self, request, on_progress, cancel):
        if isinstance(request, ModelAction):
            request.apply(self)
            return None
        return self.generate(request, on_progress=on_progress, cancel=cancel)

    def submit_model_action(self, action: ModelAction, owner: str, user: str = "",
                            quota_key: str = "") -> Job:
        return self.jobs.submit(action, owner, user, quota_key)

    def submit(self, request: GenerationRequest, owner: str, user: str = "",
               quota_key: str = "", keep_result: bool = False) -> Job:
        prepared = self.prepare(request)
        with self._lock:
            self.requests.append(request)
        return self.jobs.submit(prepared, owner, user, quota_key, keep_result)

    def cancel(self, job: Job) -> None:
        self.jobs.cancel(job)

    def queue_position(self, job: Job) -> int:
        return self.jobs.position(job)

    def import_folder(self, model_id: str, folder: Path) -> None:
        self.download_calls.append((model_id, folder))
        self.downloads[model_id] = DownloadStatus(model_id, DownloadState.PENDING)

    def weights_sha256(self, model_id: str) -> str | None:
        return None

    def memory(self) -> dict:
        return {"ram": {"free": 1, "used": 1, "total": 2}}

    def unload_models(self) -> None:
        self.activated.append("(unloaded)")

    def local_models(self) -> list[Path]:
        return [status.path for status in self.local_statuses
                if status.kind is not LocalKind.LORA and status.problem != "checkpoint_pickle"]

    def local_model_names(self) -> list[str]:
        return [path.name for path in self.local_models()]

    def local_model_statuses(self) -> list[LocalModelStatus]:
        return list(self.local_statuses)

    def download_status(self, model_id: str) -> DownloadStatus | None:
        return self.downloads.get(model_id)

    def cancel_download(self, model_id: str) -> None:
        if model_id in self.downloads:
            self.downloads[model_id] = DownloadStatus(model_id, DownloadState.CANCELLED)

    def verify(self, model_id: str) -> bool:
        return model_id == self._active

    def delete(self, model_id: str) -> None:
        self.deleted.append(model_id)

    # -- catalog ----------------------------------------------------------------------------

    @property
    def active_model(self) -> str:
        return self._active

    def entries(self, kind: ModelKind) -> tuple[ManifestEntry, ...]:
        return self.manifest.of_kind(kind)

    def model_statuses(self, kind: ModelKind | None = None) -> list[ModelStatus]:
        entries = self.manifest.models if kind is None else self.entries(kind)
        return [ModelStatus(entry,
                            ModelState.READY if entry.id == self._active else ModelState.MISSING,
                            1024**3 if entry.id == self._active else 0,
                            active=entry.id == self._active)
                for entry in entries]

    def default_size(self, model: str) -> tuple[int, int]:
        entry = self.manifest.get(model)
        if entry and entry.default_size:
            return entry.default_size.width, entry.default_size.height
        return 512, 512

    def controlnets_for(self, base: str) -> list[ManifestEntry]:
        return sorted(self.entries(ModelKind.CONTROLNET), key=lambda entry: entry.base != base)

    def lora_choices(self) -> list[LoraChoice]:
        return [lora_choice_from_entry(entry) for entry in self.entries(ModelKind.LORA)]

    def lora_preview(self, name: str) -> Path | None:
        return None

    def control_types(self) -> tuple[str, ...]:
        return FAKE_CONTROL_TYPES

    # -- actions ----------------------------------------------------------------------------

    def activate(self, model: str) -> None:
        with self.pipeline_lock:
            self._activate(model)

    def _activate(self, model: str) -> None:
        if model in {str(path) for path in self.local_models()} | set(self.local_model_names()):
            self.activated.append(model)
            self._active = model
            return
        entry = self.manifest.get(model)
        if entry is None or entry.kind is not ModelKind.BASE:
            raise ModelError("unknown_model", name=model)
        if entry.id in self.missing:
            raise ModelError("model_not_downloaded", name=entry.id, repo=entry.repo, size="4.2")
        self.activated.append(entry.id)
        self._active = entry.id

    def set_memory_mode(self, mode: str) -> None:
        assert mode in MEMORY_MODES, mode
        self.memory_modes.append(mode)

    def _lora_exists(self, name: str) -> bool:
        return any(name in (e.id, e.repo) for e in self.entries(ModelKind.LORA))

    def prepare(self, request: GenerationRequest | PreparedRequest) -> PreparedRequest:
        """The real preparer, with this fake's limits and LoRAs."""
        return prepare_request(request, self.limits, control_types=FAKE_CONTROL_TYPES,
                               lora_exists=self._lora_exists)

    def generate(self, request: GenerationRequest | PreparedRequest,
                 on_progress: Callable[[ProgressUpdate], None] | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        """A queued job arrives prepared (by ``submit``); a direct call is prepared here."""
        if not isinstance(request, PreparedRequest):
            prepared = self.prepare(request)
            with self._lock:
                self.requests.append(request)
        else:
            prepared = request
        with self.pipeline_lock:
            return self._generate(prepared, on_progress, cancel)

    def _generate(self, prepared: PreparedRequest,
                  on_progress: Callable[[ProgressUpdate], None] | None,
                  cancel: threading.Event | None) -> GenerationResult:
        request = prepared.request
        if self.manifest.get(request.model) is None:
            raise ModelError("unknown_model", name=request.model)
        started = time.perf_counter()
        width, height = self._size_for(request)
        first_seed = request.seed if request.seed != -1 else random.randrange(SEED_MODULUS)
        control_map = (self.preprocess(request.control, width, height)
                       if isinstance(request, ControlNetRequest) else None)
        self.started.set()
        if self.gate is not None and not self.gate.wait(timeout=60):
            raise AssertionError("the test never opened the gate")
        images = []
        for batch_index in range(request.batch_count):
            try:
                self._steps(request, batch_index, on_progress, cancel)
            except SkipImage:  # as the engine does: this batch is dropped, the next goes on
                continue
            for i in range(request.batch_size):
                index = batch_index * request.batch_size + i
                seed = (first_seed + index) % SEED_MODULUS
                image = Image.new("RGB", (width, height), COLOURS[index % len(COLOURS)])
                images.append(GeneratedImage(image, seed,
                                             self._parameters(prepared, seed, width, height)))
        info = self.prompt_info(request.model, request.prompt)
        negative_info = self.prompt_info(request.model, request.negative_prompt)
        return GenerationResult(tuple(images), control_map, (), info, negative_info,
                                time.perf_counter() - started)

    def _steps(self, request, batch_index, on_progress, cancel) -> None:
        for step in range(1, request.steps + 1):
            if cancel is not None and cancel.is_set():
                with self._lock:
                    self.cancelled.append(request)
                raise JobCancelled()
            if self.step_delay:
                time.sleep(self.step_delay)
            update = ProgressUpdate(step, request.steps, batch_index, request.batch_count)
            with self._lock:
                self.progress.append(update)
            if on_progress is not None:
                on_progress(update)

    def _size_for(self, request: GenerationRequest) -> tuple[int, int]:
        if request.width and request.height:
            return request.width, request.height
        if isinstance(request, Img2ImgRequest):
            width, height = request.init_image.size
            step = self.limits.size_step
            width, height = width // step * step, height // step * step
        else:
            width, height = self.default_size(request.model)
        return request.width or width, request.height or height

    def _parameters(self, prepared: PreparedRequest, seed: int, width: int,
                    height: int) -> dict:
        """The engine's own builder, with what this fake knows."""
        request = prepared.request
        entry = self.manifest.get(request.model)
        return image_parameters(prepared, model=entry.id if entry else request.model, seed=seed,
                                width=width, height=height,
                                prompt_info=self.prompt_info(request.model, request.prompt),
                                precision="fp32", version="fake")

    def save(self, result: GenerationResult) -> list[Path]:
        if self.output_dir is None:
            return []
        from engine.metadata.outputs import save_generated

        paths = save_generated(result.images, self.output_dir)
        self.saved.extend(paths)
        return paths

    def prompt_info(self, model: str, prompt: str) -> PromptInfo | None:
        """One token per character of the plain text, in chunks of ``CONTEXT_LENGTH - 2``."""
        tokens = len(parse_prompt(prompt or "").plain_text)
        per_chunk = CONTEXT_LENGTH - 2
        return PromptInfo(tokens, CONTEXT_LENGTH, max(1, -(-tokens // per_chunk)))

    def preprocess(self, control: ControlSpec, width: int | None = None,
                   height: int | None = None) -> Image.Image:
        validate_control(control, self.limits, FAKE_CONTROL_TYPES)
        self.preprocessed.append(control)
        size = (width, height) if width and height else control.image.size
        return Image.new("RGB", size, (128, 128, 128))
