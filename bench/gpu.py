"""GPU speed benchmark: bare diffusers eager against our engine, on full-size random-weight
models (PAI's text encoder, the SD 1.5 UNet and VAE, a ControlNet), no download needed.

    python bench/gpu.py --out bench/gpu_results.json            # on a GPU (bench/run_gpu.sh)
    python bench/gpu.py --tiny --out /tmp/gpu_tiny.json         # tiny replicas on the CPU

For each job (512² and 768², batch 1 and 4, fp16 and bf16, plain and ControlNet; 20 steps,
guidance 7) it prints guided steps per second and seconds per image for each path, with the
compute floor (the job's FLOPs at the device's peak) beside each figure, checks that every
path made the same images for the same seed, and checks the goals. Timings are medians of
interleaved runs after a warm-up. A benchmark, not a test: it fails only when images differ.
"""

from __future__ import annotations

import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT)]


def main(argv: list[str] | None = None) -> int:
    # Imported here, after the path is set: torch and diffusers load only when it runs.
    from bench.gpu_run import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
