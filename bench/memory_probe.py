"""Run in a fresh process by ``bench.memory``: load the demo base, run one small job in each
mode asked for, and write the process's peak resident memory as JSON on stdout.

    python -m bench.memory_probe DEMO_ROOT SIDE txt2img [img2img controlnet]
"""

from __future__ import annotations

import json
import resource
import sys
from pathlib import Path


def peak_rss_bytes() -> int:
    """The kernel's high-water mark of this process's resident memory (kilobytes on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def run_modes(demo_root: Path, side: int, modes: list[str]) -> None:
    from bench.context import new_engine, offline_environment
    from bench.mode_requests import requests_by_mode
    from engine.logging_setup import quiet_libraries

    offline_environment()
    quiet_libraries()
    engine = new_engine(demo_root)
    requests = requests_by_mode("demo-base", side)
    for mode in modes:
        engine.generate(engine.prepare(requests[mode]))


def main(argv: list[str]) -> int:
    demo_root, side, modes = Path(argv[0]), int(argv[1]), argv[2:]
    run_modes(demo_root, side, modes)
    sys.stdout.write(json.dumps({"peak_rss_bytes": peak_rss_bytes(), "modes": modes}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
