#!/usr/bin/env bash
# The GPU benchmark as one prepared run for a lent GPU machine (see bench/gpu.py).
#
# 1. Here, with PyPI reachable, once:      bench/run_gpu.sh fetch-wheels
#    (the GPU machine has torch but not diffusers, pydantic or our transformers: their wheels
#    go to .whl/, which git ignores and the device tool carries.)
# 2. On the GPU machine (device tool: carry [".whl"], timeout_s 600):
#       bench/run_gpu.sh
#    It installs the wheels into /tmp/site, runs the whole matrix within a time budget and
#    leaves gpu_results.json and gpu_table.txt in $OUT (or bench/ without $OUT). Commit them
#    as bench/gpu_results.json and bench/gpu_table.txt.
#
# Timing: models built and saved about 30 s, loaded about 30 s, the matrix stops starting jobs
# after BUDGET_S (most important jobs first), so the whole run stays near 7 minutes of the
# session's 15 minutes of device time.
set -euo pipefail
cd "$(dirname "$0")/.."

BUDGET_S="${BUDGET_S:-330}"
WHEELS=.whl
# The versions this project runs on (requirements.txt and its resolution), for the GPU
# machine's Python 3.12.
PACKAGES=(diffusers==0.42.1 transformers==5.24.0 pydantic==2.14.4 pydantic-core==2.50.5
          annotated-types==0.8.0 typing-inspection==0.4.5 typing-extensions==4.16.0
          regex==2026.12.2)

fetch_wheels() {
    mkdir -p "$WHEELS"
    python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 \
        --implementation cp --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
        --platform manylinux2014_x86_64 --platform any -d "$WHEELS" "${PACKAGES[@]}"
    du -sh "$WHEELS"
}

run_on_gpu() {
    if compgen -G "$WHEELS/*.whl" >/dev/null; then
        python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
            --target /tmp/site "$WHEELS"/*.whl
        export PYTHONPATH=/tmp/site
    fi
    local out="${OUT:-bench}"
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
    set -o pipefail
    PYTHONUNBUFFERED=1 python3 bench/gpu.py --out "$out/gpu_results.json" \
        --budget-s "$BUDGET_S" --on-mismatch record "$@" 2>&1 | tee "$out/gpu_table.txt"
}

case "${1:-run}" in
    fetch-wheels) fetch_wheels ;;
    run) shift || true; run_on_gpu "$@" ;;
    *) run_on_gpu "$@" ;;
esac
