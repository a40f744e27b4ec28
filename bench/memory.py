"""``rss_all_modes_over_base``: peak resident memory of a process with txt2img, img2img and
ControlNet ready (one job of each run) over one with the base alone (one txt2img job). Each
measurement is a fresh process (``bench.memory_probe``), so no peak leaks into the next; the
two kinds alternate. Both include what importing torch and diffusers costs."""

from __future__ import annotations

import json
import statistics
import subprocess
import sys

from bench.context import BenchContext
from bench.report import Figure
from bench.startup import ROOT

GOAL_AT_MOST = 1.6
BASE_MODES = ("txt2img",)
ALL_MODES = ("txt2img", "img2img", "controlnet")
PROBE_TIMEOUT_S = 300


def peak_rss(context: BenchContext, modes: tuple[str, ...]) -> int:
    command = [sys.executable, "-m", "bench.memory_probe", str(context.demo_root),
               str(context.plan.side), *modes]
    finished = subprocess.run(command, capture_output=True, text=True, check=True,
                              timeout=PROBE_TIMEOUT_S, cwd=ROOT)
    return int(json.loads(finished.stdout.strip().splitlines()[-1])["peak_rss_bytes"])


def measure(context: BenchContext) -> list[Figure]:
    base, every = [], []
    for _ in range(context.plan.memory_runs):
        base.append(peak_rss(context, BASE_MODES))
        every.append(peak_rss(context, ALL_MODES))
    base_peak, every_peak = statistics.median(base), statistics.median(every)
    note = (f"peak RSS {every_peak / 2**20:.0f} MiB with every mode ready vs "
            f"{base_peak / 2**20:.0f} MiB with the base alone (fresh process each)")
    return [Figure("rss_all_modes_over_base", every_peak / base_peak, "ratio", GOAL_AT_MOST,
                   note)]
