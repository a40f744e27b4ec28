"""Few-step LoRAs (LCM, TCD, Hyper-SD): made for one sampler, a few steps and little or no CFG.

With other settings they still run, but the picture comes out blurred or burnt and takes longer
than it needs, so the job says so. Torch-free: the rule is plain arithmetic on the request and
the manifest's recommendation.
"""

from __future__ import annotations

from engine.errors import WarningCode
from engine.requests import EngineWarning, GenerationRequest
from engine.samplers import SCHEDULE_LABELS
from engine.store.manifest import Recommended

# Far means: more than this many times the recommended steps (LCM's card: 2-8 steps for its
# recommended 4) ...
STEPS_FACTOR = 2
# ... or CFG more than this above the recommended (LCM's card: 1-2; TCD and Hyper-SD: none).
GUIDANCE_MARGIN = 2.0


def sampler_label(sampler: str, schedule: str | None) -> str:
    """'DDIM SGM Uniform' as A1111 names a sampler with its schedule; 'LCM' alone."""
    if schedule in (None, "automatic"):
        return sampler
    return f"{sampler} {SCHEDULE_LABELS[schedule]}"


def far_settings(recommended: Recommended, request: GenerationRequest) -> list[str]:
    """Which of sampler, steps and guidance are far from ``recommended`` (none: [])."""
    assert recommended.steps is not None and recommended.guidance is not None  # the manifest
    far = []
    schedule_matters = recommended.schedule not in (None, "automatic")
    if request.sampler != recommended.sampler or (
            schedule_matters and request.schedule != recommended.schedule):
        far.append("sampler")
    if request.steps > STEPS_FACTOR * recommended.steps:
        far.append("steps")
    if request.guidance > recommended.guidance + GUIDANCE_MARGIN:
        far.append("guidance")
    return far


def few_step_warning(lora: str, recommended: Recommended,
                     request: GenerationRequest) -> EngineWarning | None:
    """The warning for a request that uses the few-step LoRA ``lora`` far from its settings."""
    if not far_settings(recommended, request):
        return None
    assert recommended.sampler is not None and recommended.guidance is not None
    return EngineWarning(WarningCode.FEW_STEP_LORA_SETTINGS, {
        "lora": lora, "sampler": sampler_label(recommended.sampler, recommended.schedule),
        "steps": recommended.steps, "guidance": f"{recommended.guidance:g}"})
