"""``cold_start_s`` and ``first_image_s``: ``python app.py --demo`` in a fresh process (the demo
set already built, as on every start after the first), until its page answers and until its
first txt2img through the HTTP API (the demo's recommended 4 steps at its default size) does.
Built on ``bench/startup.py``, which measures the first and the cached start."""

from __future__ import annotations

import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx

from bench.context import PROMPT, BenchContext
from bench.report import Figure
from bench.startup import LIMIT_S, ROOT, answers, free_port

FIRST_IMAGE = {"prompt": PROMPT, "steps": 4, "width": 256, "height": 256}
POLL_S = 0.05


def _wait_until_served(url: str, started: float) -> float:
    while time.perf_counter() - started < LIMIT_S:
        if answers(url):
            return time.perf_counter() - started
        time.sleep(POLL_S)
    raise TimeoutError(f"app.py --demo did not serve its page within {LIMIT_S} s")


def one_start(data_dir: Path) -> tuple[float, float]:
    """(seconds to the page served, seconds to the first image) of one fresh process."""
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    started = time.perf_counter()
    with (data_dir / "app.log").open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--demo", "--data-dir", str(data_dir), "--port",
             str(port)], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        served = _wait_until_served(url + "/", started)
        answer = httpx.post(f"{url}/sdapi/v1/txt2img", json=FIRST_IMAGE, timeout=LIMIT_S)
        answer.raise_for_status()
        return served, time.perf_counter() - started
    finally:
        process.terminate()
        process.wait(timeout=30)


def app_data_dir(context: BenchContext) -> Path:
    """A data folder whose demo set is the benchmark's own (built once, not per start)."""
    data_dir = context.root / "app-data"
    data_dir.mkdir(exist_ok=True)
    demo_link = data_dir / "demo"
    if not demo_link.exists():
        demo_link.symlink_to(context.demo_root, target_is_directory=True)
    return data_dir


def measure(context: BenchContext) -> list[Figure]:
    data_dir = app_data_dir(context)
    runs = [one_start(data_dir) for _ in range(context.plan.startup_runs)]
    served = statistics.median(run[0] for run in runs)
    first = statistics.median(run[1] for run in runs)
    return [
        Figure("cold_start_s", served, "s", None,
               "fresh `app.py --demo` process to its page served (demo set built)"),
        Figure("first_image_s", first, "s", None,
               "fresh process to its first 256px, 4-step txt2img answered by the API"),
    ]
