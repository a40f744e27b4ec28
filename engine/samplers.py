"""Samplers and schedule types under the names WebUI users know, mapped to diffusers schedulers.

The table is plain data (no torch import) so the UI and the validator can list and check names;
``build_scheduler`` imports diffusers only when a scheduler is made.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from diffusers import SchedulerMixin

SIGMA_SCHEDULES = ("karras", "exponential", "beta")
ALL_SCHEDULES = ("automatic", *SIGMA_SCHEDULES, "sgm_uniform")
SCHEDULE_LABELS = {
    "automatic": "Automatic", "karras": "Karras", "exponential": "Exponential",
    "beta": "Beta", "sgm_uniform": "SGM Uniform",
}
_SIGMA_FLAGS = {"karras": "use_karras_sigmas", "exponential": "use_exponential_sigmas",
                "beta": "use_beta_sigmas"}


# The step grid LCM and TCD were distilled on (diffusers' ``original_inference_steps``): they
# pick their timesteps from it, so more steps than it holds would fail in ``set_timesteps``.
DISTILLED_GRID_STEPS = 50
# TCD's gamma (diffusers passes it to ``step`` as ``eta``): 0.3 is what the TCD card uses and
# what A1111/Forge/ComfyUI's TCD samplers default to. The pipeline's own default, 0.0, would
# silently make TCD deterministic multistep sampling.
TCD_GAMMA = 0.3


@dataclass(frozen=True)
class SamplerSpec:
    name: str
    scheduler_class: str
    options: dict[str, Any] = field(default_factory=dict)
    schedules: tuple[str, ...] = ALL_SCHEDULES
    aliases: tuple[str, ...] = ()
    # Arguments for the pipeline call that the scheduler reads from it (TCD's gamma).
    call_options: dict[str, Any] = field(default_factory=dict)
    # A consistency-distilled sampler (LCM, TCD) that samples from a fixed step grid.
    distilled: bool = False


_NO_SIGMAS = ("automatic", "sgm_uniform")

SAMPLERS: dict[str, SamplerSpec] = {s.name: s for s in (
    SamplerSpec("DPM++ 2M", "DPMSolverMultistepScheduler",
                {"algorithm_type": "dpmsolver++", "solver_order": 2}, aliases=("k_dpmpp_2m",)),
    SamplerSpec("DPM++ 2M SDE", "DPMSolverMultistepScheduler",
                {"algorithm_type": "sde-dpmsolver++", "solver_order": 2},
                aliases=("k_dpmpp_2m_sde",)),
    # The true DPM++ SDE needs torchsde; the single-step solver is its nearest deterministic kin.
    SamplerSpec("DPM++ SDE", "DPMSolverSinglestepScheduler", {"algorithm_type": "dpmsolver++"},
                schedules=("automatic", *SIGMA_SCHEDULES), aliases=("k_dpmpp_sde",)),
    SamplerSpec("Euler", "EulerDiscreteScheduler", aliases=("k_euler",)),
    SamplerSpec("Euler a", "EulerAncestralDiscreteScheduler", schedules=_NO_SIGMAS,
                aliases=("k_euler_a", "Euler Ancestral")),
    SamplerSpec("Heun", "HeunDiscreteScheduler", aliases=("k_heun",)),
    SamplerSpec("LMS", "LMSDiscreteScheduler", aliases=("k_lms",)),
    SamplerSpec("DPM2", "KDPM2DiscreteScheduler", aliases=("k_dpm_2",)),
    SamplerSpec("DPM2 a", "KDPM2AncestralDiscreteScheduler", aliases=("k_dpm_2_a",)),
    # DDIMScheduler's own default clips the predicted sample to [-1, 1], which is meant for
    # pixels, not SD latents (A1111's DDIM never clips); Hyper-SD's DDIM "trailing" (schedule
    # SGM Uniform here) relies on an unclipped DDIM too.
    SamplerSpec("DDIM", "DDIMScheduler", {"clip_sample": False}, schedules=_NO_SIGMAS,
                aliases=("ddim",)),
    SamplerSpec("PLMS", "PNDMScheduler", {"skip_prk_steps": True}, schedules=_NO_SIGMAS,
                aliases=("plms",)),
    SamplerSpec("UniPC", "UniPCMultistepScheduler", aliases=("unipc",)),
    SamplerSpec("DEIS", "DEISMultistepScheduler", aliases=("deis",)),
    # LCM and TCD ignore timestep_spacing: their timesteps come from the distilled grid.
    SamplerSpec("LCM", "LCMScheduler", schedules=_NO_SIGMAS, aliases=("lcm",), distilled=True),
    SamplerSpec("TCD", "TCDScheduler", schedules=_NO_SIGMAS, aliases=("tcd",),
                call_options={"eta": TCD_GAMMA}, distilled=True),
)}

DEFAULT_SAMPLER = "DPM++ 2M"
DEFAULT_SCHEDULE = "automatic"


def find_sampler(name: str) -> SamplerSpec | None:
    """Look a sampler up by name or alias, ignoring case."""
    wanted = name.strip().lower()
    for spec in SAMPLERS.values():
        if wanted == spec.name.lower() or wanted in (a.lower() for a in spec.aliases):
            return spec
    return None


def find_schedule(name: str) -> str | None:
    """Accept the lowercase name or the label ("Karras" or "karras", "SGM Uniform")."""
    wanted = name.strip().lower().replace(" ", "_")
    return wanted if wanted in ALL_SCHEDULES else None


def split_legacy_sampler_name(name: str) -> tuple[str, str | None]:
    """'DPM++ 2M Karras' -> ('DPM++ 2M', 'karras'), as older A1111 clients send it."""
    for schedule in (*SIGMA_SCHEDULES, "sgm_uniform"):
        label = SCHEDULE_LABELS[schedule]
        if name.lower().endswith(" " + label.lower()):
            return name[: -len(label) - 1], schedule
    return name, None


def sampler_call_options(sampler: str) -> dict[str, Any]:
    """What the pipeline call must pass for ``sampler`` besides the usual arguments."""
    return dict(SAMPLERS[sampler].call_options)


def build_scheduler(base_config: dict[str, Any], sampler: str, schedule: str,
                    steps: int | None = None) -> SchedulerMixin:
    """Make the sampler's scheduler from the model's own config, keeping betas and prediction.

    ``steps``: how many the job runs; a distilled sampler's grid is widened to hold them (A1111
    runs LCM at any step count), so 60 LCM steps run instead of failing.
    """
    import diffusers

    spec = SAMPLERS[sampler]
    scheduler_class = getattr(diffusers, spec.scheduler_class)
    overrides: dict[str, Any] = dict(spec.options)
    if spec.distilled:
        overrides["original_inference_steps"] = max(DISTILLED_GRID_STEPS, steps or 0)
    if schedule in SIGMA_SCHEDULES:
        overrides.update({flag: False for flag in _SIGMA_FLAGS.values()})
        overrides[_SIGMA_FLAGS[schedule]] = True
    elif schedule == "sgm_uniform":
        overrides["timestep_spacing"] = "trailing"
    scheduler: SchedulerMixin = scheduler_class.from_config(base_config, **overrides)
    return scheduler
