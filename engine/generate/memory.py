"""Placing a loaded pipeline in its memory mode: measure, decide (``engine.memory_plan``),
then call diffusers. Only this module calls the offload functions."""

from __future__ import annotations

import logging
from itertools import chain

import torch

from engine.generate.devices import Placement
from engine.memory_plan import (
    GIB,
    MODEL_OFFLOAD,
    SEQUENTIAL_OFFLOAD,
    MemoryChoice,
    ModelFootprint,
    activation_margin,
    choose_memory_mode,
)

logger = logging.getLogger(__name__)


def module_bytes(module: torch.nn.Module) -> int:
    return sum(t.numel() * t.element_size() for t in chain(module.parameters(), module.buffers()))


def pipeline_footprint(pipe) -> ModelFootprint:
    """Its weights as loaded (already at the engine's dtype), module by module."""
    sizes = [module_bytes(module) for module in pipe.components.values()
             if isinstance(module, torch.nn.Module)]
    return ModelFootprint(sum(sizes), max(sizes, default=0))


def free_device_bytes(device: torch.device) -> int | None:
    """What the device has free now (other programs' use included); None off CUDA."""
    if device.type != "cuda":
        return None
    free, _total = torch.cuda.mem_get_info(device)
    return int(free)


def place_pipeline(pipe, requested: str, placement: Placement, name: str) -> MemoryChoice:
    """Decide ``pipe``'s mode (it is on the CPU, as loaded), apply it, log it."""
    device = placement.device
    footprint = pipeline_footprint(pipe)
    margin = activation_margin(torch.empty((), dtype=placement.dtype).element_size())
    choice = choose_memory_mode(requested, device.type, free_device_bytes(device), footprint,
                                margin)
    apply_memory_mode(pipe, choice.mode, device)
    if choice.free_bytes is not None:
        logger.info("%s: memory mode %s (%s; %.1f GB free, %.1f GB needed on the GPU)", name,
                    choice.mode, choice.requested, choice.free_bytes / GIB,
                    (choice.needed_bytes or 0) / GIB)
    else:
        logger.info("%s: memory mode %s (%s)", name, choice.mode, choice.requested)
    return choice


def apply_memory_mode(pipe, mode: str, device: torch.device) -> None:
    """Offloading modes also decode a batch's images one at a time (VAE slicing: the same
    pixels, a fraction of the memory)."""
    if mode == MODEL_OFFLOAD:
        pipe.enable_model_cpu_offload(device=device)
    elif mode == SEQUENTIAL_OFFLOAD:
        pipe.enable_sequential_cpu_offload(device=device)
    else:
        pipe.to(device)
        return
    pipe.vae.enable_slicing()
