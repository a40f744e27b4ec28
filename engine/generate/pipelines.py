"""Loaded pipelines: each base model once, its img2img/inpaint/ControlNet pipelines derived
with ``from_pipe`` (the same weight tensors, no extra memory), and a bounded LRU of bases.

Callers hold ``PipelineManager.lock`` around a whole job, so no two jobs use or swap a
pipeline at once.
"""

from __future__ import annotations

import gc
import logging
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.errors import ModelError
from engine.generate.devices import Placement
from engine.generate.lora import LoraAdapters, weights_only_forced_off
from engine.generate.lora_hotswap import HotswapLoras
from engine.generate.memory import place_pipeline
from engine.generate.speed import CompileWatch, apply_load_time, use_compile_cache
from engine.generate.text_encoding import TextContext, read_text_context
from engine.memory_plan import MemoryChoice, ModelMemory
from engine.requests import JobKind
from engine.settings import SpeedSettings
from engine.store.manifest import ManifestEntry
from engine.store.model_store import ModelStore

logger = logging.getLogger(__name__)


@dataclass
class LoadedBase:
    reference: str
    folder: Path
    entry: ManifestEntry | None
    # A diffusers pipeline: its unet, vae, scheduler... are set at run time (register_modules),
    # so no static type names them.
    pipe: Any
    scheduler_config: dict
    text_context: TextContext
    model_hash: str | None = None
    # HotswapLoras when the UNet is compiled: changing LoRAs then never recompiles it.
    loras: LoraAdapters | HotswapLoras = field(default_factory=LoraAdapters)
    derived: dict = field(default_factory=dict)
    memory: MemoryChoice | None = None  # the memory mode it runs in

    @property
    def default_size(self) -> tuple[int, int]:
        if self.entry and self.entry.default_size:
            return self.entry.default_size.width, self.entry.default_size.height
        side = self.pipe.unet.config.sample_size * self.pipe.vae_scale_factor
        return side, side

    @property
    def model_id(self) -> str:
        return self.entry.id if self.entry else self.reference


def _pipeline_class(kind: JobKind):
    import diffusers

    return {
        JobKind.TXT2IMG: diffusers.StableDiffusionPipeline,
        JobKind.IMG2IMG: diffusers.StableDiffusionImg2ImgPipeline,
        JobKind.INPAINT: diffusers.StableDiffusionInpaintPipeline,
        JobKind.CONTROLNET: diffusers.StableDiffusionControlNetPipeline,
    }[kind]


def _has_safetensors(folder: Path) -> bool:
    """PAI ships pickles only; asking for them up front avoids a failed safetensors probe."""
    return any(folder.glob("*.safetensors"))


def _prefer_safetensors(folder: Path) -> bool | None:
    """True or False when every component agrees; None lets diffusers try each."""
    found = {_has_safetensors(folder / part) for part in ("unet", "vae", "text_encoder")}
    return found.pop() if len(found) == 1 else None


def _load_failed(reference: str, error: Exception) -> ModelError:
    """Damaged weights fail in any way a parser can (an unpickling error, EOF, a dict of the
    wrong things, tensors left on "meta"): all of them are the file's fault, not a server
    error, so each becomes ``model_load_failed`` and the engine goes on."""
    logger.warning("loading %s failed: %s", reference, type(error).__name__)
    return ModelError("model_load_failed", name=reference)


def free_memory() -> None:
    gc.collect()
    if torch.cuda.is_available():
        torch.cuda.empty_cache()


