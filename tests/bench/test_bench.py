"""The benchmark suite works: ``python -m bench --quick`` writes every figure with its goal and
whether it was met, and the table; the engine-versus-diffusers comparison refuses unlike work.
Behaviour only: timing goals live in the benchmark, never here."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from bench.optimizations import figure_names as optimization_figures
from bench.plan import QUICK
from bench.report import Figure, not_measured, table
from bench.suite import ALL_FIGURES, selected

ROOT = Path(__file__).resolve().parents[2]
QUICK_RUN_TIMEOUT_S = 600
EXPECTED_FIGURES = {
    "engine_overhead_ratio", "api_overhead_ratio", "gradio_overhead_ratio", "mode_switch_ms",
    "mode_switch_loaded_bytes", "lora_switch_ms", "lora_weight_change_ms", "base_load_ms",
    "cold_start_s", "first_image_s", "rss_all_modes_over_base", "preview_cost_ratio",
    "preview_cost_ratio_every_step", "preview_cost_ratio_taesd",
    "hires_cost_ratio", "upscale_tile_ratio", *optimization_figures()}
NOT_YET = {"hires_cost_ratio", "upscale_tile_ratio"}


def test_the_suite_lists_every_figure_of_the_issue():
    assert set(ALL_FIGURES) == EXPECTED_FIGURES


def test_only_names_a_benchmark_or_one_of_its_figures():
    assert [b.name for b in selected("lora_switch_ms")] == ["lora_switch"]
    assert [b.name for b in selected("memory")] == ["memory"]
    with pytest.raises(ValueError, match="no benchmark named 'nope'"):
        selected("nope")


def test_a_goal_is_met_at_or_under_it_and_unmeasured_figures_say_why():
    figures = [Figure("fast", 1.05, "ratio", 1.05), Figure("slow", 1.2, "ratio", 1.05),
               Figure("no_goal", 3.0, "ms"), not_measured("later", "ratio", "not built yet")]
    assert [figure.met for figure in figures] == [True, False, None, None]
    rendered = table(figures)
    assert "| `slow` | 1.200 | <= 1.05 | NO |" in rendered
    assert "| `later` | not measured | - | - | not built yet |" in rendered


@pytest.mark.engine
@pytest.mark.servers
def test_quick_run_writes_every_figure_with_goal_and_verdict(tmp_path):
    out = tmp_path / "results.json"
    finished = subprocess.run(
        [sys.executable, "-m", "bench", "--quick", "--out", str(out)], cwd=ROOT,
        capture_output=True, text=True, timeout=QUICK_RUN_TIMEOUT_S,
        env={**os.environ, "HF_HUB_OFFLINE": "1"})
    assert finished.returncode == 0, finished.stderr[-3000:]

    document = json.loads(out.read_text(encoding="utf-8"))
    figures = document["figures"]
    assert set(figures) == EXPECTED_FIGURES
    for name, figure in figures.items():
        if name in NOT_YET:
            assert (figure["measured"], figure["value"], figure["met"]) == (False, None, None)
            assert "does not exist yet" in figure["reason"]
            continue
        assert figure["measured"] is True, name
        assert isinstance(figure["value"], float) and figure["value"] >= 0, name
        if figure["goal_at_most"] is None:
            assert figure["met"] is None, name
        else:
            assert figure["met"] is (figure["value"] <= figure["goal_at_most"]), name
    assert document["plan"]["quick"] is True
    assert {"cpu_count", "torch", "diffusers", "date"} <= set(document["machine"])
    written_table = out.with_suffix(".md").read_text(encoding="utf-8")
    for name in EXPECTED_FIGURES:
        assert f"`{name}`" in written_table and f"`{name}`" in finished.stdout


@pytest.fixture(scope="module")
def bench_context(tmp_path_factory):
    from bench.context import build_context

    return build_context(tmp_path_factory.mktemp("bench"), QUICK)


@pytest.mark.engine
def test_engine_and_bare_diffusers_make_the_same_image(bench_context):
    from bench.engine_overhead import check_same_image

    check_same_image(bench_context)  # raises if the comparison were unfair


@pytest.mark.engine
def test_a_bare_side_seeded_differently_stops_the_overhead_benchmark(bench_context):
    """The planted bug: one side's seed differs, so the two sides would not do the same work."""
    from bench import engine_overhead
    from bench.context import SEED

    with pytest.raises(engine_overhead.ImagesDiffer, match="images differ"):
        engine_overhead.measure(bench_context, bare_seed=SEED + 1)
