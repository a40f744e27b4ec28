"""Run in a fresh process by ``bench.memory``: import everything, note the resident memory,
then load the demo base and run one small job in each mode asked for; write as JSON on stdout
the process's peak resident memory and its resident memory once imports were done.

    python -m bench.memory_probe DEMO_ROOT SIDE txt2img [img2img controlnet]
"""

from __future__ import annotations

import gc
import json
import resource
import sys
from pathlib import Path

import psutil

STATUS = Path("/proc/self/status")
CLEAR_REFS = Path("/proc/self/clear_refs")


def reset_peak() -> bool:
    """Start the kernel's high-water mark (VmHWM) again from now, where Linux allows it: the
    imports' own transient peak would otherwise hide what the models take."""
    try:
        CLEAR_REFS.write_text("5")
    except OSError:
        return False
    return True


def peak_rss_bytes() -> int:
    try:
        for line in STATUS.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # kilobytes on Linux


def import_everything() -> None:
    """What any mode needs imported, on both sides alike."""
    import diffusers

    from bench.context import offline_environment

    offline_environment()
    from engine.generate.engine import Engine  # noqa: F401 - imported for its cost
    from engine.logging_setup import quiet_libraries

    quiet_libraries()
    for name in ("StableDiffusionImg2ImgPipeline", "StableDiffusionControlNetPipeline",
                 "ControlNetModel"):
        getattr(diffusers, name)


def run_modes(demo_root: Path, side: int, modes: list[str]) -> None:
    from bench.context import new_engine
    from bench.mode_requests import requests_by_mode

    engine = new_engine(demo_root)
    requests = requests_by_mode("demo-base", side)
    for mode in modes:
        engine.generate(engine.prepare(requests[mode]))


def main(argv: list[str]) -> int:
    demo_root, side, modes = Path(argv[0]), int(argv[1]), argv[2:]
    import_everything()
    gc.collect()
    peak_was_reset = reset_peak()
    after_imports = psutil.Process().memory_info().rss
    run_modes(demo_root, side, modes)
    sys.stdout.write(json.dumps({"peak_rss_bytes": peak_rss_bytes(),
                                 "after_imports_rss_bytes": after_imports,
                                 "peak_was_reset": peak_was_reset, "modes": modes}) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
