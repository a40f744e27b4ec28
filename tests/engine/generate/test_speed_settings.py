"""Speed settings reach the engine between jobs: an option applied as a model loads releases
the loaded models (the next job loads them with it); the others keep them loaded."""

from __future__ import annotations

import dataclasses

import pytest

from engine.errors import InvalidRequest
from engine.generate.engine import Engine
from engine.service import ImageService
from engine.settings import SpeedSettings
from engine.store.manifest import load_manifest
from tests.support.helpers import run, txt2img
from tests.support.tiny_repos import make_settings


@pytest.mark.engine
def test_only_load_time_options_release_the_loaded_models(tiny_repos):
    engine = Engine(make_settings(tiny_repos))
    run(engine, txt2img(steps=1))
    loaded = engine.pipelines.loaded_models
    assert loaded

    engine.set_speed(SpeedSettings(step_cache_interval=2, preview_method="taesd"))
    assert engine.pipelines.loaded_models == loaded
    assert engine.pipelines.speed.step_cache_interval == 2

    for option in ("channels_last", "fuse_qkv", "compile_unet"):
        run(engine, txt2img(steps=1))
        current = engine.pipelines.speed
        engine.set_speed(dataclasses.replace(current, **{option: True}))
        assert engine.pipelines.loaded_models == (), option
        assert getattr(engine.pipelines.speed, option) is True


def test_the_service_refuses_speed_settings_out_of_range(tiny_repos):
    settings = make_settings(tiny_repos)
    service = ImageService(settings, load_manifest(settings.manifest_path),
                           engine_factory=lambda *_: pytest.fail("no engine is needed"))
    with pytest.raises(InvalidRequest) as caught:
        service.set_speed(SpeedSettings(step_cache_interval=7, preview_method="full"))
    assert caught.value.code == "invalid_speed_setting"
    assert caught.value.params["name"] == "step_cache_interval, preview_method"
