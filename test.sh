#!/usr/bin/env bash
# Installs what the tests need (system packages too), runs the quality gate, then the tests
# offline: launch.py does all the work.
exec "$(command -v python3.11 || command -v python3)" "$(dirname "$0")/launch.py" test "$@"
