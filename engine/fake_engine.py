"""A torch-free ``GenerationBackend`` that paints solid colours, for the UI and API tests and for
working on one UI tab alone (``python -m ui.txt2img_tab``).

Everything around it is real: ``fake_image_service`` builds the real ``ImageService`` (its
preparer, validator, queue, catalog, downloads and saving) over this backend. The backend
loads a model only when the real store finds it on disk (``place_placeholder_models`` writes
the files a complete download leaves, without weights), reports progress per step, honours
cancel and skip, and describes each image with the real parameters builder, so infotexts,
PNG info and the API's ``info`` work as with the real engine. What it received is kept for
tests to read (``prepared``, ``loaded``, ``memory_modes``, ``preprocessed``, ``cancelled``).
"""

from __future__ import annotations

import json
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path

from PIL import Image

from engine.control_types import CONTROL_TYPES
from engine.device_report import DeviceReport, TorchFacts, build_device_report
from engine.errors import JobCancelled, ModelError, SkipImage
from engine.interfaces import ProgressCallback
from engine.memory_plan import checked_memory_mode
from engine.metadata.parameters import image_parameters
from engine.prompt_syntax import parse_prompt
from engine.requests import (
    ControlNetRequest,
    ControlSpec,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    Img2ImgRequest,
    PreparedRequest,
    ProgressUpdate,
    PromptInfo,
)
from engine.service import ImageService
from engine.settings import DEFAULT_MANIFEST, EngineSettings, SpeedSettings
from engine.store.catalog import required_paths_present
from engine.store.manifest import Manifest, ManifestEntry, ModelKind, load_manifest
from engine.store.model_store import ModelStore
from engine.validation import validate_control

logger = logging.getLogger(__name__)

CONTEXT_LENGTH = 32  # tokens per chunk, like a small CLIP: long prompts show several chunks
SEED_MODULUS = 2**32
COLOURS = ((200, 60, 60), (60, 200, 60), (60, 60, 200), (200, 200, 60))
GATE_TIMEOUT_S = 60
PLACEHOLDER_COMMIT = "0" * 40
PLACEHOLDER_LATENT_SIDE = 64  # unet/config.json sample_size: 512 px, SD 1.x's native size
CPU_FACTS = TorchFacts(device="cpu", requested_device="cpu", precision="fp32",
                       torch_version="fake", cuda_version=None, hip_version=None,
                       mps_built=False)


