#!/usr/bin/env bash
# Installs what the app needs (first run only) and starts it: launch.py does all the work.
exec "$(command -v python3.11 || command -v python3)" "$(dirname "$0")/launch.py" run "$@"
