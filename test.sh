#!/usr/bin/env bash
# Installs everything the tests need (system packages included), runs the quality gate
# (ruff, mypy: scripts/check.sh) and then the tests, offline.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install_system_packages.sh
scripts/install.sh requirements-dev.txt
scripts/check.sh
export HF_HUB_OFFLINE=1
exec .venv/bin/python -m pytest "$@"
