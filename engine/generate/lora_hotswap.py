"""LoRAs on a compiled UNet, changed without recompiling it.

A compiled UNet recompiles whenever its modules change (a LoRA added or removed, adapters
switched on or off) and whenever a Python float it reads changes (peft's LoRA scaling). So
here the UNet keeps a fixed set of adapter *slots* ("slot0", "slot1", ...):

- a new LoRA goes into a slot by hot-swapping its weights into the slot's tensors (peft's
  ``hotswap_adapter_from_state_dict``; ranks padded to ``target_rank`` when a slot is made);
- a weight is the slot's scaling *tensor*, filled in place; a slot not in use has weight 0;
- slots are made only when a job asks for more LoRAs at once than there are slots.

What still recompiles: the first LoRA after a load (the slot is made), a job with more LoRAs
than ever before (another slot), a LoRA of rank above ``target_rank`` or one whose layers or
alpha pattern differ from the slot's (hot-swap refuses it: the slot is made anew), and
``unload_all``. The text encoder is not compiled: its LoRA parts load under their own names
as usual.

Measured with torch 2.14 (which treats module parameters as graph inputs): what recompiles is
a float scaling that changes and a change of adapter structure or shape; re-making a slot with
the same padded shapes does not, so swapping in place mainly saves the re-injection work.
"""

from __future__ import annotations

import logging
from collections import OrderedDict

import torch

from engine.errors import ModelError
from engine.generate.lora import LoraFormat, detect_format, read_lora_file
from engine.store.loras import LoraSource

logger = logging.getLogger(__name__)

HOTSWAP_RANK = 128  # the highest LoRA rank that swaps in without recompiling (SD 1.5 LoRAs)
LOAD_ERRORS = (RuntimeError, ValueError, KeyError, TypeError)


def _lora_layers(model, adapter: str):
    from peft.tuners.lora import LoraLayer

    for name, module in model.named_modules():
        if isinstance(module, LoraLayer) and adapter in module.scaling:
            yield name, module


def _rank(state: dict[str, torch.Tensor]) -> int:
    ranks = [value.shape[0] for key, value in state.items()
             if key.endswith(("lora_A.weight", "down.weight")) and value.ndim > 1]
    return max(ranks, default=0)


