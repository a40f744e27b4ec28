"""The GPU benchmark's run: plan, models, paths, the timed matrix, results (see gpu.py)."""

from __future__ import annotations

import argparse
import json
import logging
import os
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch

from bench import gpu_report
from bench.floor import SD15_FLOPS, FlopTable, Peak, compute_floor, known_peak
from bench.gpu_matrix import (
    BARE_PATH,
    CONTROLNET,
    ENGINE_OPTIMIZATIONS,
    ENGINE_PATH,
    MEASURED,
    NOT_OFFERED,
    OVER_BUDGET,
    PLAIN,
    Row,
    job_matrix,
    offered_optimizations,
)
from bench.gpu_paths import BarePath, EnginePath, Job, Run
from bench.real_size import PAI_CONTEXT_LENGTH, REAL_SD15, TINY_SD15, BenchRepos, write_bench_repos

logger = logging.getLogger("bench.gpu")

# Half precision rounds differently where diffusers turns the decode into 0..255 (in fp16 or
# bf16) and where the engine does (in fp32): a level or two, never the tens a wrong seed gives.
HALF_PRECISION_TOLERANCE = 3
# An optimization that sums in another order (EngineOptimization.reorders_math) drifts by a
# rounding step in fp32; in half precision twenty steps can carry a rounding a few levels
# further (not yet measured on a GPU: the first run says how far).
REORDERED_TOLERANCE = {"fp32": 2, "half": 8}


OPTIMIZATIONS = {o.name: o for o in ENGINE_OPTIMIZATIONS}


class ImagesDiffer(AssertionError):
    """A path made other pictures than bare diffusers for the same job and seed."""


@dataclass(frozen=True)
class Plan:
    """What one run measures (``--tiny`` or full size) and how."""

    tiny: bool
    sides: tuple[int, ...]
    batches: tuple[int, ...]
    dtypes: tuple[str, ...]
    kinds: tuple[str, ...]
    steps: int
    warmups: int
    repeats: int
    budget_s: float
    on_mismatch: str


@dataclass(frozen=True)
class Defaults:
    sides: tuple[int, ...]
    batches: tuple[int, ...]
    dtypes: tuple[str, ...]
    steps: int
    repeats: int


FULL = Defaults(sides=(512, 768), batches=(1, 4), dtypes=("fp16", "bf16"), steps=20, repeats=5)
TINY = Defaults(sides=(64,), batches=(1, 2), dtypes=("fp32",), steps=3, repeats=2)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        description="GPU speed benchmark: bare diffusers against our engine (bench/gpu.py)")
    parser.add_argument("--tiny", action="store_true",
                        help="tiny replicas, 64², 3 steps, fp32 on the CPU (a few minutes); "
                             "torch.compile rows use the aot_eager backend there")
    parser.add_argument("--out", type=Path, help="write the results as JSON here")
    parser.add_argument("--budget-s", type=float, default=420.0,
                        help="start no job after this many seconds; what was measured is kept")
    parser.add_argument("--repeats", type=int,
                        help="timed runs per job and path (5; 2 with --tiny); at least 1")
    parser.add_argument("--warmups", type=int, default=1, help="untimed runs first, per path")
    parser.add_argument("--steps", type=int, help="denoising steps (20; 3 with --tiny)")
    parser.add_argument("--sizes", type=int, nargs="+", help="image sides (512 768)")
    parser.add_argument("--batches", type=int, nargs="+", help="batch sizes (1 4)")
    parser.add_argument("--dtypes", nargs="+", choices=("fp16", "bf16", "fp32"),
                        help="precisions (fp16 bf16; fp32 with --tiny)")
    parser.add_argument("--kinds", nargs="+", choices=(PLAIN, CONTROLNET),
                        default=[PLAIN, CONTROLNET])
    parser.add_argument("--peak-tflops", type=float,
                        help="the device's peak; default from a table of GPUs, else measured")
    parser.add_argument("--device", help="cuda or cpu (default: cuda if there is one)")
    parser.add_argument("--on-mismatch", choices=("fail", "record"), default="fail",
                        help="differing images: stop at once, or record them and exit 1 at the end")
    parser.add_argument("--work-dir", type=Path, help="where the model files go (a temp dir)")
    return parser.parse_args(argv)


