"""Start-up benchmark: how long ``python app.py --demo`` takes to serve its page, and until the
engine has loaded the demo model, on a fresh data folder (demo set built) and again (cached).

    .venv/bin/python bench/startup.py

A benchmark, not a test: it prints numbers and never fails on them.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LIMIT_S = 120


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def answers(url: str) -> bool:
    try:
        with urllib.request.urlopen(url, timeout=1) as response:
            return response.status == 200
    except OSError:
        return False


def measure(data_dir: Path) -> tuple[float, float]:
    port = free_port()
    log_path = data_dir / "app.log"
    started = time.perf_counter()
    with log_path.open("w") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--demo", "--data-dir", str(data_dir), "--port",
             str(port), "--verbose"], cwd=ROOT, stdout=log, stderr=subprocess.STDOUT,
            env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        served = loaded = None
        while time.perf_counter() - started < LIMIT_S:
            now = time.perf_counter() - started
            if served is None and answers(f"http://127.0.0.1:{port}/"):
                served = now
            if loaded is None and "active model: demo-base" in log_path.read_text():
                loaded = now
            if served is not None and loaded is not None:
                break
            time.sleep(0.1)
        return served or float("nan"), loaded or float("nan")
    finally:
        process.terminate()
        process.wait(timeout=30)


def main() -> None:
    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder)
        for run in ("first run (builds the demo set)", "second run (cached)"):
            served, loaded = measure(data)
            print(f"{run}: page served after {served:.1f} s, demo model loaded after "
                  f"{loaded:.1f} s")


if __name__ == "__main__":
    main()
