"""The benchmarks of the suite, in the order they run, and the figures each one gives."""

from __future__ import annotations

import logging
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from bench import (
    api_overhead,
    cold_start,
    engine_overhead,
    memory,
    optimizations,
    preview_cost,
    switching,
)
from bench.context import BenchContext, build_context
from bench.plan import Plan
from bench.report import Figure, not_measured

logger = logging.getLogger(__name__)

NO_SECOND_PASS = ("the second pass (hires fix, tiled upscale) does not exist yet: nothing to "
                  "measure")


@dataclass(frozen=True)
class Benchmark:
    name: str
    figures: tuple[str, ...]
    run: Callable[[BenchContext], list[Figure]]


def _second_pass(_context: BenchContext) -> list[Figure]:
    return [not_measured("hires_cost_ratio", "ratio", NO_SECOND_PASS),
            not_measured("upscale_tile_ratio", "ratio", NO_SECOND_PASS)]


BENCHMARKS = (
    Benchmark("engine_overhead", ("engine_overhead_ratio",), engine_overhead.measure),
    Benchmark("api_overhead", ("api_overhead_ratio", "gradio_overhead_ratio"),
              api_overhead.measure),
    Benchmark("preview_cost", ("preview_cost_ratio", "preview_cost_ratio_every_step",
                               "preview_cost_ratio_taesd"),
              preview_cost.measure),
    # One ratio per speed option the engine offers (bench.gpu_matrix): new options join.
    Benchmark("optimizations", optimizations.figure_names(), optimizations.measure),
    Benchmark("mode_switch", ("mode_switch_ms", "mode_switch_loaded_bytes"),
              switching.measure_modes),
    Benchmark("lora_switch", ("base_load_ms", "lora_switch_ms", "lora_weight_change_ms"),
              switching.measure_loras),
    Benchmark("memory", ("rss_all_modes_over_base",), memory.measure),
    Benchmark("cold_start", ("cold_start_s", "first_image_s"), cold_start.measure),
    Benchmark("second_pass", ("hires_cost_ratio", "upscale_tile_ratio"), _second_pass),
)
ALL_FIGURES = tuple(name for benchmark in BENCHMARKS for name in benchmark.figures)


def selected(only: str | None) -> tuple[Benchmark, ...]:
    """Every benchmark, or the one named ``only`` (by its name or one of its figures')."""
    if only is None:
        return BENCHMARKS
    chosen = tuple(b for b in BENCHMARKS if only == b.name or only in b.figures)
    if not chosen:
        known = ", ".join(b.name for b in BENCHMARKS)
        raise ValueError(f"no benchmark named {only!r}; known: {known} (or a figure's name)")
    return chosen


def run_suite(plan: Plan, only: str | None = None) -> list[Figure]:
    benchmarks = selected(only)
    with tempfile.TemporaryDirectory(prefix="huajing-bench-") as folder:
        context = build_context(Path(folder), plan)
        figures: list[Figure] = []
        for benchmark in benchmarks:
            logger.info("running %s", benchmark.name)
            figures += benchmark.run(context)
    return figures