class PipelineManager:
    def __init__(self, store: ModelStore, placement: Placement, max_loaded: int = 2,
                 max_controlnets: int = 2, memory_mode: str = "auto",
                 speed: SpeedSettings | None = None,
                 compile_cache_dir: Path | None = None) -> None:
        self.store = store
        self.speed = speed or SpeedSettings()
        # Every compiled module's backend; tests give it a counting backend (same code path).
        self.compile_watch = CompileWatch()
        self.compile_cache_dir = compile_cache_dir
        self.placement = placement
        self.memory_mode = memory_mode
        self.max_loaded = max_loaded
        self.max_controlnets = max_controlnets
        self.lock = threading.RLock()
        self._bases: OrderedDict[Path, LoadedBase] = OrderedDict()
        self._controlnets: OrderedDict[Path, object] = OrderedDict()

    @property
    def loaded_models(self) -> tuple[str, ...]:
        return tuple(base.model_id for base in self._bases.values())

    def memory_modes(self) -> tuple[ModelMemory, ...]:
        """Each loaded base's memory mode. Read without the lock (a job holds it for its whole
        run): copying the values is one step under the GIL."""
        return tuple(ModelMemory(base.model_id, base.memory) for base in list(self._bases.values())
                     if base.memory is not None)

    def base(self, reference: str) -> LoadedBase:
        folder = self.store.base_location(reference).resolve()
        with self.lock:
            if folder in self._bases:
                self._bases.move_to_end(folder)
                return self._bases[folder]
            while len(self._bases) >= self.max_loaded:
                self._evict_oldest()
            loaded = self._load_base(reference, folder)
            self._bases[folder] = loaded
            return loaded

    def _evict_oldest(self) -> None:
        folder, evicted = self._bases.popitem(last=False)
        logger.info("unloading %s to make room", evicted.model_id)
        del evicted
        free_memory()

    def unload_all(self) -> None:
        with self.lock:
            self._bases.clear()
            self._controlnets.clear()
            self.compile_watch.reset()
            free_memory()

    def _load_base(self, reference: str, folder: Path) -> LoadedBase:
        from diffusers import StableDiffusionPipeline

        if weights_only_forced_off():
            raise ModelError("weights_only_disabled")
        started = time.perf_counter()
        common = {"dtype": self.placement.dtype, "safety_checker": None,
                  "feature_extractor": None, "requires_safety_checker": False}
        try:
            if folder.is_file():  # an A1111/Civitai single file: configs from a local base
                pipe = self._from_single_file(folder, common)
            else:
                pipe = StableDiffusionPipeline.from_pretrained(
                    folder, use_safetensors=_prefer_safetensors(folder), **common)
            # Weights a file left out are still "meta": moving them fails.
            memory = place_pipeline(pipe, self.memory_mode, self.placement, reference)
            self._speed_up(pipe.unet)
            if self.speed.channels_last:
                pipe.vae.to(memory_format=torch.channels_last)
        except (torch.OutOfMemoryError, ModelError):
            raise  # not a broken model (the caller frees memory), or already explained
        except Exception as exc:  # noqa: BLE001 - see _load_failed
            raise _load_failed(reference, exc) from None
        pipe.set_progress_bar_config(disable=True)
        logger.info("loaded %s in %.2f s", reference, time.perf_counter() - started)
        return LoadedBase(
            reference=reference, folder=folder, entry=self.store.entry(reference), pipe=pipe,
            scheduler_config=dict(pipe.scheduler.config),
            text_context=read_text_context(pipe.tokenizer, pipe.text_encoder),
            model_hash=self.store.model_hash(folder), memory=memory,
            loras=HotswapLoras() if self.speed.compile_unet else LoraAdapters())

    def _speed_up(self, model) -> None:
        """The load-time speed options on a UNet or a ControlNet (``engine.generate.speed``)."""
        if self.speed.compile_unet and self.compile_cache_dir is not None:
            use_compile_cache(self.compile_cache_dir)
        apply_load_time(model, self.speed, self.compile_watch)

    def _from_single_file(self, path: Path, common: dict):
        from diffusers import AutoencoderKL, StableDiffusionPipeline

        from engine.store.single_file import read_shape

        shape = read_shape(path)
        config = self.store.single_file_config(path, shape)
        if not shape.has_vae:  # a file without a VAE uses its base's
            common = {**common, "vae": AutoencoderKL.from_pretrained(
                config / "vae", dtype=self.placement.dtype,
                use_safetensors=_has_safetensors(config / "vae"))}
        return StableDiffusionPipeline.from_single_file(
            str(path), config=str(config), local_files_only=True, **common)

    def controlnet(self, reference: str):
        from diffusers import ControlNetModel

        folder = self.store.resolve(reference).resolve()
        with self.lock:
            if folder in self._controlnets:
                self._controlnets.move_to_end(folder)
                return self._controlnets[folder]
            if weights_only_forced_off():
                raise ModelError("weights_only_disabled")
            try:
                model = ControlNetModel.from_pretrained(
                    folder, dtype=self.placement.dtype, use_safetensors=_has_safetensors(folder))
                model.to(self.placement.device)
                self._speed_up(model)
            except torch.OutOfMemoryError:
                raise
            except Exception as exc:  # noqa: BLE001 - see _load_failed
                raise _load_failed(reference, exc) from None
            while len(self._controlnets) >= self.max_controlnets:
                self._controlnets.popitem(last=False)
                for base in self._bases.values():
                    base.derived = {k: v for k, v in base.derived.items() if k[1] is None}
            self._controlnets[folder] = model
            return model

    def pipeline(self, base: LoadedBase, kind: JobKind, controlnet=None):
        """The pipeline for ``kind``, sharing the base's modules (made once, then reused)."""
        if kind is JobKind.TXT2IMG:
            return base.pipe
        key = (kind, id(controlnet) if controlnet is not None else None)
        if key not in base.derived:
            extra = {"controlnet": controlnet} if controlnet is not None else {}
            # from_pipe's dtype defaults to fp32 (diffusers 0.42) and casts the shared modules
            # in place: without it, every job after the first img2img, inpaint or ControlNet
            # job would run the base in fp32 (twice the memory, a fraction of the speed).
            derived = _pipeline_class(kind).from_pipe(base.pipe, dtype=self.placement.dtype,
                                                      **extra)
            derived.set_progress_bar_config(disable=True)
            base.derived[key] = derived
        return base.derived[key]
