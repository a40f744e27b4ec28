"""Responsiveness benchmark: how fast the page, its config, the progress and the listings answer
while a long job runs and a crowd waits (model switches and generations), on the real serving
stack (``app.build_http_app`` behind our uvicorn) over a fake engine, and the same reads with
nobody waiting, for a ratio measured in the same run.

    .venv/bin/python bench/responsiveness.py [--crowd 50] [--rounds 20]

A benchmark, not a test: it prints numbers and never fails on them. The goal (issue 9) is that
every read answers within a second while 50 clients wait.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]

READS = ("/", "/config", "/sdapi/v1/progress", "/sdapi/v1/sd-models", "/sdapi/v1/options")


def _serve(folder: Path):
    from api.server import build_server
    from app import build_http_app
    from app_settings import AppSettings, Preferences, PreferencesStore
    from engine.fake_engine import fake_image_service
    from tests.support.ui_client import free_port
    from ui.app import UiOptions, build_ui

    service, engine = fake_image_service(folder / "data")  # the real service, a fake engine
    engine.gate = threading.Event()
    store = PreferencesStore(folder / "settings.json")
    ui = build_ui(service, UiOptions(Preferences(output_dir=str(folder))), store)
    ui.queue(max_size=32, default_concurrency_limit=1)
    port = free_port()
    server = build_server(build_http_app(ui, service, AppSettings(port=port)), "127.0.0.1", port)
    thread = server.start_in_thread()
    return service, engine, server, thread, f"http://127.0.0.1:{port}"


def _latencies(url: str, rounds: int) -> dict[str, list[float]]:
    timings: dict[str, list[float]] = {path: [] for path in READS}
    with httpx.Client(timeout=30) as client:
        for _ in range(rounds):
            for path in READS:
                started = time.perf_counter()
                client.get(f"{url}{path}").raise_for_status()
                timings[path].append(time.perf_counter() - started)
    return timings


def _crowd(url: str, size: int, other_model: str) -> list:
    pool = ThreadPoolExecutor(max_workers=size)
    half = size // 2
    futures = [pool.submit(httpx.post, f"{url}/sdapi/v1/options", timeout=300,
                           json={"sd_model_checkpoint": other_model}) for _ in range(half)]
    futures += [pool.submit(httpx.post, f"{url}/sdapi/v1/txt2img", timeout=300,
                            json={"prompt": "等", "steps": 2, "width": 64, "height": 64})
                for _ in range(size - half)]
    return futures


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--crowd", type=int, default=50)
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args()
    from engine.store.manifest import ModelKind

    with tempfile.TemporaryDirectory() as folder:
        service, engine, server, thread, url = _serve(Path(folder))
        idle = _latencies(url, args.rounds)
        httpx.post(f"{url}/sdapi/v2/jobs", json={"prompt": "长", "steps": 2})
        engine.started.wait(30)
        other = [e.id for e in service.entries(ModelKind.BASE)][1]
        futures = _crowd(url, args.crowd, other)
        time.sleep(2)  # let the crowd queue up
        busy = _latencies(url, args.rounds)
        engine.gate.set()
        for future in futures:
            future.result()
        server.should_exit = True
        thread.join(10)
    print(f"{'route':24} {'idle p50 ms':>12} {'busy p50 ms':>12} {'busy max ms':>12} {'ratio':>7}")
    for path in READS:
        idle_p50, busy_p50 = statistics.median(idle[path]), statistics.median(busy[path])
        print(f"{path:24} {idle_p50 * 1000:12.1f} {busy_p50 * 1000:12.1f} "
              f"{max(busy[path]) * 1000:12.1f} {busy_p50 / idle_p50:7.2f}")
    worst = max(max(times) for times in busy.values())
    print(f"slowest read while {args.crowd} clients waited: {worst:.3f} s (goal: under 1 s)")


if __name__ == "__main__":
    main()
