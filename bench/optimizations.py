"""``optimization_ratio_<name>``: the engine's txt2img with each speed option it offers
(``bench.gpu_matrix.offered_optimizations``) over the same job with the defaults, on the demo
set; and ``compile_warmup_s``, the first compiled job's seconds (compiling included).

These are GPU optimizations measured on a CPU with tiny replicas: the figures say that each
option runs and what it costs or saves here, not what it does on a GPU (``bench/gpu.py``), so
they carry no goal. The compiled side's ratio leaves its warm-up out (it has its own figure).
"""

from __future__ import annotations

import dataclasses
import time

from bench.context import BenchContext, demo_engine_settings
from bench.engine_overhead import txt2img_request
from bench.gpu_matrix import EngineOptimization, offered_optimizations
from bench.measure import interleaved
from bench.report import Figure

COMPILE = "torch_compile"
WARMUP_FIGURE = "compile_warmup_s"


def measured_optimizations() -> tuple[EngineOptimization, ...]:
    """The offered options that change something (the default, SDPA, is the reference)."""
    return tuple(o for o in offered_optimizations() if o.settings)


def figure_names() -> tuple[str, ...]:
    names = tuple(f"optimization_ratio_{o.name}" for o in measured_optimizations())
    if any(o.name == COMPILE for o in measured_optimizations()):
        names += (WARMUP_FIGURE,)
    return names


def _engine_with(context: BenchContext, optimization: EngineOptimization):
    from engine.demo.build import demo_manifest_yaml
    from engine.generate.engine import Engine
    from engine.store.manifest import parse_manifest

    settings, _ = demo_engine_settings(context.demo_root)
    settings = dataclasses.replace(settings, **(optimization.settings or {}))
    engine = Engine(settings, parse_manifest(demo_manifest_yaml()))
    engine.load(context.base_id)
    return engine


def _measure_one(context: BenchContext, optimization: EngineOptimization) -> list[Figure]:
    default = context.engine
    engine = _engine_with(context, optimization)
    prepared = default.prepare(txt2img_request(context))
    figures = []
    if optimization.name == COMPILE:
        started = time.perf_counter()
        engine.generate(prepared)  # compiles during its first step
        warmup_s = time.perf_counter() - started
        if engine.pipelines.compile_watch.failed:
            raise AssertionError("torch.compile failed here: the ratio would measure eager")
        figures.append(Figure(WARMUP_FIGURE, warmup_s, "s", None,
                              f"the first compiled job ({context.plan.steps} steps, "
                              f"{context.plan.side}px), compiling included; cached on disk "
                              "for the next start"))
    timings = interleaved({
        optimization.name: lambda: engine.generate(prepared),
        "default": lambda: default.generate(prepared),
    }, context.plan.repeats)
    note = (f"{optimization.label} vs the defaults, CPU fp32, tiny replicas (informational: "
            f"a GPU optimization); {timings.describe(optimization.name, 'default')}")
    figures.insert(0, Figure(f"optimization_ratio_{optimization.name}",
                             timings.ratio(optimization.name, "default"), "ratio", None, note))
    return figures


def measure(context: BenchContext) -> list[Figure]:
    figures: list[Figure] = []
    for optimization in measured_optimizations():
        figures += _measure_one(context, optimization)
    return figures
