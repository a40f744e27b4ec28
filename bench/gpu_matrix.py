"""What the GPU benchmark measures: the matrix of jobs, most important first, the paths each
job runs on (bare diffusers and each optimization the engine offers), and the result rows."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from bench.gpu_paths import Job
from engine.settings import SpeedSettings

PLAIN, CONTROLNET = "plain", "controlnet"
BARE_PATH = "diffusers eager"
ENGINE_PATH = "engine"

MEASURED = "measured"
NOT_OFFERED = "not offered yet"
OVER_BUDGET = "not measured (time budget)"


@dataclass(frozen=True)
class EngineOptimization:
    """One way the engine can run faster. ``settings`` are the ``EngineSettings`` overrides
    that switch it on; None while the engine does not offer it (its row says so).
    ``reorders_math``: the same computation summed in another order (another memory layout,
    fused matrices, generated kernels), so fp32 images may differ by a rounding step.
    ``exact`` is False for one that changes the pictures on purpose (the step cache): its
    images are not held to bare diffusers', only their difference is recorded."""

    name: str
    label: str
    settings: dict[str, Any] | None
    reorders_math: bool = False
    exact: bool = True


# SDPA is diffusers' and the engine's default attention; the others are the usual next steps
# (performance brief): each becomes a measured row once the engine has a setting for it.
ENGINE_OPTIMIZATIONS = (
    EngineOptimization("sdpa", "engine, SDPA (default)", {}),
    EngineOptimization("channels_last", "engine + channels-last",
                       {"speed": SpeedSettings(channels_last=True)}, reorders_math=True),
    EngineOptimization("fused_qkv", "engine + fused QKV",
                       {"speed": SpeedSettings(fuse_qkv=True)}, reorders_math=True),
    EngineOptimization("torch_compile", "engine + torch.compile",
                       {"speed": SpeedSettings(compile_unet=True)}, reorders_math=True),
    EngineOptimization("step_cache", "engine + step cache",
                       {"speed": SpeedSettings(step_cache_interval=3)}, exact=False),
)


def offered_optimizations() -> tuple[EngineOptimization, ...]:
    return tuple(o for o in ENGINE_OPTIMIZATIONS if o.settings is not None)


def is_exact(name: str) -> bool:
    return all(o.exact for o in ENGINE_OPTIMIZATIONS if o.name == name)


def job_matrix(sides: tuple[int, ...], batches: tuple[int, ...], dtypes: tuple[str, ...],
               kinds: tuple[str, ...], steps: int) -> list[Job]:
    """Every job, most important first: the goals are set at the first side and batch, so
    those (plain, then ControlNet, each precision) come first and a run cut short by its time
    budget still answers them; then the next batch, then the next side."""
    return [Job(side=side, batch=batch, dtype=dtype, controlnet=kind == CONTROLNET, steps=steps)
            for side in sides for batch in batches for kind in kinds for dtype in dtypes]


@dataclass
class Row:
    """One line of the table: one job on one path."""

    side: int
    batch: int
    dtype: str
    kind: str
    path: str  # BARE_PATH or ENGINE_PATH
    optimization: str | None  # the engine optimization's name; None on the bare path
    label: str
    status: str
    floor_steps_per_s: float
    floor_s_per_image: float
    steps_per_s: float | None = None
    s_per_image: float | None = None
    steps_x_floor: float | None = None  # measured step time over the floor's
    image_x_floor: float | None = None
    speedup_vs_bare: float | None = None  # guided steps per second over the bare path's
    images_match: bool | None = None  # the same pictures as the bare path for the same seed
    max_pixel_diff: int | None = None
    runs: list[float] = field(default_factory=list)  # every timed job's seconds

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def same_job(self, job: Job) -> bool:
        return (self.side, self.batch, self.dtype, self.kind) == (
            job.side, job.batch, job.dtype, job.kind)
