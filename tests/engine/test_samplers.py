"""The sampler table agrees with diffusers, and schedulers keep the model's own config."""

from __future__ import annotations

import inspect

import diffusers
import pytest

from engine.demo.tiny_models import DPM_SOLVER_CONFIG
from engine.samplers import (
    ALL_SCHEDULES,
    SAMPLERS,
    SIGMA_SCHEDULES,
    build_scheduler,
    find_sampler,
    find_schedule,
    sampler_call_options,
    split_legacy_sampler_name,
)

_FLAGS = {"karras": "use_karras_sigmas", "exponential": "use_exponential_sigmas",
          "beta": "use_beta_sigmas", "sgm_uniform": "timestep_spacing"}


@pytest.mark.parametrize("name", list(SAMPLERS))
def test_offered_schedules_are_supported_by_the_scheduler_class(name):
    spec = SAMPLERS[name]
    parameters = inspect.signature(getattr(diffusers, spec.scheduler_class).__init__).parameters
    for schedule in spec.schedules:
        if schedule != "automatic":
            assert _FLAGS[schedule] in parameters, (name, schedule)


OFFERED = [(name, schedule) for name, spec in SAMPLERS.items() for schedule in spec.schedules]


def test_every_sampler_offers_automatic():
    assert all("automatic" in spec.schedules for spec in SAMPLERS.values())
    assert set().union(*(spec.schedules for spec in SAMPLERS.values())) == set(ALL_SCHEDULES)


@pytest.mark.parametrize("name, schedule", OFFERED)
def test_build_scheduler_keeps_betas_and_prediction(name, schedule):
    scheduler = build_scheduler(dict(DPM_SOLVER_CONFIG), name, schedule)
    assert scheduler.config.beta_start == pytest.approx(0.00085)
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.prediction_type == "epsilon"
    if schedule in SIGMA_SCHEDULES:
        assert scheduler.config[_FLAGS[schedule]] is True
    if schedule == "sgm_uniform":
        assert scheduler.config.timestep_spacing == "trailing"


def test_dpmpp_2m_is_the_models_own_solver():
    scheduler = build_scheduler(dict(DPM_SOLVER_CONFIG), "DPM++ 2M", "automatic")
    assert scheduler.config.algorithm_type == "dpmsolver++"
    assert scheduler.config.solver_order == 2
    sde = build_scheduler(dict(DPM_SOLVER_CONFIG), "DPM++ 2M SDE", "automatic")
    assert sde.config.algorithm_type == "sde-dpmsolver++"


def test_lookups_accept_aliases_and_labels():
    assert find_sampler("k_dpmpp_2m").name == "DPM++ 2M"
    assert find_sampler("euler A").name == "Euler a"
    assert find_sampler("nope") is None
    assert find_schedule("Karras") == "karras" and find_schedule("SGM Uniform") == "sgm_uniform"
    assert split_legacy_sampler_name("DPM++ 2M SDE Karras") == ("DPM++ 2M SDE", "karras")
    assert split_legacy_sampler_name("Euler a") == ("Euler a", None)


def test_tcd_is_offered_under_its_webui_name_with_its_gamma():
    assert find_sampler("tcd").name == "TCD"
    assert build_scheduler(dict(DPM_SOLVER_CONFIG), "TCD", "automatic").__class__.__name__ == (
        "TCDScheduler")
    assert sampler_call_options("TCD") == {"eta": 0.3}
    assert sampler_call_options("LCM") == {} and sampler_call_options("DDIM") == {}


@pytest.mark.parametrize("name", ["LCM", "TCD"])
def test_distilled_samplers_keep_their_grid_and_widen_it_for_more_steps(name):
    scheduler = build_scheduler(dict(DPM_SOLVER_CONFIG), name, "automatic", 4)
    scheduler.set_timesteps(4)
    assert scheduler.timesteps.tolist() == [999, 759, 499, 259]  # diffusers' LCM-LoRA docs
    many = build_scheduler(dict(DPM_SOLVER_CONFIG), name, "automatic", 120)
    many.set_timesteps(120)
    assert len(many.timesteps) == 120


def test_ddim_never_clips_latents_and_trailing_starts_at_the_last_timestep():
    """Hyper-SD's setting: DDIM with trailing spacing (SGM Uniform), unclipped."""
    scheduler = build_scheduler(dict(DPM_SOLVER_CONFIG), "DDIM", "sgm_uniform")
    assert scheduler.config.clip_sample is False
    scheduler.set_timesteps(8)
    assert scheduler.timesteps[0] == 999