class HotswapLoras:
    """The LoRAs of one base pipeline whose UNet is compiled (same interface as
    ``LoraAdapters``): ``loaded`` names the LoRAs in the slots."""

    def __init__(self, capacity: int = 8, target_rank: int = HOTSWAP_RANK) -> None:
        self.capacity = capacity
        self.target_rank = target_rank
        self._slots: list[str | None] = []  # the LoRA (adapter name) in each slot
        self._unit_scales: list[dict[str, float]] = []  # per slot: layer -> scaling at weight 1
        self._text: OrderedDict[str, None] = OrderedDict()  # text-encoder adapters, by LoRA

    @property
    def loaded(self) -> tuple[str, ...]:
        return tuple(name for name in self._slots if name is not None)

    def apply(self, pipe, wanted: list[tuple[LoraSource, float]]) -> None:
        """Make exactly ``wanted`` active with their weights; swap in what is missing."""
        slots = self._assign([source.adapter_name for source, _ in wanted])
        for (source, _), index in zip(wanted, slots, strict=True):
            if self._slots[index] != source.adapter_name:
                self._fill(pipe, index, source)
        weights = dict.fromkeys(range(len(self._slots)), 0.0)
        weights.update({index: weight for (_, weight), index in zip(wanted, slots, strict=True)})
        for index, weight in weights.items():
            self._scale(pipe.unet, index, weight)
        self._apply_text(pipe, wanted)

    def _assign(self, names: list[str]) -> list[int]:
        """A slot for each wanted LoRA: the one holding it, else a free one, else a new one."""
        chosen: list[int | None] = [self._slots.index(n) if n in self._slots else None
                                    for n in names]
        free = [i for i in range(len(self._slots)) if i not in chosen]
        for position, index in enumerate(chosen):
            if index is None:
                if not free:
                    self._slots.append(None)
                    self._unit_scales.append({})
                    free.append(len(self._slots) - 1)
                chosen[position] = free.pop(0)
        return [index for index in chosen if index is not None]

    # -- one slot -----------------------------------------------------------------------------

    def _fill(self, pipe, index: int, source: LoraSource) -> None:
        slot = f"slot{index}"
        state = read_lora_file(source.path, source.name, source.allow_pickle)
        lora_format = detect_format(list(state))
        try:
            if lora_format is LoraFormat.PAI_LEGACY:
                unet_state, text_state, alphas, metadata = state, None, None, None
            else:
                converted, alphas, metadata = pipe.lora_state_dict(state,
                                                                   return_lora_metadata=True)
                unet_state = {k: v for k, v in converted.items() if k.startswith("unet.")}
                text_state = {k: v for k, v in converted.items()
                              if k.startswith("text_encoder.")} or None
            self._fill_unet(pipe, slot, unet_state, alphas, metadata,
                            prefix=None if lora_format is LoraFormat.PAI_LEGACY else "unet")
            if text_state and source.adapter_name not in self._text:
                pipe.load_lora_into_text_encoder(
                    text_state, network_alphas=alphas, text_encoder=pipe.text_encoder,
                    adapter_name=source.adapter_name, _pipeline=pipe, metadata=metadata)
                self._text[source.adapter_name] = None
        except torch.OutOfMemoryError:
            self._discard_slot(pipe, index)
            raise
        except LOAD_ERRORS as exc:
            logger.info("LoRA %s does not fit this model: %s", source.name, type(exc).__name__)
            self._discard_slot(pipe, index)
            raise ModelError("lora_incompatible", name=source.name) from None
        self._slots[index] = source.adapter_name
        self._unit_scales[index] = {name: float(module.scaling[slot])
                                    for name, module in _lora_layers(pipe.unet, slot)}
        if not unet_state:  # a text-encoder-only LoRA: the slot's old weights must not act
            self._unit_scales[index] = dict.fromkeys(self._unit_scales[index], 0.0)
        logger.info("LoRA %s in %s (%s)", source.name, slot, lora_format.value)

    def _fill_unet(self, pipe, slot: str, state, alphas, metadata, prefix: str | None) -> None:
        unet = pipe.unet
        if not state:
            return
        exists = slot in (getattr(unet, "peft_config", None) or {})
        rank = _rank(state)
        if exists and rank <= self.target_rank:
            try:
                unet.load_lora_adapter(state, network_alphas=alphas, adapter_name=slot,
                                       metadata=metadata, prefix=prefix, _pipeline=pipe,
                                       hotswap=True)
                return
            except LOAD_ERRORS as exc:  # other layers or alphas: make the slot anew
                logger.info("hot-swapping into %s failed (%s): reloading it (recompiles)",
                            slot, type(exc).__name__)
        if exists:
            unet.delete_adapters(slot)
        # Pads this slot's ranks and turns every scaling into a tensor (no recompiling later).
        unet.enable_lora_hotswap(target_rank=max(rank, self.target_rank),
                                 check_compiled="ignore")
        unet.load_lora_adapter(state, network_alphas=alphas, adapter_name=slot,
                               metadata=metadata, prefix=prefix, _pipeline=pipe)
        if slot not in (getattr(unet, "peft_config", None) or {}):
            raise ValueError("no layer of this model matches the LoRA")
        self._activate_slots(unet)

    def _activate_slots(self, unet) -> None:
        """Every slot active (peft activates only the first); no ``set_adapters``, which would
        turn the scaling tensors back into floats."""
        from peft.tuners.lora import LoraLayer

        slots = [f"slot{i}" for i in range(len(self._slots))
                 if f"slot{i}" in (getattr(unet, "peft_config", None) or {})]
        for module in unet.modules():
            if isinstance(module, LoraLayer):
                module.set_adapter([s for s in slots if s in module.lora_A])

    def _scale(self, unet, index: int, weight: float) -> None:
        slot = f"slot{index}"
        units = self._unit_scales[index]
        for name, module in _lora_layers(unet, slot):
            value = weight * units.get(name, 0.0)
            scaling = module.scaling[slot]
            if isinstance(scaling, torch.Tensor):
                scaling.fill_(value)
            else:  # not prepared for hot-swapping (cannot happen here): still correct
                module.scaling[slot] = value

    def _discard_slot(self, pipe, index: int) -> None:
        slot = f"slot{index}"
        if slot in (getattr(pipe.unet, "peft_config", None) or {}):
            pipe.unet.delete_adapters(slot)
        self._slots[index] = None
        self._unit_scales[index] = {}

    # -- the text encoder ---------------------------------------------------------------------

    def _apply_text(self, pipe, wanted: list[tuple[LoraSource, float]]) -> None:
        from diffusers.loaders.lora_base import (
            disable_lora_for_text_encoder,
            enable_lora_for_text_encoder,
            set_adapters_for_text_encoder,
        )

        active = [(s.adapter_name, w) for s, w in wanted if s.adapter_name in self._text]
        self._evict_text(pipe, keep={name for name, _ in active})
        if not self._text:
            return
        if not active:
            disable_lora_for_text_encoder(pipe.text_encoder)
            return
        enable_lora_for_text_encoder(pipe.text_encoder)
        set_adapters_for_text_encoder([n for n, _ in active], pipe.text_encoder,
                                      [w for _, w in active])

    def _evict_text(self, pipe, keep: set[str]) -> None:
        from diffusers.utils.peft_utils import delete_adapter_layers

        for name in list(self._text):
            if len(self._text) <= self.capacity:
                return
            if name not in keep:
                delete_adapter_layers(pipe.text_encoder, name)
                self._text.pop(name)

    def unload_all(self, pipe) -> None:
        """The base weights exactly (the next LoRA recompiles the UNet)."""
        if self._text or any(s is not None for s in self._slots) or \
                getattr(pipe.unet, "peft_config", None):
            pipe.unload_lora_weights()
        self._slots, self._unit_scales = [], []
        self._text.clear()
