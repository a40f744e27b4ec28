"""bench/gpu.py: the floor arithmetic, the time budget, and a whole ``--tiny`` run on the CPU
(every row and column there, positive numbers, the engine's images equal to bare diffusers',
and a planted wrong seed caught). Behaviour only: no test looks at how fast anything ran."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from bench.floor import SD15_FLOPS, FlopTable, compute_floor, known_peak, times_floor
from bench.gpu_matrix import ENGINE_OPTIMIZATIONS
from bench.gpu_run import OPTIMIZATIONS, REORDERED_TOLERANCE

ROOT = Path(__file__).resolve().parents[2]
TINY_JOBS = [(64, batch, "fp32", kind) for batch in (1, 2) for kind in ("plain", "controlnet")]
PATH_LABELS = {"diffusers eager (SDPA)", "engine, SDPA (default)", "engine + channels-last",
               "engine + fused QKV", "engine + torch.compile", "engine + step cache"}
MEASURED_NUMBERS = ("steps_per_s", "s_per_image", "floor_steps_per_s", "floor_s_per_image",
                    "steps_x_floor", "image_x_floor", "speedup_vs_bare")


# -- the floor (pure arithmetic) ---------------------------------------------------------------

def test_floor_at_512_batch_1_is_the_briefs_2_ms_step_and_44_ms_image():
    floor = compute_floor(SD15_FLOPS, 790.0, side=512, batch=1, steps=20, controlnet=False)
    assert 1 / floor.steps_per_s == pytest.approx(1.61 / 790)  # about 2.0 ms
    assert floor.s_per_image == pytest.approx((20 * 1.61 + 2.51 + 0.013) / 790)  # about 44 ms


def test_floor_at_768_is_about_116_ms_an_image():
    floor = compute_floor(SD15_FLOPS, 790.0, side=768, batch=1, steps=20, controlnet=False)
    assert floor.s_per_image == pytest.approx(0.116, abs=0.002)


def test_batch_and_controlnet_scale_the_step_and_share_the_prompts():
    table = FlopTable({64: 2.0}, 0.5, {64: 10.0}, 1.0, "made up")
    floor = compute_floor(table, 100.0, side=64, batch=4, steps=3, controlnet=True)
    assert floor.steps_per_s == pytest.approx(100.0 / (4 * 2.0 * 1.5))
    assert floor.s_per_image == pytest.approx((3 * 2.0 * 1.5 + 10.0 + 1.0 / 4) / 100.0)
    assert times_floor(0.5, 0.25) == 2.0


def test_a_side_missing_from_the_table_is_named():
    with pytest.raises(KeyError, match="1024x1024"):
        compute_floor(SD15_FLOPS, 790.0, side=1024, batch=1, steps=20, controlnet=False)


def test_known_peaks_match_gpu_names_and_not_others():
    assert known_peak("NVIDIA H200").tflops == 790.0
    assert known_peak("NVIDIA H100 80GB HBM3").tflops == 790.0
    assert known_peak("CPU (2 cores)") is None


# -- the time budget ---------------------------------------------------------------------------

def test_budget_refuses_a_job_that_would_likely_run_past_it():
    from bench.gpu_paths import Job
    from bench.gpu_run import Budget

    now = [0.0]
    budget = Budget(100.0, clock=lambda: now[0])
    small = Job(side=512, batch=1, dtype="fp16", controlnet=False, steps=20)
    large = Job(side=512, batch=4, dtype="fp16", controlnet=False, steps=20)
    assert budget.allows(small)
    now[0] = 60.0
    budget.record(small, 15.0)
    assert budget.allows(small)  # 60 + 15 <= 100
    assert not budget.allows(large)  # 60 + 4 * 15 > 100
    now[0] = 101.0
    assert not budget.allows(small)


# -- a whole --tiny run ------------------------------------------------------------------------

@pytest.fixture(scope="module")
def tiny_results(tmp_path_factory) -> dict:
    out = tmp_path_factory.mktemp("gpu-bench") / "results.json"
    done = subprocess.run(
        [sys.executable, str(ROOT / "bench" / "gpu.py"), "--tiny", "--repeats", "1",
         "--out", str(out)], cwd=ROOT, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    return json.loads(out.read_text(encoding="utf-8"))


@pytest.mark.engine
def test_tiny_run_has_a_row_for_every_job_and_path(tiny_results):
    rows = tiny_results["rows"]
    found = {(r["side"], r["batch"], r["dtype"], r["kind"], r["label"]) for r in rows}
    assert found == {(*job, label) for job in TINY_JOBS for label in PATH_LABELS}
    assert len(rows) == len(found)
    # The first job always runs; on a busy machine the time budget may leave later ones out.
    first = TINY_JOBS[0]
    statuses = {r["label"]: r["status"] for r in rows
                if (r["side"], r["batch"], r["dtype"], r["kind"]) == first}
    assert statuses["diffusers eager (SDPA)"] == statuses["engine, SDPA (default)"] == "measured"
    for optimization in ENGINE_OPTIMIZATIONS:
        offered = optimization.settings is not None
        assert (statuses[optimization.label] == "measured") == offered, optimization.name
    assert statuses["engine + torch.compile"] == "measured"


@pytest.mark.engine
def test_tiny_run_numbers_are_positive_and_images_match(tiny_results):
    for row in tiny_results["rows"]:
        assert row["floor_steps_per_s"] > 0 and row["floor_s_per_image"] > 0
        if row["status"] != "measured":
            assert row["steps_per_s"] is None
            continue
        assert all(row[name] > 0 for name in MEASURED_NUMBERS), row
        assert len(row["runs"]) == 1
        if row["path"] == "engine" and not OPTIMIZATIONS[row["optimization"]].exact:
            # The step cache changes the pictures on purpose: their difference is recorded.
            assert row["images_match"] is None and 0 < row["max_pixel_diff"] < 255, row
        elif row["path"] == "engine":
            exact = not OPTIMIZATIONS[row["optimization"]].reorders_math
            assert row["images_match"] is True, row
            assert row["max_pixel_diff"] <= (0 if exact else REORDERED_TOLERANCE["fp32"]), row


@pytest.mark.engine
def test_tiny_run_floor_column_comes_from_its_flop_table_and_peak(tiny_results):
    flops = tiny_results["flops"]
    table = FlopTable({int(k): v for k, v in flops["unet_guided_step_tflop"].items()},
                      flops["controlnet_extra"],
                      {int(k): v for k, v in flops["vae_decode_tflop"].items()},
                      flops["text_encoder_tflop"], flops["source"])
    peak = tiny_results["peak"]["tflops"]
    for row in tiny_results["rows"]:
        floor = compute_floor(table, peak, side=row["side"], batch=row["batch"], steps=3,
                              controlnet=row["kind"] == "controlnet")
        assert row["floor_steps_per_s"] == pytest.approx(floor.steps_per_s)
        assert row["floor_s_per_image"] == pytest.approx(floor.s_per_image)
        if row["status"] == "measured":
            assert row["steps_x_floor"] == pytest.approx(
                row["floor_steps_per_s"] / row["steps_per_s"])


@pytest.mark.engine
def test_tiny_run_checks_the_three_goals(tiny_results):
    goals = tiny_results["goals"]
    assert len(goals) == 3
    assert {g["status"] for g in goals} <= {"met", "not met"}
    assert all(g["side"] == 64 and g["batch"] == 1 for g in goals)
    # The step cache is fastest there, but makes other pictures: it is no path to a goal.
    assert not any("step cache" in g["detail"] for g in goals)


@pytest.fixture
def library_logging_restored(monkeypatch):
    """main() quiets diffusers and transformers for its own output: give the next tests their
    log lines back (and the offline switch as it was)."""
    import diffusers
    import transformers

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    levels = (diffusers.utils.logging.get_verbosity(), transformers.utils.logging.get_verbosity())
    yield
    diffusers.utils.logging.set_verbosity(levels[0])
    transformers.utils.logging.set_verbosity(levels[1])
    diffusers.utils.logging.enable_progress_bar()
    transformers.utils.logging.enable_progress_bar()


@pytest.mark.engine
def test_a_different_seed_on_one_side_is_caught(tmp_path, monkeypatch, library_logging_restored):
    """The planted bug: bare diffusers draws its noise from another seed than the engine."""
    from bench import gpu_run
    from bench.gpu_paths import BarePath

    monkeypatch.setattr(BarePath, "seeds_for", lambda self, job: [s + 1 for s in job.seeds()])
    out = tmp_path / "results.json"
    with pytest.raises(gpu_run.ImagesDiffer, match="engine, SDPA"):
        gpu_run.main(["--tiny", "--repeats", "1", "--batches", "1", "--kinds", "plain",
                      "--out", str(out)])
    rows = json.loads(out.read_text(encoding="utf-8"))["rows"]
    engine_row = next(r for r in rows if r["label"] == "engine, SDPA (default)")
    assert engine_row["images_match"] is False and engine_row["max_pixel_diff"] > 0
