"""How much to measure: the full run, or ``--quick`` (fewest repeats, fewest steps) for the test
that checks the suite works."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Plan:
    repeats: int  # measured runs per side, interleaved, after one warm-up each
    steps: int  # denoising steps of a measured job (the API goal is for a 20-step job)
    side: int  # image width and height in pixels
    startup_runs: int  # cold starts of app.py --demo (each a fresh process: seconds)
    memory_runs: int  # fresh processes per side of the memory ratio

    @property
    def quick(self) -> bool:
        return self == QUICK


FULL = Plan(repeats=9, steps=20, side=128, startup_runs=3, memory_runs=3)
QUICK = Plan(repeats=1, steps=2, side=64, startup_runs=1, memory_runs=1)
