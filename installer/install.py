"""Makes the venv hold what a requirements file pins, with the right torch build: the steps
``launch.py run`` and ``launch.py test`` take before they start anything."""

from __future__ import annotations

import logging
import platform
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from installer import messages, pip_commands, pip_errors, venv_setup
from installer.output import say
from installer.requirements import Requirements, read_requirements
from installer.stamp import InstallPlan, Stamp, plan_install, read_stamp, stamp_path
from installer.torch_choice import (
    CUDA_VARIANTS,
    TORCH_SERIES,
    Machine,
    TorchChoice,
    choose_torch,
    detect_machine,
    expected_build,
)

logger = logging.getLogger(__name__)

# Printed by the venv's python: the installed torch's build ("cu130", "rocm7.2", "cpu"), from
# its metadata and torch/version.py, without importing torch (seconds saved on every start).
_INSTALLED_BUILD = r"""
import importlib.metadata as metadata, re
try:
    dist = metadata.distribution("torch")
except metadata.PackageNotFoundError:
    raise SystemExit(print("none"))
local = dist.version.partition("+")[2]
if local:
    raise SystemExit(print(local))
try:
    text = open(dist.locate_file("torch/version.py"), encoding="utf-8").read()
except OSError:
    raise SystemExit(print("unknown"))
def value(name):
    found = re.search(r"^%s\b[^=\n]*=\s*'([^']*)'" % name, text, re.M)
    return found.group(1) if found else None
cuda, hip = value("cuda"), value("hip")
if cuda:
    print("cu" + cuda.replace(".", ""))
elif hip:
    print("rocm" + ".".join(hip.split(".")[:2]))
else:
    print("cpu")
"""

# (command) -> exit status; pip's output goes straight to the terminal (its progress bars).
PipRunner = Callable[[Sequence[str]], int]


class InstallFailed(Exception):
    """The user has been told why; the launcher stops with this exit status."""

    def __init__(self, status: int) -> None:
        super().__init__(status)
        self.status = status


@dataclass(frozen=True)
class InstallRequest:
    requirements: Path
    venv: Path
    torch_override: str | None  # --torch or HUAJING_TORCH
    pip_index: str | None  # --pip-index or HUAJING_PIP_INDEX; None: pip's own configuration
    torch_index: str | None  # --torch-index or HUAJING_TORCH_INDEX; None: download.pytorch.org
    lang: str


class Steps:
    """The "[2/4]" in front of each step line."""

    def __init__(self, total: int, lang: str) -> None:
        self.number, self.total, self.lang = 0, total, lang

    def say(self, what: str) -> None:
        self.number += 1
        say(messages.text("step", self.lang, number=self.number, total=self.total, what=what))


def run_pip(command: Sequence[str]) -> int:
    logger.info("running %s", " ".join(command))
    return subprocess.call(list(command))


def prepare_venv(venv: Path, system: str, lang: str) -> Path:
    python = venv_setup.venv_python(venv, system)
    state = venv_setup.inspect_venv(venv, python)
    if state.health == venv_setup.OK:
        return python
    if state.health != venv_setup.MISSING:
        say(messages.text("venv-repair", lang, venv=venv, why=state.detail))
        venv_setup.remove_venv(venv)
    say(messages.text("venv-create", lang, venv=venv, python=platform.python_version()))
    status, output = venv_setup.create_venv(venv)
    if status != 0:
        say(messages.text("venv-failed", lang, detail=output.strip()[-2000:]), error=True)
        if "ensurepip" in output:
            version = ".".join(platform.python_version_tuple()[:2])
            say(messages.text("venv-no-ensurepip", lang, version=version), error=True)
        raise InstallFailed(1)
    return python


def installed_build(python: Path) -> str | None:
    """The build of the venv's torch, None when torch is not installed."""
    status, output = venv_setup.run_quietly([str(python), "-c", _INSTALLED_BUILD])
    found = output.strip().splitlines()[-1] if output.strip() else "unknown"
    if status != 0 or found == "none":
        return None if found == "none" else "unknown"
    return found


def pip_version(python: Path) -> tuple[int, ...]:
    status, output = venv_setup.run_quietly([*pip_commands.pip(python), "--version"])
    return pip_commands.parse_pip_version(output) if status == 0 else (0,)


def _why(choice: TorchChoice, machine: Machine, lang: str) -> str:
    driver = ".".join(str(part) for part in machine.nvidia_driver or ())
    return messages.text(f"why-{choice.reason}", lang, driver=driver, index=choice.index_url)


