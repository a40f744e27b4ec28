"""The engine: runs one prepared request, returns images with their seeds.

A request reaches ``Engine.generate`` prepared and validated once, by
``engine.validation.prepare_request`` (``ImageService.submit`` does it, ``Engine.prepare`` for
direct callers); the engine never prepares or validates it again. Stages of
``Engine.generate``, under the pipeline lock:

1. load the base model, settle the size and the seed;
2. apply the LoRAs and the sampler;
3. prepare the input images (init image, mask, control map);
4. pick the pipeline for the job kind (it shares the base's weights);
5. encode the prompts;
6. for each batch: denoise, decode (fp32 retry on NaN), describe each image.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import platform
import secrets
import threading
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageOps

from engine import images as image_ops
from engine.control_types import CONTROL_TYPES
from engine.device_report import DeviceReport, NvidiaProbe, build_device_report
from engine.errors import (
    JobCancelled,
    ModelError,
    ResourceError,
    SkipImage,
    WarningCode,
)
from engine.few_step import few_step_warning
from engine.generate.aux_annotators import AuxAnnotators
from engine.generate.devices import Placement, pick_placement, torch_facts
from engine.generate.pipelines import LoadedBase, PipelineManager, free_memory
from engine.generate.preprocessors import Preprocessors
from engine.generate.previews import PREVIEW_EVERY_S, PreviewDecoders, PreviewPacer
from engine.generate.speed import COMPILE_CACHE_FOLDER, settle_fused_qkv, user_cache_dir
from engine.generate.step_cache import step_cache, usable_interval
from engine.generate.text_encoding import (
    TextContext,
    encode_prompts,
    prompt_info,
    read_text_context,
)
from engine.generate.vae_tiling import tiling_for_size
from engine.memory_plan import checked_memory_mode
from engine.metadata.parameters import image_parameters
from engine.prompt_syntax import parse_prompt
from engine.requests import (
    PHASE_COMPILING,
    ControlNetRequest,
    EngineWarning,
    GeneratedImage,
    GenerationRequest,
    GenerationResult,
    Img2ImgRequest,
    InpaintRequest,
    PreparedRequest,
    ProgressUpdate,
    PromptInfo,
    ResizeMode,
)
from engine.samplers import build_scheduler, sampler_call_options
from engine.settings import EngineSettings, SpeedSettings
from engine.store.loras import find_lora, lora_exists
from engine.store.manifest import Manifest, load_manifest
from engine.store.model_store import ModelStore
from engine.validation import check_prompt_text, prepare_request, validate_control
from installer.probes import nvidia_gpus

logger = logging.getLogger(__name__)

SEED_MODULUS = 2**32
ENGINE_VERSION = "0.1.0"
ProgressCallback = Callable[[ProgressUpdate], None]


@dataclasses.dataclass
class _Job:
    """What one request resolves to once its base model is loaded."""

    prepared: PreparedRequest
    base: LoadedBase
    width: int
    height: int
    seed: int
    warnings: list[EngineWarning]
    control_map: Image.Image | None = None
    # (mask, original) of an inpaint job: outside the blurred mask the original comes back.
    overlay: tuple[Image.Image, Image.Image] | None = None
    call_args: dict = dataclasses.field(default_factory=dict)
    lora_hashes: dict = dataclasses.field(default_factory=dict)
    step_cache: int = 0  # the step cache's interval for this job; 0 is off

    @property
    def request(self) -> GenerationRequest:
        return self.prepared.request


def _denoising_steps(job: _Job) -> int:
    """The ``num_inference_steps`` the pipeline gets: img2img runs int(steps * strength) of
    them, so a tiny strength raises the count until that is at least one."""
    steps = job.request.steps
    strength = job.request.strength if isinstance(job.request, Img2ImgRequest) else None
    if strength and steps * strength < 1:
        steps = math.ceil(1 / strength)
    return steps


@dataclasses.dataclass
class _TokenCounter:
    tokenizer: object
    context: TextContext
    lock: threading.Lock

    @classmethod
    def load(cls, folder: Path) -> _TokenCounter:
        from types import SimpleNamespace

        from transformers import AutoConfig, AutoTokenizer

        try:
            tokenizer = AutoTokenizer.from_pretrained(folder / "tokenizer")
            config = AutoConfig.from_pretrained(folder / "text_encoder")
        except (OSError, ValueError) as exc:
            logger.warning("no tokenizer in %s: %s", folder, type(exc).__name__)
            raise ModelError("model_load_failed", name=str(folder.name)) from None
        context = read_text_context(tokenizer, SimpleNamespace(config=config))
        return cls(tokenizer, context, threading.Lock())


class Engine:
    def __init__(self, settings: EngineSettings, manifest: Manifest | None = None,
                 placement: Placement | None = None,
                 nvidia_probe: NvidiaProbe = nvidia_gpus) -> None:
        self.settings = settings
        self.limits = settings.limits
        self.manifest = manifest or load_manifest(settings.manifest_path)
        self.placement = placement or pick_placement(settings.device, settings.precision)
        self.store = ModelStore(settings, self.manifest)
        self.pipelines = PipelineManager(self.store, self.placement, settings.max_loaded_models,
                                         memory_mode=checked_memory_mode(settings.memory_mode),
                                         speed=settings.speed,
                                         compile_cache_dir=user_cache_dir() or
                                         settings.models_dir / COMPILE_CACHE_FOLDER)
        aux = AuxAnnotators(self.store.complete_folder, device=str(self.placement.device))
        self.preprocessors = Preprocessors(self.store.resolve, aux, str(self.placement.device))
        self.previews = PreviewDecoders(self.store, self.placement)
        # Seconds between live previews within a batch (``PreviewPacer``); 0: every step.
        self.preview_every_s = PREVIEW_EVERY_S
        self._counters: dict[Path, _TokenCounter] = {}
        self._counters_lock = threading.Lock()
        self._nvidia_probe = nvidia_probe
        self._device_report: DeviceReport | None = None
        self._device_report_lock = threading.Lock()

    # -- requests ---------------------------------------------------------------------------

    def prepare(self, request: GenerationRequest | PreparedRequest) -> PreparedRequest:
        """The one request path (``prepare_request``) with this engine's limits, control types
        and LoRAs: canonical, validated, ready to queue and run."""
        return prepare_request(request, self.limits, control_types=CONTROL_TYPES,
                               lora_exists=self._lora_exists)

    def generate(self, prepared: PreparedRequest, *, on_progress: ProgressCallback | None = None,
                 cancel: threading.Event | None = None) -> GenerationResult:
        if not isinstance(prepared, PreparedRequest):
            raise TypeError("Engine.generate runs prepared requests: pass it through "
                            "Engine.prepare (engine.validation.prepare_request) first")
        request = prepared.request
        started = time.perf_counter()
        job: _Job | None
        with self.pipelines.lock:
            try:
                # 1. Load the base model, settle the size and the seed
                job = self._start_job(prepared)
                # 2. Apply the LoRAs and the sampler
                self._apply_loras_and_sampler(job)
                # 3. Prepare the input images (init image, mask, control map)
                self._prepare_images(job)
                # 4. Pick the pipeline for the job kind
                pipe = self._pipeline_for(job)
                # 5. Encode the prompts
                encoded = self._encode_prompts(job)
                # 6. For each batch: denoise, decode, describe each image
                images = self._run_batches(job, pipe, encoded, on_progress, cancel)
                self._warn_if_compile_skipped(job)
            except torch.OutOfMemoryError:
                # Freed below, once the traceback no longer holds the tensors.
                job = pipe = encoded = None
            if job is None:
                free_memory()
                raise ResourceError("out_of_memory")
        duration = time.perf_counter() - started
        logger.info("%s on %s: %dx%d, %d steps, seed %d, %d images in %.2f s",
                    request.kind.value, job.base.model_id, job.width, job.height, request.steps,
                    job.seed, len(images), duration)
        return GenerationResult(tuple(images), job.control_map, tuple(job.warnings),
                                encoded.positive_info, encoded.negative_info, duration)

    # -- models ------------------------------------------------------------------------------

    def load(self, model: str) -> None:
        """Load ``model``'s base now (a job would load it too). Out of device memory, what was
        loaded is freed and ``out_of_memory`` raised: the app goes on."""
        try:
            self.pipelines.base(model)
            return
        except torch.OutOfMemoryError:
            pass  # freed below, once the traceback no longer holds the tensors
        free_memory()
        raise ResourceError("out_of_memory")

    def unload_all(self) -> None:
        """Free the device: every loaded model goes (the next job loads what it needs)."""
        with self.pipelines.lock:
            self.previews.release()
            self.pipelines.unload_all()

    def set_memory_mode(self, mode: str) -> None:
        """Takes effect as models load again: the loaded ones are released now. The old
        names ("normal", "low") are accepted."""
        mode = checked_memory_mode(mode)
        with self.pipelines.lock:
            self.pipelines.memory_mode = mode
            self.pipelines.unload_all()

    def set_speed(self, speed: SpeedSettings) -> None:
        """Options applied at load time release the loaded models (the next job loads them
        with the new ones); the others take effect with the next job."""
        with self.pipelines.lock:
            reload = speed.load_time != self.pipelines.speed.load_time
            self.pipelines.speed = speed
            if reload:
                self.pipelines.unload_all()

    def device_memory(self) -> dict[str, dict[str, int]] | None:
        """A1111's ``cuda`` part of /sdapi/v1/memory in bytes; None off CUDA."""
        if self.placement.device.type != "cuda":
            return None
        free, total = torch.cuda.mem_get_info()
        return {"system": {"free": free, "used": total - free, "total": total},
                "active": {"peak": torch.cuda.max_memory_allocated()}}

    def device_report(self) -> DeviceReport:
        """Made once: torch's facts do not change while it runs, and the probe behind a
        problem (``nvidia-smi``) may take seconds. The loaded models' memory modes are read
        each time."""
        with self._device_report_lock:
            if self._device_report is None:
                facts = torch_facts(self.placement, self.settings.device)
                self._device_report = build_device_report(facts, self._nvidia_probe,
                                                          platform.system())
            return dataclasses.replace(self._device_report,
                                       models=self.pipelines.memory_modes())

    def prompt_info(self, model: str, prompt: str) -> PromptInfo:
        """Token count of ``prompt`` against ``model``'s context, for a live counter.

        Uses a tokenizer of its own, so counting never waits for a running job.
        """
        check_prompt_text("prompt", prompt, self.limits)
        counter = self._token_counter(self.store.base_folder(model).resolve())
        with counter.lock:
            return prompt_info(parse_prompt(prompt), counter.tokenizer, counter.context)

    def _token_counter(self, folder: Path) -> _TokenCounter:
        with self._counters_lock:
            if folder not in self._counters:
                self._counters[folder] = _TokenCounter.load(folder)
            return self._counters[folder]

    def preprocess(self, control, width: int | None = None, height: int | None = None):
        """The control map a ControlNet job would use, for a preview."""
        validate_control(control, self.limits, CONTROL_TYPES)
        image = image_ops.to_rgb(control.image)
        if width and height:
            image = image_ops.resize(image, width, height, ResizeMode.CROP_AND_RESIZE)
        if not control.preprocess:
            return image
        resolution = max(64, min(2048, *image.size))
        return self.preprocessors.run(control, image, resolution=resolution)

    # -- stages -----------------------------------------------------------------------------

    def _start_job(self, prepared: PreparedRequest) -> _Job:
        request = prepared.request
        base = self.pipelines.base(request.model)
        width, height = self._size_for(request, base)
        seed = request.seed if request.seed != -1 else secrets.randbelow(SEED_MODULUS)
        return _Job(prepared, base, width, height, seed, warnings=[])

    def _apply_loras_and_sampler(self, job: _Job) -> None:
        request, base = job.request, job.base
        sources = self._lora_sources(request, base, job.warnings)
        job.lora_hashes = {s.name: self.store.file_hash(s.path)[:12] for s, _ in sources}
        base.loras.apply(base.pipe, sources)
        settle_fused_qkv(base.pipe.unet, self.pipelines.speed, loras_active=bool(sources))
        base.pipe.scheduler = build_scheduler(base.scheduler_config, request.sampler,
                                              request.schedule, _denoising_steps(job))

    def _size_for(self, request: GenerationRequest, base: LoadedBase) -> tuple[int, int]:
        if request.width and request.height:
            return request.width, request.height
        if isinstance(request, Img2ImgRequest):
            assert request.init_image is not None  # validate_request refuses a missing image
            width, height = ImageOps.exif_transpose(request.init_image).size
        else:
            width, height = base.default_size
        width, height = request.width or width, request.height or height
        return image_ops.fit_to_limits(width, height, self.limits, request.batch_size)

    def _prepare_images(self, job: _Job) -> None:
        request, size = job.request, (job.width, job.height)
        if type(request) is not Img2ImgRequest:
            # Only the plain img2img pipeline takes its size from the init image alone.
            job.call_args.update(width=job.width, height=job.height)
        if isinstance(request, Img2ImgRequest):
            assert request.init_image is not None  # validate_request refuses a missing image
            init = image_ops.resize(image_ops.to_rgb(request.init_image), *size,
                                    request.resize_mode)
            job.call_args.update(image=init, strength=request.strength)
        if isinstance(request, InpaintRequest):
            assert request.mask is not None  # validate_request refuses a missing image
            mask = image_ops.to_mask(request.mask, request.mask_blur, request.invert_mask)
            mask = image_ops.resize(mask, *size, request.resize_mode)
            job.call_args["mask_image"] = mask
            job.overlay = (mask, job.call_args["image"])
        if isinstance(request, ControlNetRequest):
            self._prepare_control(job, request)

    def _prepare_control(self, job: _Job, request: ControlNetRequest) -> None:
        control = request.control
        controlnet = self.pipelines.controlnet(control.model)
        entry = self.store.entry(control.model)
        if entry and entry.base and entry.base != job.base.model_id:
            job.warnings.append(EngineWarning(WarningCode.CONTROLNET_BASE_MISMATCH, {
                "controlnet": control.model, "base": job.base.model_id, "expected": entry.base}))
        job.control_map = self.preprocess(control, job.width, job.height)
        job.call_args.update(
            image=job.control_map, controlnet_conditioning_scale=float(control.weight),
            control_guidance_start=float(control.start), control_guidance_end=float(control.end))
        job.call_args["_controlnet"] = controlnet

    def _pipeline_for(self, job: _Job):
        controlnet = job.call_args.pop("_controlnet", None)
        pipe = self.pipelines.pipeline(job.base, job.request.kind, controlnet)
        pipe.scheduler = job.base.pipe.scheduler
        job.step_cache = usable_interval(pipe.unet, self.pipelines.speed.step_cache_interval)
        return pipe

    def _encode_prompts(self, job: _Job):
        base = job.base
        return encode_prompts(parse_prompt(job.request.prompt),
                              parse_prompt(job.request.negative_prompt),
                              base.pipe.tokenizer, base.pipe.text_encoder, base.text_context,
                              self.placement.device)

    def _run_batches(self, job: _Job, pipe, encoded, on_progress,
                     cancel) -> list[GeneratedImage]:
        request, base = job.request, job.base
        results = []
        for batch_index in range(request.batch_count):
            first = job.seed + batch_index * request.batch_size
            seeds = [(first + i) % SEED_MODULUS for i in range(request.batch_size)]
            if job.call_args.get("strength") == 0:
                # Nothing to repaint: the (resized) init image is the result, as in A1111.
                decoded = [job.call_args["image"].copy() for _ in seeds]
            else:
                try:
                    latents = self._denoise(pipe, job, encoded, seeds, batch_index,
                                            on_progress, cancel)
                except SkipImage:
                    logger.info("batch %d of %d skipped", batch_index + 1, request.batch_count)
                    continue
                decoded = [self._keep_unmasked(pipe, job, image)
                           for image in self._decode(base, latents)]
            for image, seed in zip(decoded, seeds, strict=True):
                results.append(GeneratedImage(image, seed, self._parameters(job, seed, encoded)))
        return results

    def _denoise(self, pipe, job: _Job, encoded, seeds, batch_index, on_progress, cancel):
        request = job.request
        # What on_progress raised (cancel, skip) while compiling, raised at the step's end:
        # raised inside the compiler it would read as a compile failure.
        deferred: list[Exception] = []

        def on_compile() -> None:
            if on_progress is None:
                return
            try:
                on_progress(ProgressUpdate(0, pipe.num_timesteps, batch_index,
                                           request.batch_count, phase=PHASE_COMPILING))
            except Exception as exc:  # noqa: BLE001 - re-raised by on_step_end
                deferred.append(exc)

        preview = self.previews.maker(self.pipelines.speed.preview_method) if on_progress else None
        pacer = PreviewPacer(self.preview_every_s)

        def on_step_end(pipeline, step, timestep, kwargs):
            if deferred:
                raise deferred.pop()
            # Raising here stops within one step; pipe._interrupt would still run the VAE.
            if cancel is not None and cancel.is_set():
                raise JobCancelled()
            if on_progress is not None and preview is not None:
                image = preview(kwargs.get("latents")) if pacer.due() else None
                on_progress(ProgressUpdate(step + 1, pipeline.num_timesteps, batch_index,
                                           request.batch_count, image))
            return kwargs

        generators = [torch.Generator("cpu").manual_seed(seed) for seed in seeds]
        self.pipelines.compile_watch.listener = on_compile
        try:
            with step_cache(pipe.unet, job.step_cache):
                output = pipe(
                    prompt_embeds=encoded.positive, negative_prompt_embeds=encoded.negative,
                    num_inference_steps=_denoising_steps(job),
                    guidance_scale=float(request.guidance),
                    num_images_per_prompt=request.batch_size, generator=generators,
                    output_type="latent",
                    callback_on_step_end=on_step_end, **sampler_call_options(request.sampler),
                    **job.call_args)
        finally:
            self.pipelines.compile_watch.listener = None
        return output.images

    def _warn_if_compile_skipped(self, job: _Job) -> None:
        """Compiling failed for this model (it ran eager, slower): say so on each job."""
        if self.pipelines.speed.compile_unet and self.pipelines.compile_watch.failed:
            job.warnings.append(EngineWarning(WarningCode.COMPILE_SKIPPED, {}))

    @staticmethod
    def _keep_unmasked(pipe, job: _Job, image: Image.Image) -> Image.Image:
        """Paste the original back where the (blurred) mask is not white, as A1111 does.

        The VAE's decode of the whole image drifts even where the latents were kept, and
        repeated inpainting would otherwise wear the untouched area down.
        """
        if job.overlay is None:
            return image
        mask, original = job.overlay
        return pipe.image_processor.apply_overlay(mask, original, image)

    @torch.no_grad()
    def _decode(self, base: LoadedBase, latents: torch.Tensor) -> list[Image.Image]:
        """Decode latents; on NaN (fp16 VAE overflow) decode again in fp32, never save black."""
        vae = base.pipe.vae
        scaled = latents / vae.config.scaling_factor
        factor = base.pipe.vae_scale_factor
        with tiling_for_size(vae, scaled.shape[-1] * factor, scaled.shape[-2] * factor):
            decoded = vae.decode(scaled.to(vae.dtype)).sample
            if torch.isnan(decoded).any() and vae.dtype != torch.float32:
                logger.warning("VAE produced NaN in %s; decoding again in fp32", vae.dtype)
                vae.to(torch.float32)
                try:
                    decoded = vae.decode(scaled.float()).sample
                finally:
                    vae.to(self.placement.dtype)
        if torch.isnan(decoded).any():
            raise ResourceError("nan_output")
        array = ((decoded.float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
        array = array.permute(0, 2, 3, 1).cpu().numpy()
        return [Image.fromarray(np.ascontiguousarray(frame)) for frame in array]

    # -- LoRAs ------------------------------------------------------------------------------

    def _lora_exists(self, name: str) -> bool:
        return lora_exists(self.store, self.settings, name)

    def _lora_sources(self, request, base: LoadedBase, warnings: list[EngineWarning]):
        wanted = []
        for lora in request.loras:
            source = find_lora(self.store, self.settings, lora.name)
            if source is None:
                raise ModelError("unknown_lora", name=lora.name)
            if source.manifest_base and source.manifest_base != base.model_id:
                warnings.append(EngineWarning(WarningCode.LORA_BASE_MISMATCH, {
                    "lora": lora.name, "base": base.model_id, "expected": source.manifest_base}))
            if source.sampling is not None and lora.weight != 0:
                settings_warning = few_step_warning(lora.name, source.sampling, request)
                if settings_warning is not None:
                    warnings.append(settings_warning)
            wanted.append((source, float(lora.weight)))
        return wanted

    def unload_loras(self) -> None:
        with self.pipelines.lock:
            for base in self.pipelines._bases.values():
                base.loras.unload_all(base.pipe)

    # -- description ------------------------------------------------------------------------

    def _parameters(self, job: _Job, seed: int, encoded) -> dict:
        return image_parameters(job.prepared, model=job.base.model_id, seed=seed,
                                width=job.width, height=job.height,
                                prompt_info=encoded.positive_info,
                                precision=self.placement.precision, version=ENGINE_VERSION,
                                model_hash=job.base.model_hash, lora_hashes=job.lora_hashes,
                                step_cache=job.step_cache)
