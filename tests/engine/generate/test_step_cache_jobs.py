"""The step cache in the engine's jobs: on from 2, per job (no reload), counted per denoising
run, close to the uncached images but not equal to them, and written into the infotext."""

from __future__ import annotations

import contextlib
import threading

import numpy as np
import pytest
import torch

from engine.errors import JobCancelled
from engine.metadata.infotext import format_infotext, parse_infotext
from engine.settings import SpeedSettings
from tests.support.helpers import BASE, controlnet, img2img, inpaint, pixels, run, txt2img
from tests.support.tiny_repos import make_settings

STEPS = 9  # with interval 3: full at steps 0, 3, 6
# Mean absolute pixel difference, cached vs not, on the tiny models: a correct cache gives
# about 0.016; deep features of zeros 0.04, a shallow step that returns nothing 0.4.
MAX_PIXEL_DIFFERENCE = 0.03
# Mean relative error of the noise predictions on shallow steps, against the uncached run's:
# a correct cache about 0.02; features kept from the first step only 0.043; zeros 0.056.
MAX_PREDICTION_ERROR = 0.03


@pytest.fixture
def cached(engine):
    """Sets the engine's interval for a test and puts the old settings back."""
    before = engine.pipelines.speed

    def use(interval: int) -> None:
        engine.set_speed(SpeedSettings(step_cache_interval=interval))

    yield use
    engine.set_speed(before)


@contextlib.contextmanager
def watching(engine):
    """Counts calls of the shallow and deep blocks, and keeps each UNet output."""
    unet = engine.pipelines.base(BASE).pipe.unet
    seen = {"shallow": 0, "deep": 0, "outputs": []}

    def count(name):
        return lambda *_: seen.__setitem__(name, seen[name] + 1)

    def keep(_module, _args, output):
        sample = output[0] if isinstance(output, tuple) else output.sample
        seen["outputs"].append(sample.detach().clone())

    hooks = [unet.down_blocks[0].register_forward_hook(count("shallow")),
             unet.mid_block.register_forward_hook(count("deep")),
             unet.register_forward_hook(keep)]
    try:
        yield seen
    finally:
        for hook in hooks:
            hook.remove()


def _pixel_difference(a, b) -> float:
    return float(np.mean([np.abs(pixels(a, i) - pixels(b, i)).mean()
                          for i in range(len(a.images))]))


def _prediction_error(uncached: list, cached: list, interval: int) -> float:
    shallow = [i for i in range(len(cached)) if i % interval]
    return float(np.mean([float((cached[i] - uncached[i]).norm() / uncached[i].norm())
                          for i in shallow]))


def _compare(engine, cached, request, interval: int = 3):
    cached(0)
    with watching(engine) as off:
        plain = run(engine, request)
    cached(interval)
    with watching(engine) as on:
        fast = run(engine, request)
    return plain, fast, off, on


@pytest.mark.parametrize("interval", [0, 1])
def test_below_two_the_images_are_the_uncached_ones(engine, cached, interval):
    cached(0)
    expected = run(engine, txt2img(steps=STEPS))
    cached(interval)
    with watching(engine) as seen:
        result = run(engine, txt2img(steps=STEPS))
    assert seen["deep"] == STEPS
    assert np.array_equal(pixels(result), pixels(expected))
    assert "step_cache" not in result.images[0].parameters
    assert "Step cache" not in format_infotext(result.images[0].parameters)


def test_deep_blocks_run_every_third_step_of_each_batch(engine, cached):
    cached(3)
    with watching(engine) as seen:
        result = run(engine, txt2img(steps=STEPS, batch_size=2, batch_count=2, guidance=7))
    assert len(result.images) == 4
    assert seen["deep"] == 2 * 3  # each batch is a run of its own, full from its first step
    assert seen["shallow"] == 2 * STEPS
    assert "forward" not in vars(engine.pipelines.base(BASE).pipe.unet)


@pytest.mark.parametrize("request_for", [
    lambda: txt2img(steps=STEPS),
    lambda: txt2img(steps=STEPS, batch_size=2, guidance=7),
    lambda: img2img(steps=STEPS, strength=1.0),
    lambda: inpaint(steps=STEPS, strength=1.0),
    lambda: controlnet(steps=STEPS),
], ids=["txt2img", "batch2-guidance", "img2img", "inpaint", "controlnet"])
def test_cached_images_are_close_to_the_uncached_ones_but_not_equal(engine, cached,
                                                                   request_for):
    plain, fast, off, on = _compare(engine, cached, request_for())
    assert (off["deep"], on["deep"]) == (STEPS, 3)
    assert on["shallow"] == STEPS
    assert 0 < _prediction_error(off["outputs"], on["outputs"], 3) < MAX_PREDICTION_ERROR
    assert _pixel_difference(plain, fast) < MAX_PIXEL_DIFFERENCE
    assert [i.seed for i in fast.images] == [i.seed for i in plain.images]


def test_the_infotext_names_the_interval_when_the_cache_ran(engine, cached):
    cached(3)
    parameters = run(engine, txt2img(steps=STEPS)).images[0].parameters
    assert parameters["step_cache"] == 3
    text = format_infotext(parameters)
    assert "Step cache: 3" in text
    assert parse_infotext(text)["step_cache"] == 3


def test_a_cancelled_job_leaves_no_cache_and_the_next_starts_full(engine, cached):
    cached(3)
    cancel = threading.Event()

    def cancel_after_two(update):
        if update.step == 2:
            cancel.set()

    with pytest.raises(JobCancelled):
        run(engine, txt2img(steps=STEPS), cancel=cancel, on_progress=cancel_after_two)
    unet = engine.pipelines.base(BASE).pipe.unet
    assert "forward" not in vars(unet)
    with watching(engine) as seen:
        run(engine, txt2img(steps=STEPS))
    assert seen["deep"] == 3
    cached(0)
    with torch.no_grad(), watching(engine) as seen:
        run(engine, txt2img(steps=STEPS))
    assert seen["deep"] == STEPS  # turned off in 设置: the next job, same loaded model


def test_a_compiled_unet_runs_without_the_cache(tiny_repos):
    """A shallow step is another graph: on a compiled UNet the cache would recompile as it
    switches, so the job runs uncached, and its image says nothing of a cache."""
    from engine.generate.engine import Engine

    compilations = []

    def eager_backend(graph, example_inputs):
        compilations.append(1)
        return graph.forward

    torch._dynamo.reset()  # other tests' compiled code must not count here
    engine = Engine(make_settings(tiny_repos, speed=SpeedSettings(
        compile_unet=True, step_cache_interval=3)))
    engine.pipelines.compile_watch.backend = eager_backend
    result = run(engine, txt2img(steps=STEPS))
    assert "step_cache" not in result.images[0].parameters
    assert 1 <= len(compilations) <= 2  # with the cache: 4 for these 9 steps
