"""Switching on a loaded base: between modes (``mode_switch_ms`` and the bytes of weights
loaded while switching), between LoRAs (``lora_switch_ms``, ``lora_weight_change_ms``), against
loading the base itself (``base_load_ms``)."""

from __future__ import annotations

import logging
import statistics
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from bench.context import CONTROLNET_ID, LORA_IDS, BenchContext
from bench.measure import seconds
from bench.mode_requests import requests_by_mode
from bench.report import Figure

logger = logging.getLogger(__name__)

MODE_SEQUENCE = ("txt2img", "img2img", "controlnet", "txt2img")
MODE_SWITCH_GOAL_MS = 50.0
LORA_WEIGHT = 0.8
CHANGED_WEIGHT = 0.5
# What a switch is: the engine's stage that finds the base, the ControlNet and the pipeline
# for the job kind (PipelineManager's three lookups). Input images and denoising are the job's
# own work in any mode, so they are left out.
SWITCH_CALLS = ("base", "pipeline", "controlnet")


def _weights(module: Any) -> Iterator[Any]:
    yield from module.parameters()
    yield from module.buffers()


def _modules(pipe: Any) -> list[Any]:
    import torch

    return [part for part in pipe.components.values() if isinstance(part, torch.nn.Module)]


def _weight_pointers(pipes: list[Any]) -> dict[int, int]:
    """Storage address to size in bytes of every weight tensor the pipelines hold."""
    found: dict[int, int] = {}
    for pipe in pipes:
        for module in _modules(pipe):
            for tensor in _weights(module):
                found[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    return found


@contextmanager
def _timed_lookups(manager: Any, spent: list[float]) -> Iterator[None]:
    """Add the time of every PipelineManager lookup to ``spent`` while inside (wrapping the
    instance's bound methods: the benchmark must not change the engine to observe it)."""
    originals = {name: getattr(manager, name) for name in SWITCH_CALLS}

    def timed(original: Callable) -> Callable:
        def call(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return original(*args, **kwargs)
            finally:
                spent.append(time.perf_counter() - started)
        return call

    for name, original in originals.items():
        setattr(manager, name, timed(original))
    try:
        yield
    finally:
        for name in originals:
            delattr(manager, name)


def _switch_round(context: BenchContext, requests: dict) -> tuple[list[float], int]:
    """One pass of MODE_SEQUENCE from no derived pipeline: seconds per switch, bytes of new
    weight tensors that the pipelines hold afterwards."""
    engine = context.engine
    base = engine.pipelines.base(context.base_id)
    engine.pipelines.controlnet(CONTROLNET_ID)  # ready, as in "every mode ready"
    base.derived.clear()  # the first switch into each mode builds its pipeline
    engine.generate(engine.prepare(requests[MODE_SEQUENCE[0]]))
    before = _ready_weights(engine, base)
    switches = []
    for mode in MODE_SEQUENCE[1:]:
        spent: list[float] = []
        prepared = engine.prepare(requests[mode])
        with _timed_lookups(engine.pipelines, spent):
            engine.generate(prepared)
        switches.append(sum(spent))
    after = _weight_pointers([base.pipe, *base.derived.values()])
    new_bytes = sum(size for pointer, size in after.items() if pointer not in before)
    return switches, new_bytes


def _ready_weights(engine: Any, base: Any) -> dict[int, int]:
    """The base's weights and the ready ControlNet's."""
    found = _weight_pointers([base.pipe])
    controlnet = engine.pipelines.controlnet(CONTROLNET_ID)
    for tensor in _weights(controlnet):
        found[tensor.untyped_storage().data_ptr()] = tensor.untyped_storage().nbytes()
    return found


def measure_modes(context: BenchContext) -> list[Figure]:
    requests = requests_by_mode(context.base_id, context.plan.side)
    rounds = [_switch_round(context, requests) for _ in range(context.plan.repeats)]
    slowest = statistics.median(max(switches) for switches, _ in rounds)
    per_switch = [statistics.median(switches[i] for switches, _ in rounds) * 1000
                  for i in range(len(MODE_SEQUENCE) - 1)]
    loaded = max(new_bytes for _, new_bytes in rounds)
    names = " → ".join(MODE_SEQUENCE)
    note = (f"{names}, each mode's pipeline built on its first switch: "
            + ", ".join(f"{ms:.1f}" for ms in per_switch) + " ms; the slowest is the figure")
    return [Figure("mode_switch_ms", slowest * 1000, "ms", MODE_SWITCH_GOAL_MS, note),
            Figure("mode_switch_loaded_bytes", float(loaded), "bytes", 0.0,
                   "weight tensors the pipelines hold after the switches that the loaded "
                   "base and the ready ControlNet did not")]


def _lora_round(context: BenchContext) -> tuple[float, float, float, float]:
    """(base load, first LoRA switch, weight change, switch back to a loaded LoRA) seconds."""
    from engine.store.loras import find_lora

    engine = context.engine
    pipelines = engine.pipelines
    pipelines.unload_all()
    base_load = seconds(lambda: pipelines.base(context.base_id))
    base = pipelines.base(context.base_id)
    first, second = (find_lora(engine.store, engine.settings, name) for name in LORA_IDS)
    with pipelines.lock:
        base.loras.apply(base.pipe, [(first, LORA_WEIGHT)])
        switch = seconds(lambda: base.loras.apply(base.pipe, [(second, LORA_WEIGHT)]))
        change = seconds(lambda: base.loras.apply(base.pipe, [(second, CHANGED_WEIGHT)]))
        back = seconds(lambda: base.loras.apply(base.pipe, [(first, LORA_WEIGHT)]))
        base.loras.unload_all(base.pipe)
    return base_load, switch, change, back


def measure_loras(context: BenchContext) -> list[Figure]:
    _lora_round(context)  # warm-up: file cache, first peft import
    rounds = [_lora_round(context) for _ in range(context.plan.repeats)]
    base_load, switch, change, back = (statistics.median(column) * 1000
                                       for column in zip(*rounds, strict=True))
    return [
        Figure("base_load_ms", base_load, "ms", None,
               "the demo base from disk (warm file cache) onto the CPU"),
        Figure("lora_switch_ms", switch, "ms", None,
               f"to a LoRA not loaded yet (read, inject): {switch / base_load:.2f} of "
               f"base_load_ms; back to one still loaded: {back:.1f} ms"),
        Figure("lora_weight_change_ms", change, "ms", None,
               f"same LoRA, new weight (set_adapters): {change / base_load:.3f} of "
               "base_load_ms"),
    ]