class FakeEngine:
    """Implements ``engine.interfaces.GenerationBackend`` without torch."""

    def __init__(self, settings: EngineSettings, manifest: Manifest,
                 step_delay: float = 0.0) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.manifest = manifest
        self.store = ModelStore(settings, manifest)
        self.step_delay = step_delay  # seconds per step: makes a job slow enough to interrupt
        # When set to an Event, a job waits on it after ``started`` and before its first step,
        # so a test can act while a job is surely running (no timing involved).
        self.gate: threading.Event | None = None
        self.started = threading.Event()  # set when a job has begun its steps
        # Like the engine's pipeline lock: a job holds it while it runs, a model load waits.
        self.pipeline_lock = threading.RLock()
        self.prepared: list[PreparedRequest] = []
        self.progress: list[ProgressUpdate] = []
        self.cancelled: list[GenerationRequest] = []
        self.loaded: list[str] = []  # each load, in order; "(unloaded)" for each unload
        self.memory_modes: list[str] = []
        self.speeds: list[SpeedSettings] = []
        self.preprocessed: list[ControlSpec] = []
        # What ``device_report`` answers: the CPU, no GPU; a test may set another report.
        self.report = build_device_report(CPU_FACTS, list, "Linux")
        self._lock = threading.Lock()

    @property
    def requests(self) -> list[GenerationRequest]:
        """The requests it ran (prepared: canonical sampler, LoRA tags taken out)."""
        with self._lock:
            return [prepared.request for prepared in self.prepared]

    # -- models ------------------------------------------------------------------------------

    def load(self, model: str) -> None:
        with self.pipeline_lock:
            self._folder_of(model)
            with self._lock:
                self.loaded.append(model)

    def _folder_of(self, model: str) -> Path:
        """The real store's answer (unknown, not downloaded, incomplete) and the real rule
        that only bases are loaded as bases."""
        entry = self.manifest.get(model)
        if entry is not None and entry.kind is not ModelKind.BASE:
            raise ModelError("unknown_model", name=model)
        return self.store.user_model(model) or self.store.resolve(model)

    def unload_all(self) -> None:
        with self._lock:
            self.loaded.append("(unloaded)")

    def set_memory_mode(self, mode: str) -> None:
        mode = checked_memory_mode(mode)  # the real engine's rule: old names are accepted
        with self._lock:
            self.memory_modes.append(mode)

    def set_speed(self, speed: SpeedSettings) -> None:
        with self._lock:
            self.speeds.append(speed)

    def device_memory(self) -> dict[str, dict[str, int]] | None:
        return None  # no CUDA device here

    def device_report(self) -> DeviceReport:
        return self.report

    # -- generation --------------------------------------------------------------------------

    def generate(self, prepared: PreparedRequest, *, on_progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        if not isinstance(prepared, PreparedRequest):
            raise TypeError("the backend runs prepared requests (ImageService.prepare)")
        with self._lock:
            self.prepared.append(prepared)
        with self.pipeline_lock:
            return self._generate(prepared, on_progress, cancel)

    def _generate(self, prepared: PreparedRequest, on_progress: ProgressCallback | None,
                  cancel: threading.Event | None) -> GenerationResult:
        request = prepared.request
        self._folder_of(request.model)
        started = time.perf_counter()
        width, height = self._size_for(request)
        first_seed = request.seed if request.seed != -1 else random.randrange(SEED_MODULUS)
        control_map = (self.preprocess(request.control, width, height)
                       if isinstance(request, ControlNetRequest) else None)
        self.started.set()
        if self.gate is not None and not self.gate.wait(timeout=GATE_TIMEOUT_S):
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
        return GenerationResult(tuple(images), control_map, (),
                                self.prompt_info(request.model, request.prompt),
                                self.prompt_info(request.model, request.negative_prompt),
                                time.perf_counter() - started)

    def _steps(self, request: GenerationRequest, batch_index: int,
               on_progress: ProgressCallback | None, cancel: threading.Event | None) -> None:
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
        if isinstance(request, Img2ImgRequest) and request.init_image is not None:
            width, height = request.init_image.size
            step = self.limits.size_step
            width, height = width // step * step, height // step * step
        else:
            entry = self.manifest.get(request.model)
            size = entry.default_size if entry else None
            width, height = (size.width, size.height) if size else (512, 512)
        return request.width or width, request.height or height

    def _parameters(self, prepared: PreparedRequest, seed: int, width: int,
                    height: int) -> dict[str, object]:
        """The engine's own builder, with what this backend knows."""
        request = prepared.request
        entry = self.manifest.get(request.model)
        return image_parameters(prepared, model=entry.id if entry else request.model, seed=seed,
                                width=width, height=height,
                                prompt_info=self.prompt_info(request.model, request.prompt),
                                precision="fp32", version="fake")

    def prompt_info(self, model: str, prompt: str) -> PromptInfo:
        """One token per character of the plain text, in chunks of ``CONTEXT_LENGTH - 2``."""
        tokens = len(parse_prompt(prompt or "").plain_text)
        per_chunk = CONTEXT_LENGTH - 2
        return PromptInfo(tokens, CONTEXT_LENGTH, max(1, -(-tokens // per_chunk)))

    def preprocess(self, control: ControlSpec, width: int | None = None,
                   height: int | None = None) -> Image.Image:
        validate_control(control, self.limits, CONTROL_TYPES)
        with self._lock:
            self.preprocessed.append(control)
        assert control.image is not None  # validate_control refuses a spec without one
        size = (width, height) if width and height else control.image.size
        return Image.new("RGB", size, (128, 128, 128))


# -- a models folder that looks downloaded ---------------------------------------------------

def _placeholder_files(entry: ManifestEntry) -> dict[str, bytes]:
    """What a complete download of ``entry`` leaves, as the catalog checks it
    (``required_paths_present``), with placeholder bytes for the weights."""
    weights = b"placeholder weights"
    if entry.files:
        files = dict.fromkeys(entry.files, weights)
    elif entry.kind is ModelKind.BASE:
        files = {"model_index.json": b"{}"}
        for part in ("unet", "vae", "text_encoder"):
            config = {"sample_size": PLACEHOLDER_LATENT_SIDE} if part == "unet" else {}
            files[f"{part}/config.json"] = json.dumps(config).encode()
            files[f"{part}/diffusion_pytorch_model.safetensors"] = weights
    elif entry.kind is ModelKind.LORA:
        assert entry.weight_file is not None  # the manifest refuses a LoRA without one
        files = {entry.weight_file: weights}
    else:
        files = {"config.json": b"{}", "diffusion_pytorch_model.safetensors": weights}
    assert required_paths_present(entry, set(files)), entry.id
    return files


def place_placeholder_models(settings: EngineSettings, manifest: Manifest,
                             model_ids: list[str] | None = None) -> None:
    """Put ``model_ids`` (all manifest models by default) in the hub cache as a finished
    download would: a snapshot and ``refs/main`` naming it."""
    store = ModelStore(settings, manifest)
    for entry in manifest.models:
        if model_ids is not None and entry.id not in model_ids:
            continue
        snapshot = store.snapshot_path(entry.cache_repo, PLACEHOLDER_COMMIT)
        for name, content in _placeholder_files(entry).items():
            path = snapshot / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        store.point_main_at(entry.cache_repo, PLACEHOLDER_COMMIT)


def _placeholder_setup(data_dir: Path, manifest: Manifest | None,
                       settings: EngineSettings | None,
                       downloaded: list[str] | None) -> tuple[EngineSettings, Manifest]:
    """Settings with the models folder and hub cache in ``data_dir``, and ``downloaded`` (every
    manifest model by default) on disk as placeholders."""
    manifest = manifest or load_manifest(DEFAULT_MANIFEST)
    settings = settings or EngineSettings(models_dir=data_dir / "models",
                                          hub_cache_dir=data_dir / "hub", offline=True,
                                          device="cpu", precision="fp32")
    settings = replace(settings, convert_downloads=False)  # nothing to convert: no weights
    place_placeholder_models(settings, manifest, downloaded)
    return settings, manifest


def fake_image_service(data_dir: Path, *, manifest: Manifest | None = None,
                       settings: EngineSettings | None = None, output_dir: Path | None = None,
                       active_model: str | None = None, downloaded: list[str] | None = None,
                       step_delay: float = 0.0, device_report: DeviceReport | None = None,
                       ) -> tuple[ImageService, FakeEngine]:
    """The real service over a ``FakeEngine``, with its models folder and hub cache in
    ``data_dir`` and ``downloaded`` (every manifest model by default) on disk. The engine is
    built at once, so the returned one is the one the service uses; ``device_report`` is
    what it says it runs on (the CPU by default)."""
    settings, manifest = _placeholder_setup(data_dir, manifest, settings, downloaded)
    engine = FakeEngine(settings, manifest, step_delay=step_delay)
    if device_report is not None:
        engine.report = device_report
    service = ImageService(settings, manifest, output_dir=output_dir, active_model=active_model,
                           engine_factory=lambda _settings, _manifest: engine)
    service.start(preload=False)
    return service, engine


@dataclass
class SlowStart:
    """A backend factory that takes its time: it builds a ``FakeEngine`` only once ``release``
    is set (or ``wait_s`` has passed), so a test can act while the service's backend starts."""

    release: threading.Event = field(default_factory=threading.Event)
    built: threading.Event = field(default_factory=threading.Event)  # set once it returned
    wait_s: float = 30.0
    configure: Callable[[FakeEngine], None] | None = None  # e.g. set its device report
    fails: bool = False  # raise instead: a backend that cannot start

    def __call__(self, settings: EngineSettings, manifest: Manifest) -> FakeEngine:
        self.release.wait(timeout=self.wait_s)
        if self.fails:
            raise RuntimeError("the backend could not start")
        engine = FakeEngine(settings, manifest)
        if self.configure is not None:
            self.configure(engine)
        self.built.set()
        return engine


def slowly_starting_service(data_dir: Path, slow_start: SlowStart, *,
                            manifest: Manifest | None = None,
                            settings: EngineSettings | None = None) -> ImageService:
    """The real service over a backend built by ``slow_start``; not started yet."""
    settings, manifest = _placeholder_setup(data_dir, manifest, settings, None)
    return ImageService(settings, manifest, engine_factory=slow_start)