def make_plan(args: argparse.Namespace) -> Plan:
    defaults = TINY if args.tiny else FULL
    return Plan(tiny=args.tiny, sides=tuple(args.sizes or defaults.sides),
                batches=tuple(args.batches or defaults.batches),
                dtypes=tuple(args.dtypes or defaults.dtypes), kinds=tuple(args.kinds),
                steps=args.steps or defaults.steps, warmups=args.warmups,
                repeats=args.repeats or defaults.repeats, budget_s=args.budget_s,
                on_mismatch=args.on_mismatch)


def pick_device(requested: str | None) -> torch.device:
    if requested:
        return torch.device(requested)
    return torch.device("cuda" if torch.cuda.is_available() else "cpu")


def device_name(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    return f"CPU ({os.cpu_count()} cores)"


def measure_peak(device: torch.device, dtype: torch.dtype) -> Peak:
    """A square matrix product's rate: the device's practical peak where no table knows it."""
    side = 8192 if device.type == "cuda" else 1024
    a = torch.randn(side, side, device=device, dtype=dtype)
    b = torch.randn(side, side, device=device, dtype=dtype)
    for _ in range(2):
        a @ b
    timings = []
    for _ in range(5):
        _synchronize(device)
        started = time.perf_counter()
        a @ b
        _synchronize(device)
        timings.append(time.perf_counter() - started)
    tflops = 2 * side**3 / statistics.median(timings) / 1e12
    return Peak(round(tflops, 3), f"measured here: {side}^3 matmul in {dtype}")


def _synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def pick_peak(args: argparse.Namespace, device: torch.device, plan: Plan) -> Peak:
    if args.peak_tflops:
        return Peak(args.peak_tflops, "--peak-tflops")
    known = known_peak(device_name(device)) if device.type == "cuda" else None
    if known is not None:
        return known
    from bench.gpu_paths import DTYPES

    return measure_peak(device, DTYPES[plan.dtypes[0]])


class BenchPath(Protocol):
    """One way of running a job (bare diffusers, or the engine with some optimization)."""

    label: str

    def run(self, job: Job) -> Run: ...


@dataclass
class Paths:
    """The loaded paths per precision, made when first needed and kept (the next jobs reuse
    them: loading is not what this benchmark measures)."""

    repos: BenchRepos
    device: torch.device
    scratch: Path
    # --tiny compiles with "aot_eager": the engine's compile path (dynamo, its guards, LoRA
    # hot-swap) without generating kernels, which on a CPU would take most of the run.
    compile_backend: str = "inductor"
    bare: dict[str, BarePath] = field(default_factory=dict)
    engines: dict[tuple[str, str], EnginePath] = field(default_factory=dict)

    def bare_path(self, dtype: str) -> BarePath:
        if dtype not in self.bare:
            self.bare[dtype] = BarePath(self.repos, self.device, dtype)
        return self.bare[dtype]

    def for_dtype(self, dtype: str) -> list[tuple[str | None, BenchPath]]:
        """Bare diffusers first (the reference), then each optimization the engine offers."""
        paths: list[tuple[str | None, BenchPath]] = [(None, self.bare_path(dtype))]
        for optimization in offered_optimizations():
            key = (dtype, optimization.name)
            if key not in self.engines:
                self.engines[key] = EnginePath(
                    self.repos, self.device, dtype, self.scratch / optimization.name,
                    optimization.settings or {}, optimization.label, self.compile_backend)
            paths.append((optimization.name, self.engines[key]))
        return paths


def _floor_row(job: Job, table: FlopTable, peak: Peak, path: str, optimization: str | None,
               label: str, status: str) -> Row:
    floor = compute_floor(table, peak.tflops, side=job.side, batch=job.batch, steps=job.steps,
                          controlnet=job.controlnet)
    return Row(side=job.side, batch=job.batch, dtype=job.dtype, kind=job.kind, path=path,
               optimization=optimization, label=label, status=status,
               floor_steps_per_s=floor.steps_per_s, floor_s_per_image=floor.s_per_image)


def over_budget_rows(job: Job, table: FlopTable, peak: Peak) -> list[Row]:
    """A job the time budget left out: the rows it would have had, with the floor only."""
    rows = [_floor_row(job, table, peak, BARE_PATH, None, BarePath.label, OVER_BUDGET)]
    rows += [_floor_row(job, table, peak, ENGINE_PATH, o.name, o.label, OVER_BUDGET)
             for o in offered_optimizations()]
    return rows


def not_offered_rows(job: Job, table: FlopTable, peak: Peak) -> list[Row]:
    """The optimizations the engine does not offer yet: a row each, with the floor only."""
    return [_floor_row(job, table, peak, ENGINE_PATH, o.name, o.label, NOT_OFFERED)
            for o in ENGINE_OPTIMIZATIONS if o.settings is None]


def compare_images(reference: np.ndarray, other: np.ndarray, dtype: str,
                   reorders_math: bool = False) -> tuple[bool, int]:
    if reference.shape != other.shape:
        return False, 255
    diff = int(np.abs(reference.astype(np.int16) - other.astype(np.int16)).max())
    if reorders_math:
        tolerance = REORDERED_TOLERANCE["fp32" if dtype == "fp32" else "half"]
    else:
        tolerance = 0 if dtype == "fp32" else HALF_PRECISION_TOLERANCE
    return diff <= tolerance, diff


def measure_job(job: Job, paths: list[tuple[str | None, BenchPath]], plan: Plan,
                table: FlopTable, peak: Peak) -> list[Row]:
    """Warm every path up, then time them in turn, rotating the order each round so no path
    always runs first; the first timed round's images are checked against bare diffusers'
    (after the warm-up, so a path that changes itself on its first job is caught too)."""
    for _, path in paths:
        for _ in range(plan.warmups):
            path.run(job)
    timed: list[list[Run]] = [[] for _ in paths]
    for round_index in range(plan.repeats):
        shift = round_index % len(paths)
        order = list(range(len(paths)))
        for index in order[shift:] + order[:shift]:
            timed[index].append(paths[index][1].run(job))
    rows = []
    reference = timed[0][0].images
    for (optimization, path), runs in zip(paths, timed, strict=True):
        row = _floor_row(job, table, peak, ENGINE_PATH if optimization else BARE_PATH,
                         optimization, path.label, MEASURED)
        if optimization is not None:
            options = OPTIMIZATIONS[optimization]
            match, row.max_pixel_diff = compare_images(reference, runs[0].images, job.dtype,
                                                       options.reorders_math)
            row.images_match = match if options.exact else None
        _fill_timings(row, runs, job)
        rows.append(row)
    bare_rate = rows[0].steps_per_s
    for row in rows:
        row.speedup_vs_bare = row.steps_per_s / bare_rate if row.steps_per_s and bare_rate else None
    return rows


def _fill_timings(row: Row, runs: list[Run], job: Job) -> None:
    row.runs = [round(run.total_s, 5) for run in runs]
    row.steps_per_s = statistics.median(run.loop_steps_per_s for run in runs)
    row.s_per_image = statistics.median(run.total_s for run in runs) / job.batch
    row.steps_x_floor = row.floor_steps_per_s / row.steps_per_s
    row.image_x_floor = row.s_per_image / row.floor_s_per_image


def _work(job: Job) -> float:
    """Relative work of a job, for the budget's estimate (ControlNet adds about 35 %)."""
    return job.side**2 * job.batch * (1 + SD15_FLOPS.controlnet_extra * job.controlnet)


class Budget:
    """Stops starting jobs when the next one would likely run past ``budget_s``."""

    def __init__(self, budget_s: float, clock: Callable[[], float] = time.perf_counter) -> None:
        self.budget_s, self.clock = budget_s, clock
        self.started = clock()
        self.last: tuple[Job, float] | None = None

    def allows(self, job: Job) -> bool:
        elapsed = self.clock() - self.started
        estimate = 0.0
        if self.last is not None:
            previous, seconds = self.last
            estimate = seconds * _work(job) / _work(previous)
        return elapsed + estimate <= self.budget_s

    def record(self, job: Job, seconds: float) -> None:
        self.last = (job, seconds)


@dataclass
class Results:
    """Everything the run found, written as JSON after every job (a run cut short keeps it)."""

    environment: dict[str, Any]
    plan: Plan
    peak: Peak
    flops: FlopTable
    rows: list[Row] = field(default_factory=list)

    def as_dict(self) -> dict[str, Any]:
        goals = gpu_report.goal_checks(self.rows, self.plan.dtypes, *self._goal_job())
        return {"environment": self.environment, "plan": self.plan.__dict__,
                "peak": self.peak.__dict__, "flops": self.flops.as_dict(),
                "rows": [row.as_dict() for row in self.rows],
                "goals": [goal.as_dict() for goal in goals]}

    def _goal_job(self) -> tuple[int, int]:
        """The goals' side and batch; the smallest measured with --tiny."""
        if self.plan.tiny:
            return min(self.plan.sides), min(self.plan.batches)
        return gpu_report.GOAL_SIDE, gpu_report.GOAL_BATCH

    def write(self, out: Path | None) -> None:
        if out is not None:
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_text(json.dumps(self.as_dict(), indent=2, ensure_ascii=False) + "\n",
                           encoding="utf-8")

    def print_table(self) -> None:
        print(f"{self.environment['device_name']}: peak {self.peak.tflops:g} TFLOP/s "
              f"({self.peak.source}); FLOPs: {self.flops.source}")
        for line in gpu_report.table_lines(self.rows):
            print(line)
        print()
        goals = gpu_report.goal_checks(self.rows, self.plan.dtypes, *self._goal_job())
        for line in gpu_report.goal_lines(goals):
            print(line)


def environment(device: torch.device, tiny: bool) -> dict[str, Any]:
    import diffusers
    import transformers

    return {"device": str(device), "device_name": device_name(device), "tiny": tiny,
            "torch": torch.__version__, "diffusers": diffusers.__version__,
            "transformers": transformers.__version__, "python": sys.version.split()[0]}


def flop_table(plan: Plan, paths: Paths) -> FlopTable:
    """The brief's table for the full-size models at its sides; counted here otherwise (the
    tiny replicas, or full size at other sides, as a CPU smoke run uses)."""
    known = set(SD15_FLOPS.unet_guided_step_tflop)
    if not plan.tiny and set(plan.sides) <= known:
        return SD15_FLOPS
    from bench.flop_count import count_flop_table

    modules = paths.bare_path(plan.dtypes[0]).modules()
    return count_flop_table(modules, plan.sides, PAI_CONTEXT_LENGTH)


def check_images(rows: list[Row], plan: Plan) -> None:
    differing = [row for row in rows if row.images_match is False]
    if differing and plan.on_mismatch == "fail":
        first = differing[0]
        raise ImagesDiffer(f"{first.label} made other images than bare diffusers for "
                           f"{first.side}² b{first.batch} {first.dtype} {first.kind} "
                           f"(max pixel difference {first.max_pixel_diff})")


def run_matrix(plan: Plan, paths: Paths, results: Results, out: Path | None) -> None:
    budget = Budget(plan.budget_s)
    for job in job_matrix(plan.sides, plan.batches, plan.dtypes, plan.kinds, plan.steps):
        if not budget.allows(job):
            logger.warning("time budget: %s² b%d %s %s not measured", job.side, job.batch,
                           job.dtype, job.kind)
            results.rows += over_budget_rows(job, results.flops, results.peak) + \
                not_offered_rows(job, results.flops, results.peak)
            continue
        job_paths = paths.for_dtype(job.dtype)  # loading is outside the job's estimate
        started = time.perf_counter()
        rows = measure_job(job, job_paths, plan, results.flops, results.peak)
        budget.record(job, time.perf_counter() - started)
        results.rows += rows + not_offered_rows(job, results.flops, results.peak)
        results.write(out)
        logger.info("%s² b%d %s %s: %s", job.side, job.batch, job.dtype, job.kind,
                    ", ".join(f"{r.label} {r.steps_per_s:.2f} steps/s" for r in rows))
        check_images(rows, plan)


def quiet_libraries() -> None:
    """No progress bars or load chatter from diffusers and transformers between the lines."""
    import diffusers
    import transformers

    diffusers.utils.logging.set_verbosity_error()
    diffusers.utils.logging.disable_progress_bar()
    transformers.utils.logging.set_verbosity_error()
    transformers.utils.logging.disable_progress_bar()


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    logger.setLevel(logging.INFO)
    quiet_libraries()
    os.environ["HF_HUB_OFFLINE"] = "1"  # everything is local; never wait on a network
    plan = make_plan(args)
    device = pick_device(args.device)
    configs = TINY_SD15 if plan.tiny else REAL_SD15
    save_dtype = torch.float32 if plan.tiny else torch.float16
    with tempfile.TemporaryDirectory(prefix="huajing-gpu-bench-", dir=args.work_dir) as work:
        repos = write_bench_repos(configs, Path(work), device, save_dtype)
        paths = Paths(repos, device, Path(work) / "engine",
                      compile_backend="aot_eager" if plan.tiny else "inductor")
        results = Results(environment(device, plan.tiny), plan, pick_peak(args, device, plan),
                          flop_table(plan, paths))
        try:
            run_matrix(plan, paths, results, args.out)
        finally:
            results.write(args.out)
            results.print_table()
    if any(row.images_match is False for row in results.rows):
        return 1
    return 0
