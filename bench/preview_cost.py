"""``preview_cost_ratio``: a job whose every step makes a live preview (the engine's
``latent_preview``, as the job queue asks for it) over the same job with no progress listener.
"""

from __future__ import annotations

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
        self.latest: Any = None

    def __call__(self, update: Any) -> None:
        if update.preview is not None:
            self.latest = update.preview
            self.previews += 1


def measure(context: BenchContext) -> list[Figure]:
    engine = context.engine
    prepared = engine.prepare(txt2img_request(context))
    keeper = PreviewKeeper()
    timings = interleaved({
        "with_preview": lambda: engine.generate(prepared, on_progress=keeper),
        "without": lambda: engine.generate(prepared),
    }, context.plan.repeats)
    if keeper.previews == 0:
        raise AssertionError("no live preview was made: the ratio would measure nothing")
    note = (f"a preview each step vs none: {timings.describe('with_preview', 'without')}; "
            f"{context.plan.steps} steps, {context.plan.side}px")
    return [Figure("preview_cost_ratio", timings.ratio("with_preview", "without"), "ratio",
                   GOAL_AT_MOST, note)]
