"""LoRAs in the three formats found in the wild, detected from their keys.

- PAI's own: ``unet.save_attn_procs()`` files (``...attn1.processor.to_q_lora.down.weight``).
  Current diffusers' ``load_lora_weights`` silently loads nothing from them, so they go
  through ``unet.load_lora_adapter(prefix=None)``, which converts the old processor names.
- diffusers/peft: ``unet.``/``text_encoder.`` prefixed ``lora_A``/``lora_B`` (or ``lora.down``).
- kohya: ``lora_unet_...``/``lora_te_...`` with ``lora_down``/``lora_up`` and ``alpha``.

Adapters stay loaded beside the base weights (never fused), so changing weights or switching
LoRAs is ``set_adapters`` and unloading restores the base exactly.
"""

from __future__ import annotations

import enum
import json
import logging
import os
import struct
from collections import OrderedDict
from pathlib import Path

import torch

from engine.errors import ModelError
from engine.store.loras import LoraSource

logger = logging.getLogger(__name__)

MAX_SAFETENSORS_HEADER = 100 * 1024 * 1024
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt")


class LoraFormat(str, enum.Enum):
    PAI_LEGACY = "pai_legacy"
    DIFFUSERS = "diffusers"
    KOHYA = "kohya"


def detect_format(keys: list[str]) -> LoraFormat:
    if any(".processor." in k and "_lora." in k for k in keys):
        return LoraFormat.PAI_LEGACY
    if any(k.startswith(("lora_unet_", "lora_te_", "lora_te1_")) for k in keys):
        return LoraFormat.KOHYA
    if any(k.startswith(("unet.", "text_encoder.")) and "lora" in k for k in keys):
        return LoraFormat.DIFFUSERS
    raise ModelError("lora_unknown_format")


def weights_only_forced_off() -> bool:
    """torch ignores ``weights_only=True`` when this is set: then no pickle is safe to open."""
    return os.environ.get("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "0").lower() in ("1", "y", "yes",
                                                                              "true")


def _check_safetensors_header(path: Path, name: str) -> None:
    """Refuse a file whose header is absurd before safetensors allocates for it."""
    with path.open("rb") as handle:
        raw = handle.read(8)
        if len(raw) < 8:
            raise ModelError("lora_corrupt", name=name)
        (length,) = struct.unpack("<Q", raw)
        if length > min(MAX_SAFETENSORS_HEADER, path.stat().st_size - 8):
            raise ModelError("lora_corrupt", name=name)
        try:
            json.loads(handle.read(length))
        except ValueError:
            raise ModelError("lora_corrupt", name=name) from None


def read_lora_file(path: Path, name: str, allow_pickle: bool) -> dict[str, torch.Tensor]:
    """Safetensors always; pickles only when allowed, and only weights-only."""
    from safetensors.torch import load_file

    if path.suffix == ".safetensors":
        _check_safetensors_header(path, name)
        try:
            return load_file(str(path))
        except Exception:  # noqa: BLE001 - safetensors raises its own untyped errors
            raise ModelError("lora_corrupt", name=name) from None
    if path.suffix not in PICKLE_SUFFIXES:
        raise ModelError("lora_unsupported_file", name=name)
    if not allow_pickle:
        raise ModelError("lora_pickle_refused", name=name)
    if weights_only_forced_off():
        raise ModelError("weights_only_disabled")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:  # noqa: BLE001 - the unpickler fails in many ways on a bad file
        raise ModelError("lora_corrupt", name=name) from None
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise ModelError("lora_corrupt", name=name)
    return state


def _components_with(pipe, adapter_name: str) -> list:
    found = []
    for component in (pipe.unet, pipe.text_encoder):
        if adapter_name in (getattr(component, "peft_config", None) or {}):
            found.append(component)
    return found


class LoraAdapters:
    """The LoRAs loaded into one base pipeline, most recently used last, at most ``capacity``."""

    def __init__(self, capacity: int = 8) -> None:
        self.capacity = capacity
        self._loaded: OrderedDict[str, LoraFormat] = OrderedDict()

    @property
    def loaded(self) -> tuple[str, ...]:
        return tuple(self._loaded)

    def _load(self, pipe, source: LoraSource) -> None:
        state = read_lora_file(source.path, source.name, source.allow_pickle)
        lora_format = detect_format(list(state))
        name = source.adapter_name
        try:
            if lora_format is LoraFormat.PAI_LEGACY:
                pipe.unet.load_lora_adapter(state, prefix=None, adapter_name=name)
            else:
                pipe.load_lora_weights(state, adapter_name=name)
        except torch.OutOfMemoryError:
            self._discard(pipe, name)
            raise
        except (RuntimeError, ValueError, KeyError, TypeError) as exc:
            logger.info("LoRA %s does not fit this model: %s", source.name, type(exc).__name__)
            self._discard(pipe, name)
            raise ModelError("lora_incompatible", name=source.name) from None
        if not _components_with(pipe, name):
            # diffusers logs and loads nothing when no key matches: that is a mismatch too.
            raise ModelError("lora_incompatible", name=source.name)
        self._loaded[name] = lora_format
        logger.info("loaded LoRA %s (%s)", source.name, lora_format.value)

    def _discard(self, pipe, adapter_name: str) -> None:
        if _components_with(pipe, adapter_name):
            pipe.delete_adapters([adapter_name])
        self._loaded.pop(adapter_name, None)
        if not self._loaded:
            # Removes the peft wrappers too, so the modules are exactly the base ones again.
            pipe.unload_lora_weights()

    def apply(self, pipe, wanted: list[tuple[LoraSource, float]]) -> None:
        """Make exactly ``wanted`` active with their weights; load what is missing."""
        for source, _ in wanted:
            if source.adapter_name in self._loaded:
                self._loaded.move_to_end(source.adapter_name)
            else:
                self._load(pipe, source)
        self._evict(pipe, keep={s.adapter_name for s, _ in wanted})
        if not wanted:
            if self._loaded:
                pipe.disable_lora()
            return
        pipe.enable_lora()
        pipe.set_adapters([s.adapter_name for s, _ in wanted], [w for _, w in wanted])

    def _evict(self, pipe, keep: set[str]) -> None:
        for name in list(self._loaded):
            if len(self._loaded) <= self.capacity:
                return
            if name not in keep:
                self._discard(pipe, name)

    def unload_all(self, pipe) -> None:
        for name in list(self._loaded):
            self._discard(pipe, name)
