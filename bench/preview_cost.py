"""``preview_cost_ratio``: a job with live previews as the app makes them (the projection,
paced by ``engine.generate.previews.PreviewPacer``: the first step, then one every 0.25 s) over
the same job with no progress listener. ``preview_cost_ratio_every_step``: a preview on every
step, unpaced (what a preview costs; no goal). ``preview_cost_ratio_taesd``: paced TAESD
previews (the demo set's tiny TAESD: its cost on the CPU says little about the real one's on a
GPU, so it has no goal).
"""

from __future__ import annotations

import dataclasses
from typing import Any

from bench.context import BenchContext
from bench.engine_overhead import txt2img_request
from bench.measure import interleaved
from bench.report import Figure

GOAL_AT_MOST = 1.02


class PreviewKeeper:
    """Keeps the latest preview, as the job queue does for the UI's live preview."""

    def __init__(self) -> None:
        self.previews = 0
        self.jobs = 0
        self.latest: Any = None

    def __call__(self, update: Any) -> None:
        if update.step == 1 and update.batch_index == 0:
            self.jobs += 1
        if update.preview is not None:
            self.latest = update.preview
            self.previews += 1


def measure(context: BenchContext) -> list[Figure]:
    engine = context.engine
    before = engine.pipelines.speed
    paced = engine.preview_every_s
    engine.set_speed(dataclasses.replace(before, preview_method="approx"))
    try:
        approx = _measure(context, "preview_cost_ratio", GOAL_AT_MOST, "paced previews")
        engine.preview_every_s = 0
        every = _measure(context, "preview_cost_ratio_every_step", None, "a preview each step")
        engine.preview_every_s = paced
        engine.set_speed(dataclasses.replace(before, preview_method="taesd"))
        taesd = _measure(context, "preview_cost_ratio_taesd", None, "paced TAESD previews")
        if engine.previews._taesd is None:
            raise AssertionError("TAESD did not load: the ratio would measure the projection")
    finally:
        engine.preview_every_s = paced
        engine.set_speed(before)
    return [approx, every, taesd]


def _measure(context: BenchContext, name: str, goal: float | None, what: str) -> Figure:
    engine = context.engine
    prepared = engine.prepare(txt2img_request(context))
    keeper = PreviewKeeper()
    timings = interleaved({
        "with_preview": lambda: engine.generate(prepared, on_progress=keeper),
        "without": lambda: engine.generate(prepared),
    }, context.plan.repeats)
    if keeper.previews == 0:
        raise AssertionError("no live preview was made: the ratio would measure nothing")
    note = (f"{what} vs none ({keeper.previews} previews in {keeper.jobs} jobs): "
            f"{timings.describe('with_preview', 'without')}; "
            f"{context.plan.steps} steps, {context.plan.side}px")
    return Figure(name, timings.ratio("with_preview", "without"), "ratio", goal, note)
