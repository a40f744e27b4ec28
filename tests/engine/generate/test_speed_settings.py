"""Speed settings reach the engine between jobs: an option applied as a model loads releases
the loaded models (the next job loads them with it); the others keep them loaded."""

from __future__ import annotations

import dataclasses
import shutil

import numpy as np
import pytest
import torch

from engine.errors import InvalidRequest, WarningCode
from engine.generate.engine import Engine
from engine.generate.speed import CACHE_ENV, COMPILE_CACHE_FOLDER, is_fused
from engine.requests import PHASE_COMPILING, LoraWeight, ProgressUpdate
from engine.service import ImageService
from engine.settings import SpeedSettings
from engine.store.manifest import load_manifest
from tests.support.helpers import BASE, difference, pixels, run, txt2img
from tests.support.tiny_repos import make_settings

POEM = "pai-artist-large-lora-poem"


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


# -- the options at work -----------------------------------------------------------------------

def _engine(tiny_repos, **speed) -> Engine:
    return Engine(make_settings(tiny_repos, speed=SpeedSettings(**speed)))


def _assert_close(a, b) -> None:
    """Same images within fp32 rounding: another memory layout or a fused matrix product
    adds up in another order, so a pixel may differ by one step of 255."""
    assert np.abs(pixels(a).astype(int) - pixels(b).astype(int)).max() <= 1


def _unet(engine):
    return engine.pipelines.base(BASE).pipe.unet


def test_channels_last_converts_the_unet_and_keeps_the_images(tiny_repos):
    default = run(_engine(tiny_repos), txt2img())
    engine = _engine(tiny_repos, channels_last=True)
    result = run(engine, txt2img())
    weight = _unet(engine).conv_in.weight
    assert weight.is_contiguous(memory_format=torch.channels_last)
    assert not weight.is_contiguous()
    _assert_close(result, default)


def test_fused_qkv_keeps_the_images_with_and_without_a_lora(tiny_repos):
    plain, fused = _engine(tiny_repos), _engine(tiny_repos, fuse_qkv=True)
    _assert_close(run(fused, txt2img()), run(plain, txt2img()))
    assert is_fused(_unet(fused))
    for lora in ("ink", POEM):  # the diffusers and the PAI format
        with_lora = txt2img(loras=(LoraWeight(lora, 0.8),))
        expected = run(plain, with_lora)
        assert difference(expected, run(plain, txt2img())) > 0
        # A fused to_qkv would leave the LoRA on to_q/to_k/to_v silently unused.
        _assert_close(run(fused, with_lora), expected)
        assert not is_fused(_unet(fused))
    _assert_close(run(fused, txt2img()), run(plain, txt2img()))
    assert is_fused(_unet(fused))


class CountingBackend:
    """A torch.compile backend that runs the graph eagerly and counts compilations."""

    def __init__(self) -> None:
        self.compilations = 0

    def __call__(self, graph, example_inputs):
        self.compilations += 1
        return graph.forward


def _compiled_engine(tiny_repos, backend) -> Engine:
    torch._dynamo.reset()  # other tests' compiled code must not count here
    engine = _engine(tiny_repos, compile_unet=True)
    engine.pipelines.compile_watch.backend = backend
    return engine


def test_compiling_shows_as_progress_and_keeps_the_images(tiny_repos):
    backend = CountingBackend()
    engine = _compiled_engine(tiny_repos, backend)
    updates: list[ProgressUpdate] = []
    result = run(engine, txt2img(), on_progress=updates.append)
    assert backend.compilations >= 1
    assert updates[0].phase == PHASE_COMPILING and updates[0].step == 0
    assert updates[0].total_steps == 3
    assert [u.phase for u in updates[1:]] == [""] * 3  # compiled once: steps follow
    _assert_close(result, run(_engine(tiny_repos), txt2img()))
    assert result.warnings == ()


def test_changing_loras_on_a_compiled_unet_does_not_recompile(tiny_repos):
    backend = CountingBackend()
    engine = _compiled_engine(tiny_repos, backend)
    eager = _engine(tiny_repos)
    jobs = [txt2img(loras=(LoraWeight("ink", 0.8),))]  # makes the slot: compiles once more
    run(engine, jobs[0])
    settled = backend.compilations
    jobs += [txt2img(loras=(LoraWeight("ink", 0.3),)),
             txt2img(loras=(LoraWeight("kohya-style", 1.0),)),  # text encoder part too
             txt2img(loras=(LoraWeight(POEM, -0.5),)),
             txt2img(),
             txt2img(loras=(LoraWeight("ink", 0.8),))]
    for job in jobs[1:]:
        _assert_close(run(engine, job), run(eager, job))
    assert backend.compilations == settled
    assert _unet(engine).peft_config.keys() == {"slot0"}


def test_two_loras_on_a_compiled_unet_then_swapping_both(tiny_repos):
    backend = CountingBackend()
    engine = _compiled_engine(tiny_repos, backend)
    eager = _engine(tiny_repos)
    two = txt2img(loras=(LoraWeight("ink", 0.8), LoraWeight(POEM, 0.5)))
    _assert_close(run(engine, two), run(eager, two))
    settled = backend.compilations
    for job in (txt2img(loras=(LoraWeight("kohya-style", 0.6), LoraWeight("ink", 0.2))),
                txt2img(loras=(LoraWeight(POEM, 1.0),))):
        _assert_close(run(engine, job), run(eager, job))
    assert backend.compilations == settled


def test_a_failing_compiler_runs_the_job_eager_with_a_warning(tiny_repos):
    def broken(graph, example_inputs):
        raise RuntimeError("no C++ compiler")

    engine = _compiled_engine(tiny_repos, broken)
    result = run(engine, txt2img())
    _assert_close(result, run(_engine(tiny_repos), txt2img()))
    assert [w.code for w in result.warnings] == [WarningCode.COMPILE_SKIPPED]


def test_inductor_compiles_the_tiny_unet_into_the_cache_under_models(tiny_repos, tmp_path,
                                                                      monkeypatch):
    """The real compiler, once (slow on CPU): images close to eager, kernels on disk."""
    monkeypatch.delenv(CACHE_ENV, raising=False)
    torch._dynamo.reset()
    settings = make_settings(tiny_repos, models_dir=tmp_path,
                             speed=SpeedSettings(compile_unet=True))
    shutil.copytree(tiny_repos.models_dir, tmp_path, dirs_exist_ok=True)
    engine = Engine(settings)
    result = run(engine, txt2img(steps=1))
    assert not engine.pipelines.compile_watch.failed
    _assert_close(result, run(_engine(tiny_repos), txt2img(steps=1)))
    cache = tmp_path / COMPILE_CACHE_FOLDER
    assert any(cache.rglob("*")), "no compiled kernels were cached"
