"""The few-step LoRAs (LCM-LoRA, TCD-LoRA, Hyper-SD15) in their real key formats load onto the
tiny PAI UNet through the real loading code and run with the sampler, steps and CFG their
manifest entries recommend. (Whether the pictures are good on PAI's Chinese UNet needs the real
weights: random replicas cannot tell.)"""

from __future__ import annotations

import functools

import diffusers
import pytest

from engine.generate.engine import Engine
from engine.generate.lora import LoraFormat, detect_format, read_lora_file
from engine.requests import LoraWeight
from engine.samplers import TCD_GAMMA
from engine.store.loras import find_lora
from tests.support.helpers import difference, run, txt2img
from tests.support.tiny_repos import make_settings

FORMATS = {"lcm-lora-sd15": LoraFormat.KOHYA, "tcd-lora-sd15": LoraFormat.DIFFUSERS,
           "hyper-sd15-8steps-lora": LoraFormat.KOHYA}
FEW_STEP = list(FORMATS)


@pytest.fixture(scope="module")
def few_step_engine(tiny_repos):
    """Its own engine: these tests load three adapters and look at what they wrap."""
    return Engine(make_settings(tiny_repos))


def _recommended(engine, lora: str) -> dict:
    recommended = engine.manifest.get(lora).recommended
    return dict(sampler=recommended.sampler, schedule=recommended.schedule,
                steps=recommended.steps, guidance=recommended.guidance)


def _wrapped_modules(engine, lora: str) -> set[str]:
    adapter = find_lora(engine.store, engine.settings, lora).adapter_name
    unet = engine.pipelines.base("pai-artist-large").pipe.unet
    return {name for name, module in unet.named_modules()
            if adapter in (getattr(module, "lora_A", None) or {})}


@pytest.mark.parametrize("lora", FEW_STEP)
def test_replica_is_in_the_real_files_format(tiny_repos, lora):
    state = read_lora_file(tiny_repos.few_step_loras[lora], lora, allow_pickle=False)
    assert detect_format(list(state)) is FORMATS[lora]
    # Like the real files: UNet only, with 3x3 convolutions and time_emb_proj adapted too.
    assert all(k.startswith(("unet.", "lora_unet_")) for k in state)
    assert any(v.ndim == 4 and v.shape[-1] == 3 for v in state.values())
    assert any("time_emb_proj" in k for k in state)


@pytest.mark.parametrize("lora", FEW_STEP)
def test_few_step_lora_changes_the_picture_at_its_settings_and_weight_zero_does_not(
        few_step_engine, tiny_repos, lora):
    settings = _recommended(few_step_engine, lora)
    plain = run(few_step_engine, txt2img(**settings))
    with_lora = run(few_step_engine, txt2img(loras=(LoraWeight(lora, 1.0),), **settings))
    at_zero = run(few_step_engine, txt2img(loras=(LoraWeight(lora, 0.0),), **settings))

    assert difference(plain, with_lora) > 0
    assert difference(plain, at_zero) == 0
    assert with_lora.warnings == ()  # its own settings are not far from themselves
    # Every module the file holds is adapted: no key was silently dropped on the way.
    state = read_lora_file(tiny_repos.few_step_loras[lora], lora, allow_pickle=False)
    in_file = sum(1 for key in state if key.endswith(("lora_down.weight", "lora.down.weight")))
    assert len(_wrapped_modules(few_step_engine, lora)) == in_file


def test_tcd_samples_with_its_gamma(few_step_engine, monkeypatch):
    """The pipeline's own eta is 0.0, which would quietly turn TCD deterministic."""
    etas = []
    original = diffusers.TCDScheduler.step

    @functools.wraps(original)  # the pipeline passes eta only to a step whose signature has it
    def step(self, *args, **kwargs):
        etas.append(kwargs.get("eta"))
        return original(self, *args, **kwargs)

    monkeypatch.setattr(diffusers.TCDScheduler, "step", step)
    run(few_step_engine, txt2img(sampler="TCD", steps=4, guidance=1.0,
                                 loras=(LoraWeight("tcd-lora-sd15", 1.0),)))
    assert etas == [TCD_GAMMA] * 4


@pytest.mark.parametrize("sampler", ["LCM", "TCD"])
def test_distilled_samplers_run_past_their_step_grid(few_step_engine, sampler):
    """LCM and TCD pick timesteps from a 50-step grid; A1111 runs them at any step count."""
    result = run(few_step_engine, txt2img(sampler=sampler, steps=51, guidance=1.0))
    assert len(result.images) == 1


def test_far_settings_still_run_and_warn(few_step_engine):
    """The brief's example: the LCM LoRA at 20 steps of Euler a with CFG 7."""
    far = txt2img(sampler="Euler a", steps=20, guidance=7.0,
                  loras=(LoraWeight("lcm-lora-sd15", 1.0),))
    result = run(few_step_engine, far)
    assert len(result.images) == 1
    assert [(w.code, w.params) for w in result.warnings] == [
        ("few_step_lora_settings", {"lora": "lcm-lora-sd15", "sampler": "LCM", "steps": 4,
                                    "guidance": "1"})]
    # A LoRA at weight 0 is off: nothing to warn about.
    off = txt2img(sampler="Euler a", steps=20, guidance=7.0,
                  loras=(LoraWeight("lcm-lora-sd15", 0.0),))
    assert run(few_step_engine, off).warnings == ()
