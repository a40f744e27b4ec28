"""The per-platform wrappers hold no logic: each hands its arguments to launch.py, which the
tests exercise. There is no Windows machine here, so the batch files are checked as text."""

from __future__ import annotations

import ast
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# Lines of a batch file that only talk or branch to that message.
BATCH_PLUMBING = re.compile(r"^(@echo off|rem .*|echo .*|chcp 65001 >nul|where py >nul 2>nul|"
                            r"if errorlevel 1 goto no_py|:no_py|exit /b (1|%errorlevel%))$")


@pytest.mark.parametrize("command", ["run", "test"])
def test_the_batch_files_only_call_the_launcher_through_py(command: str) -> None:
    raw = (ROOT / f"{command}.bat").read_bytes()
    assert b"\r\n" in raw and b"\n" not in raw.replace(b"\r\n", b""), "cmd wants CRLF lines"
    lines = [line.strip() for line in raw.decode("utf-8").splitlines() if line.strip()]
    substance = [line for line in lines if not BATCH_PLUMBING.match(line)]
    assert substance == [f'py -3 "%~dp0launch.py" {command} %*']
    assert any("python.org" in line for line in lines if line.startswith("echo"))


@pytest.mark.parametrize("command", ["run", "test"])
def test_the_shell_scripts_only_call_the_launcher(command: str) -> None:
    lines = (ROOT / f"{command}.sh").read_text(encoding="utf-8").splitlines()
    substance = [line for line in lines if line and not line.startswith("#")]
    assert substance == ['exec "$(command -v python3.11 || command -v python3)" '
                         f'"$(dirname "$0")/launch.py" {command} "$@"']


def test_ci_still_runs_the_readme_test_command() -> None:
    assert "./test.sh -q" in (ROOT / ".ci" / "run").read_text(encoding="utf-8")


def test_the_installer_needs_only_the_standard_library() -> None:
    """It runs on the user's Python before any package is installed."""
    files = [*sorted((ROOT / "installer").glob("*.py")), ROOT / "launch.py"]
    foreign = []
    for path in files:
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                top = name.split(".")[0]
                if top not in sys.stdlib_module_names and top not in ("installer", "__future__"):
                    foreign.append(f"{path.name}: {name}")
    assert foreign == []


def test_launch_py_parses_as_old_python() -> None:
    """An old Python must reach the version message, not a syntax error."""
    for path in (ROOT / "launch.py", ROOT / "installer" / "python_version.py"):
        ast.parse(path.read_text(encoding="utf-8"), feature_version=(3, 7))
