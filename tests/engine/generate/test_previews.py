"""Live previews with TAESD (preview_method "taesd") when it is downloaded, and the linear
projection when it is not. Each test has a hub cache of its own: the tiny base, and a tiny
TAESD replica (diffusers' AutoencoderTiny, madebyollin/taesd's file layout) where it says."""

from __future__ import annotations

import pytest

from engine.demo.tiny_models import place_in_hub_cache, write_taesd
from engine.generate.engine import Engine
from engine.generate.previews import PreviewPacer
from engine.settings import SpeedSettings
from tests.support.helpers import run, txt2img
from tests.support.tiny_repos import make_settings

pytestmark = pytest.mark.engine

SIDE = 64  # the tiny base's image; its latents are 8x8
TAESD_REPO = "madebyollin/taesd"


def _engine(tiny_repos, tmp_path, with_taesd: bool) -> Engine:
    hub = tmp_path / "hub"
    place_in_hub_cache(tiny_repos.pai_base, "alibaba-pai/pai-diffusion-artist-large-zh", hub)
    if with_taesd:
        place_in_hub_cache(write_taesd(tmp_path / "taesd"), TAESD_REPO, hub)
    engine = Engine(make_settings(tiny_repos, hub_cache_dir=hub,
                                  speed=SpeedSettings(preview_method="taesd")))
    engine.preview_every_s = 0  # a preview every step: these tests count them
    return engine


def _previews(engine: Engine, steps: int = 2) -> list:
    updates: list = []
    run(engine, txt2img(steps=steps), on_progress=updates.append)
    return [update.preview for update in updates]


def test_with_taesd_downloaded_each_step_is_decoded_by_it(tiny_repos, tmp_path, monkeypatch):
    engine = _engine(tiny_repos, tmp_path, with_taesd=True)
    decoded = []
    monkeypatch.setattr("engine.generate.previews.latent_preview",
                        lambda latents: pytest.fail("the projection was used"))
    previews = _previews(engine)
    taesd = engine.previews._taesd
    assert taesd is not None and type(taesd).__name__ == "AutoencoderTiny"
    real = taesd.decode
    monkeypatch.setattr(taesd, "decode", lambda x: decoded.append(x.shape) or real(x))
    previews += _previews(engine)
    assert len(previews) == 4 and all(p is not None for p in previews)
    # TAESD draws the image at its size (the projection: half of it); one image per step.
    assert {p.size for p in previews} == {(SIDE, SIDE)}
    assert decoded == [(1, 4, SIDE // 8, SIDE // 8)] * 2


def test_without_taesd_previews_fall_back_to_the_projection(tiny_repos, tmp_path):
    engine = _engine(tiny_repos, tmp_path, with_taesd=False)
    previews = _previews(engine)
    assert len(previews) == 2 and engine.previews._taesd is None
    assert {p.size for p in previews} == {(SIDE // 2, SIDE // 2)}


def test_a_taesd_downloaded_between_jobs_is_used_from_the_next_job(tiny_repos, tmp_path):
    engine = _engine(tiny_repos, tmp_path, with_taesd=False)
    assert _previews(engine, steps=1)[0].size == (SIDE // 2, SIDE // 2)
    place_in_hub_cache(write_taesd(tmp_path / "taesd"), TAESD_REPO, tmp_path / "hub")
    assert _previews(engine, steps=1)[0].size == (SIDE, SIDE)


def test_previews_are_paced_while_progress_comes_every_step(tiny_repos, tmp_path):
    engine = _engine(tiny_repos, tmp_path, with_taesd=False)
    engine.preview_every_s = 3600  # nothing after the first step is due
    updates: list = []
    run(engine, txt2img(steps=3, batch_count=2), on_progress=updates.append)
    assert [(u.step, u.batch_index) for u in updates] == [
        (step, batch) for batch in range(2) for step in (1, 2, 3)]
    # Each batch starts with a preview; the steps after it are not due yet.
    assert [u.preview is not None for u in updates] == [True, False, False] * 2


def test_the_pacer_lets_a_preview_through_once_its_interval_has_passed():
    now = [100.0]
    pacer = PreviewPacer(0.25, clock=lambda: now[0])
    seen = []
    for step_seconds in (0.0, 0.1, 0.1, 0.1, 0.3, 0.1):
        now[0] += step_seconds
        seen.append(pacer.due())
    assert seen == [True, False, False, True, True, False]


def test_the_approx_method_never_loads_taesd(tiny_repos, tmp_path):
    engine = _engine(tiny_repos, tmp_path, with_taesd=True)
    engine.set_speed(SpeedSettings(preview_method="approx"))
    previews = _previews(engine, steps=1)
    assert previews[0].size == (SIDE // 2, SIDE // 2) and engine.previews._taesd is None
