"""The project's virtual environment: where its python is, whether it still runs, and making
or remaking it. Packages are only ever installed through that python."""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from installer import python_version

logger = logging.getLogger(__name__)
PROBE_TIMEOUT_S = 60

OK = "ok"
MISSING = "missing"  # no venv folder: create one
BROKEN = "broken"  # a folder whose python is gone or does not run: recreate
UNSUPPORTED = "unsupported"  # its python runs but is outside the supported range: recreate
NO_PIP = "no-pip"  # its python runs but has no pip (a venv made --without-pip): recreate

# (command) -> (exit status, stdout); OSError when the program cannot start.
Runner = Callable[[Sequence[str]], tuple[int, str]]

# Printed by the venv's python: its version and whether pip imports.
_PROBE = ("import sys, importlib.util; "
          "print(sys.version_info[0], sys.version_info[1], "
          "importlib.util.find_spec('pip') is not None)")


@dataclass(frozen=True)
class VenvState:
    health: str
    detail: str = ""  # for the message: what is wrong


def run_quietly(command: Sequence[str]) -> tuple[int, str]:
    completed = subprocess.run(list(command), capture_output=True, text=True,
                               timeout=PROBE_TIMEOUT_S)
    return completed.returncode, completed.stdout + completed.stderr


def venv_python(venv: Path, system: str) -> Path:
    if system == "Windows":
        return venv / "Scripts" / "python.exe"
    return venv / "bin" / "python"


def inspect_venv(venv: Path, python: Path, run: Runner = run_quietly) -> VenvState:
    if not venv.exists() and not venv.is_symlink():
        return VenvState(MISSING)
    if not python.exists():
        return VenvState(BROKEN, f"{python} missing")
    try:
        status, output = run([str(python), "-c", _PROBE])
    except (OSError, subprocess.SubprocessError) as error:
        return VenvState(BROKEN, f"{python}: {type(error).__name__}")
    words = output.split()
    if status != 0 or len(words) != 3 or not all(word.isdigit() for word in words[:2]):
        return VenvState(BROKEN, f"{python} does not run")
    version = (int(words[0]), int(words[1]))
    if not python_version.is_supported(version):
        return VenvState(UNSUPPORTED, f"Python {version[0]}.{version[1]}")
    if words[2] != "True":
        return VenvState(NO_PIP, "no pip")
    return VenvState(OK)


def remove_venv(venv: Path) -> None:
    """A link is unlinked, never followed: the folder it names may be someone else's."""
    if venv.is_symlink() or venv.is_file():
        venv.unlink()
    elif venv.exists():
        shutil.rmtree(venv)


def create_venv(venv: Path, base_python: str = sys.executable) -> tuple[int, str]:
    """``python -m venv`` with pip (ensurepip); its exit status and output."""
    logger.info("creating %s with %s", venv, base_python)
    command = [base_python, "-m", "venv", str(venv)]
    completed = subprocess.run(command, capture_output=True, text=True,
                               env={**os.environ, "PYTHONNOUSERSITE": "1"})
    return completed.returncode, completed.stdout + completed.stderr
