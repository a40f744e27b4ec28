#!/usr/bin/env bash
# The quality gate that ./test.sh runs before the tests: ruff (lint) and mypy (types), both
# configured in pyproject.toml and pinned in requirements-dev.txt. Stops at the first that fails.
set -euo pipefail
cd "$(dirname "$0")/.."
echo "== ruff check ."
.venv/bin/python -m ruff check .
echo "== mypy (what it checks, and how strictly: pyproject.toml)"
.venv/bin/python -m mypy