def choose(requirements: Requirements, request: InstallRequest, machine: Machine,
           lang: str) -> TorchChoice:
    pinned = requirements.pins["torch"]
    if not pinned.startswith(TORCH_SERIES + "."):
        say(messages.text("table-stale", lang, pinned=pinned, series=TORCH_SERIES), error=True)
    choice = choose_torch(machine, request.torch_override, request.torch_index)
    if choice.driver_too_old:
        oldest = CUDA_VARIANTS[-1]
        minimum = oldest.min_driver_windows if machine.system == "Windows" else \
            oldest.min_driver_linux
        say(messages.text("driver-too-old", lang,
                          driver=".".join(str(p) for p in machine.nvidia_driver or ()),
                          minimum=".".join(str(p) for p in minimum)), error=True)
    return choice


def _fail(status: int, log_file: Path, lang: str) -> InstallFailed:
    try:
        log = log_file.read_text(encoding="utf-8", errors="replace")
    except OSError:
        log = ""
    failure = pip_errors.diagnose(log)
    say(messages.text("failed", lang, code=status, what=messages.failure_advice(failure, lang)),
        error=True)
    if failure.package:
        say(messages.text("failed-package", lang, package=failure.package), error=True)
    say(messages.text("failed-log", lang, log=log_file), error=True)
    say(messages.text("failed-resume", lang), error=True)
    return InstallFailed(status)


def _run_logged(command: list[str], log_file: Path, run: PipRunner, lang: str) -> None:
    log_file.unlink(missing_ok=True)  # pip appends to its log: keep this run's only
    status = run(command)
    if status != 0:
        raise _fail(status, log_file, lang)


def carry_out(plan: InstallPlan, python: Path, requirements: Requirements,
              choice: TorchChoice | None, request: InstallRequest, steps: Steps,
              installed: str | None, run: PipRunner = run_pip) -> None:
    lang = request.lang
    if run(pip_commands.upgrade_pip(python, request.pip_index)) != 0:
        say(messages.text("pip-upgrade-failed", lang), error=True)
    log_file = request.venv / "pip-log.txt"
    options = pip_commands.download_options(pip_version(python), log_file)
    if plan.torch and choice is not None:
        build = messages.build_label(choice, lang)
        if plan.replace_torch:
            steps.say(messages.text("torch-replace", lang, installed=installed, build=build))
        else:
            steps.say(messages.text("torch-step", lang, version=requirements.pins["torch"],
                                    build=build))
        _run_logged(pip_commands.install_torch(python, requirements, choice, request.pip_index,
                                               plan.replace_torch, options), log_file, run, lang)
    if plan.requirements:
        steps.say(messages.text("requirements-step", lang, file=requirements.path.name))
        _run_logged(pip_commands.install_requirements(python, requirements.path,
                                                      request.pip_index, options),
                    log_file, run, lang)
    log_file.unlink(missing_ok=True)


def ensure_installed(request: InstallRequest, machine: Machine | None = None,
                     run: PipRunner = run_pip) -> Path:
    """The venv's python, once everything ``request.requirements`` pins is installed."""
    lang = request.lang
    requirements = read_requirements(request.requirements)
    machine = machine or detect_machine()
    python = prepare_venv(request.venv, machine.system, lang)
    choice = None
    installed = None
    expected = None
    if requirements.pins_torch:
        choice = choose(requirements, request, machine, lang)
        installed = installed_build(python)
        expected = expected_build(choice, machine)
    wanted = Stamp(choice.build if choice else "", requirements.text)
    stamp_file = stamp_path(request.venv, request.requirements)
    plan = plan_install(read_stamp(stamp_file), wanted, requirements.pins_torch, installed,
                        expected, bool(choice and choice.index_url))
    steps = Steps(bool(choice) + plan.torch + plan.requirements, lang)
    if choice is not None:
        steps.say(messages.text("torch-choice", lang, build=messages.build_label(choice, lang),
                                why=_why(choice, machine, lang)))
    if plan.nothing:
        say(messages.text("up-to-date", lang, file=request.requirements.name))
        return python
    carry_out(plan, python, requirements, choice, request, steps, installed, run)
    # Only now: an interrupted or failed install is redone by the next run.
    stamp_file.write_text(wanted.render(), encoding="utf-8")
    return python
