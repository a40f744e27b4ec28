"""Where a model's weights live while it runs, decided per model as it loads.

Torch-free and pure: ``choose_memory_mode`` reads only the device's type, its free memory and
the model's size, so every rule is tested on any machine; ``engine.generate.memory`` measures
those and calls diffusers. The modes (``engine.settings.MEMORY_MODES``):

- ``gpu``: every weight on the GPU: the fastest.
- ``model_offload``: each model (text encoder, UNet, VAE) moves to the GPU when it runs and
  back after (diffusers' ``enable_model_cpu_offload``): the GPU holds the largest one, the
  UNet; close to free, as the UNet runs for every step anyway.
- ``sequential_offload``: layer by layer (``enable_sequential_cpu_offload``): the least memory,
  about 6.7x slower.
- ``auto``: ``gpu`` when the whole model and a job's working memory fit in what is free, else
  ``model_offload`` when the UNet and the working memory fit, else ``sequential_offload``.

Off CUDA (the CPU, Apple MPS) nothing is offloaded: the weights sit on the device whatever
the setting (``ON_DEVICE``).
"""

from __future__ import annotations

from dataclasses import dataclass

from engine.errors import InvalidRequest
from engine.settings import MEMORY_MODES, canonical_memory_mode

GIB = 1024**3
# The working memory a job needs beside the weights, in half precision. The largest image the
# VAE decodes whole is 1024x1024 (above that it decodes in tiles), and decoding it holds a few
# 128-channel feature maps of 1024x1024 at once (256 MiB each in fp16): about 1.5 GiB. The
# UNet's activations with guidance (SDPA keeps no attention matrices) and CUDA's own workspace
# add a few hundred MiB; the rest is headroom, so that a model that "just fits" does not fail
# on fragmentation in the middle of a job. fp32 doubles it (``activation_margin``).
ACTIVATION_MARGIN_BYTES = 3 * GIB
HALF_PRECISION_BYTES = 2

GPU = "gpu"
MODEL_OFFLOAD = "model_offload"
SEQUENTIAL_OFFLOAD = "sequential_offload"
ON_DEVICE = "device"  # the CPU or MPS: no offloading, every weight on the device
AUTO = "auto"
OFFLOAD_MODES = (MODEL_OFFLOAD, SEQUENTIAL_OFFLOAD)


@dataclass(frozen=True)
class ModelFootprint:
    """A loaded pipeline's weights at the precision it runs in."""

    total_bytes: int
    largest_part_bytes: int  # its largest module (the UNet): what model offload holds at once


@dataclass(frozen=True)
class MemoryChoice:
    mode: str  # GPU, MODEL_OFFLOAD, SEQUENTIAL_OFFLOAD or ON_DEVICE
    requested: str  # the setting it came from: AUTO or a fixed mode
    free_bytes: int | None = None  # the device's free memory when AUTO decided
    needed_bytes: int | None = None  # what GPU mode needs: the weights and the margin

    @property
    def offloads(self) -> bool:
        return self.mode in OFFLOAD_MODES


@dataclass(frozen=True)
class ModelMemory:
    """What the device report shows per loaded model."""

    model: str
    choice: MemoryChoice


def checked_memory_mode(mode: object) -> str:
    """``mode`` as one of MEMORY_MODES, its old names ("normal", "low") accepted."""
    canonical = canonical_memory_mode(mode)
    if canonical is None:
        raise InvalidRequest("unknown_memory_mode", name=str(mode), known=", ".join(MEMORY_MODES))
    return canonical


def activation_margin(element_bytes: int) -> int:
    """``ACTIVATION_MARGIN_BYTES`` scaled to the precision models run in (4 bytes: twice)."""
    return ACTIVATION_MARGIN_BYTES * max(1, element_bytes) // HALF_PRECISION_BYTES


def choose_memory_mode(requested: str, device_type: str, free_bytes: int | None,
                       footprint: ModelFootprint,
                       margin_bytes: int = ACTIVATION_MARGIN_BYTES) -> MemoryChoice:
    """The mode a model runs in. ``requested`` is canonical (AUTO or a fixed mode); a fixed
    mode is taken as it is on CUDA. ``free_bytes`` is None where the device cannot say."""
    if device_type != "cuda":
        return MemoryChoice(ON_DEVICE, requested)
    if requested != AUTO:
        return MemoryChoice(requested, requested)
    needed = footprint.total_bytes + margin_bytes
    if free_bytes is None or free_bytes >= needed:
        mode = GPU
    elif free_bytes >= footprint.largest_part_bytes + margin_bytes:
        mode = MODEL_OFFLOAD
    else:
        mode = SEQUENTIAL_OFFLOAD
    return MemoryChoice(mode, AUTO, free_bytes, needed)
