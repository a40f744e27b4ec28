#!/usr/bin/env bash
# Installs what the app needs (first run only) and starts the WebUI. Arguments go to app.py.
set -euo pipefail
cd "$(dirname "$0")"
scripts/install.sh requirements.txt
exec .venv/bin/python app.py "$@"
