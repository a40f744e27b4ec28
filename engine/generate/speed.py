"""Speed options applied as a model loads (``SpeedSettings.load_time``): channels-last memory,
fused QKV projections and ``torch.compile``.

Compiling is lazy: ``torch.compile`` wraps the UNet (and a ControlNet) at load time, and the
work happens inside the first call, i.e. during the first step of the first job after a load.
``CompileWatch`` is the backend every compiled module uses: it tells the running job that it
is compiling (so progress can say so instead of looking stuck), counts compilations, and falls
back to the eager module when compiling fails (no C++ compiler, an unsupported device), so the
job still runs.

Shapes: ``dynamic=None`` (torch's default): the first size compiles a static graph; the first
*different* size compiles once more with the sizes symbolic, and later sizes reuse that graph.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from engine.settings import SpeedSettings

logger = logging.getLogger(__name__)

COMPILE_CACHE_FOLDER = "compile-cache"  # in ``models_dir``: inductor's kernels, reused on restart
CACHE_ENV = "TORCHINDUCTOR_CACHE_DIR"


class CompileWatch:
    """The ``torch.compile`` backend of one PipelineManager.

    ``backend`` is what compiles: "inductor" for users, a callable in tests (the same path).
    ``listener`` is called as a compilation starts; the engine points it at the running job.
    """

    def __init__(self, backend: str | Callable = "inductor") -> None:
        self.backend = backend
        self.compilations = 0
        self.failed = False
        self.listener: Callable[[], None] | None = None

    def __call__(self, graph: torch.fx.GraphModule, example_inputs: list) -> Callable:
        self.compilations += 1
        if self.failed:  # one failure is enough: the next graph would fail the same way
            return graph.forward
        if self.listener is not None:
            self.listener()
        try:
            return self._compiler()(graph, example_inputs)
        except Exception as exc:  # noqa: BLE001 - any compiler failure: run eager instead
            logger.warning("compiling failed, running without it: %s: %s",
                           type(exc).__name__, str(exc).splitlines()[0][:200] if str(exc) else "")
            self.failed = True
            return graph.forward

    def _compiler(self) -> Callable:
        if callable(self.backend):
            return self.backend
        from torch._dynamo import lookup_backend

        return lookup_backend(self.backend)

    def reset(self) -> None:
        """After the models are released: the next load tries compiling afresh."""
        self.failed = False


def use_compile_cache(folder: Path) -> None:
    """Point inductor's on-disk caches (FX graphs, kernels, autotuning) at ``folder``, so a
    restart reuses the compiled kernels. Set as the first compile starts, not at import: it
    is process-wide, and an engine that never compiles leaves it alone."""
    folder.mkdir(parents=True, exist_ok=True)
    os.environ[CACHE_ENV] = str(folder.resolve())
    import torch._inductor.config as inductor_config

    inductor_config.fx_graph_cache = True
    inductor_config.autotune_local_cache = True


def user_cache_dir() -> Path | None:
    """The cache folder set in the environment, read once when the engine starts (inductor
    writes its own default back into the environment once it runs)."""
    value = os.environ.get(CACHE_ENV)
    return Path(value) if value else None


def apply_load_time(model: Any, speed: SpeedSettings, watch: CompileWatch) -> None:
    """Channels-last, fused QKV and compile on a UNet or a ControlNet, as ``speed`` asks."""
    if speed.channels_last:
        model.to(memory_format=torch.channels_last)
    if speed.fuse_qkv:
        model.fuse_qkv_projections()
    if speed.compile_unet:
        model.compile(backend=watch, dynamic=None)


def is_fused(unet: Any) -> bool:
    """Whether the UNet's attention runs the fused projections now."""
    from diffusers.models.attention_processor import FusedAttnProcessor2_0

    return any(isinstance(p, FusedAttnProcessor2_0) for p in unet.attn_processors.values())


def settle_fused_qkv(unet: Any, speed: SpeedSettings, loras_active: bool) -> None:
    """Fused projections while no LoRA is active, the separate ones while one is.

    A fused ``to_qkv`` is a copy of the base ``to_q``/``to_k``/``to_v`` weights: peft's LoRA
    wraps those three, so with fused attention every LoRA would be silently ignored. Fusing
    again copies the base weights afresh (a LoRA layer's ``weight`` is its base weight).
    """
    if not speed.fuse_qkv:
        return
    fused = is_fused(unet)
    if loras_active and fused:
        unet.unfuse_qkv_projections()
    elif not loras_active and not fused:
        unet.fuse_qkv_projections()
