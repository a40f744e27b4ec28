"""When a few-step LoRA's settings count as far from its recommendation (pure, no torch)."""

from __future__ import annotations

import pytest

from engine.few_step import far_settings, few_step_warning, sampler_label
from engine.requests import Txt2ImgRequest
from engine.settings import DEFAULT_MANIFEST
from engine.store.manifest import load_manifest

MANIFEST = load_manifest(DEFAULT_MANIFEST)
LCM = MANIFEST.get("lcm-lora-sd15").recommended
HYPER = MANIFEST.get("hyper-sd15-8steps-lora").recommended


def _request(**changes) -> Txt2ImgRequest:
    values = dict(model="pai-artist-large", prompt="山", sampler="LCM", schedule="automatic",
                  steps=4, guidance=1.0)
    return Txt2ImgRequest(**{**values, **changes})


@pytest.mark.parametrize("changes, far", [
    ({}, []),
    ({"steps": 8, "guidance": 3.0}, []),  # the edges: twice the steps, CFG 2 above
    ({"schedule": "sgm_uniform"}, []),  # LCM takes no schedule: either is its own
    ({"steps": 9}, ["steps"]),
    ({"guidance": 3.5}, ["guidance"]),
    ({"sampler": "Euler a"}, ["sampler"]),
    ({"sampler": "Euler a", "steps": 20, "guidance": 7.0}, ["sampler", "steps", "guidance"]),
])
def test_far_from_lcm(changes, far):
    assert far_settings(LCM, _request(**changes)) == far


def test_hyper_sd_needs_its_trailing_schedule_too():
    right = _request(sampler="DDIM", schedule="sgm_uniform", steps=8)
    assert far_settings(HYPER, right) == []
    assert far_settings(HYPER, _request(sampler="DDIM", schedule="automatic", steps=8)) == [
        "sampler"]


def test_warning_names_the_recommended_settings():
    assert few_step_warning("hyper", HYPER, _request(sampler="DDIM", schedule="sgm_uniform",
                                                     steps=8)) is None
    warning = few_step_warning("hyper", HYPER, _request(steps=30))
    assert warning.code == "few_step_lora_settings"
    assert warning.params == {"lora": "hyper", "sampler": "DDIM SGM Uniform", "steps": 8,
                              "guidance": "1"}
    assert sampler_label("LCM", "automatic") == "LCM"
