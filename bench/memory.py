"""``rss_all_modes_over_base``: peak resident memory with txt2img, img2img and ControlNet ready
(one job of each run) over the base alone (one txt2img job). Each measurement is a fresh
process (``bench.memory_probe``), so no peak leaks into the next; the two kinds alternate.

The figure counts what the models and their jobs take: each process's peak above its resident
memory once torch, diffusers and the engine were imported (the same on both sides: about
1.5 GB, which would drown tiny models' megabytes; the whole-process peaks are in the note)."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys
from dataclasses import dataclass

from bench.context import BenchContext
from bench.report import Figure
from bench.startup import ROOT

GOAL_AT_MOST = 1.6
BASE_MODES = ("txt2img",)
ALL_MODES = ("txt2img", "img2img", "controlnet")
PROBE_TIMEOUT_S = 300
MIB = 2**20


@dataclass(frozen=True)
class Peak:
    whole_process: int
    above_imports: int


def peak_rss(context: BenchContext, modes: tuple[str, ...]) -> Peak:
    command = [sys.executable, "-m", "bench.memory_probe", str(context.demo_root),
               str(context.plan.side), *modes]
    finished = subprocess.run(command, capture_output=True, text=True, check=True,
                              timeout=PROBE_TIMEOUT_S, cwd=ROOT)
    found = json.loads(finished.stdout.strip().splitlines()[-1])
    if not found["peak_was_reset"]:
        raise RuntimeError("this kernel does not let a process reset its peak memory "
                           "(/proc/self/clear_refs): the models' share cannot be told apart")
    peak = int(found["peak_rss_bytes"])
    return Peak(peak, peak - int(found["after_imports_rss_bytes"]))


def measure(context: BenchContext) -> list[Figure]:
    base, every = [], []
    for _ in range(context.plan.memory_runs):
        base.append(peak_rss(context, BASE_MODES))
        every.append(peak_rss(context, ALL_MODES))

    def median(peaks: list[Peak], field: str) -> float:
        return statistics.median(getattr(peak, field) for peak in peaks)

    note = (f"above imports {median(every, 'above_imports') / MIB:.0f} MiB with every mode "
            f"ready vs {median(base, 'above_imports') / MIB:.0f} MiB with the base alone; "
            f"whole process {median(every, 'whole_process') / MIB:.0f} vs "
            f"{median(base, 'whole_process') / MIB:.0f} MiB (fresh process each)")
    ratio = median(every, "above_imports") / median(base, "above_imports")
    return [Figure("rss_all_modes_over_base", ratio, "ratio", GOAL_AT_MOST, note)]
