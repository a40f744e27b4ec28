#!/usr/bin/env bash
# Creates .venv (Python 3.11+) and installs the pinned requirements into it.
# Usage: scripts/install.sh requirements.txt|requirements-dev.txt
set -euo pipefail
cd "$(dirname "$0")/.."
requirements="${1:-requirements.txt}"
python_bin="$(command -v python3.11 || command -v python3)"
if [ ! -x .venv/bin/python ]; then
  "$python_bin" -m venv .venv
fi
stamp=".venv/.installed-$(basename "$requirements")"
# Reinstall only when the pins changed: a warm machine starts in seconds.
if [ ! -f "$stamp" ] || ! cmp -s "$stamp" <(cat requirements*.txt); then
  .venv/bin/python -m pip install --quiet --upgrade pip
  .venv/bin/python -m pip install --quiet -r "$requirements"
  cat requirements*.txt > "$stamp"
fi
