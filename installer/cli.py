"""``launch.py``'s commands: ``run`` (install requirements.txt, start app.py), ``test``
(install requirements-dev.txt and the system packages, the quality gate, pytest),
``check`` (the quality gate alone) and ``install`` (the install alone). The launcher's own
options are taken out of the arguments wherever they stand; everything else goes to app.py
or pytest unchanged."""

from __future__ import annotations

import logging
import os
import platform
import subprocess
import sys
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from installer import messages
from installer.install import InstallFailed, InstallRequest, ensure_installed
from installer.output import say
from installer.torch_choice import is_valid_build

ROOT = Path(__file__).resolve().parent.parent
COMMANDS = {"run": "requirements.txt", "test": "requirements-dev.txt",
            "check": "requirements-dev.txt", "install": "requirements.txt"}
# Option -> (environment variable, field); each takes a value.
OPTIONS = {
    "--torch": ("HUAJING_TORCH", "torch"),
    "--pip-index": ("HUAJING_PIP_INDEX", "pip_index"),
    "--torch-index": ("HUAJING_TORCH_INDEX", "torch_index"),
    "--requirements": (None, "requirements"),
    "--venv": (None, "venv"),
}
USAGE = """\
usage: python launch.py run   [launcher options] [app.py arguments...]
       python launch.py test  [launcher options] [pytest arguments...]
       python launch.py check [launcher options]
       python launch.py install [launcher options]

launcher options (also read from the environment variable named):
  --torch BUILD        auto (default), cpu, default, cuXXX (cu126, cu130, cu132), rocmX.Y
                       [HUAJING_TORCH]
  --pip-index URL      a PyPI mirror for every install; default: pip's own configuration
                       [HUAJING_PIP_INDEX]
  --torch-index URL    a mirror of https://download.pytorch.org/whl [HUAJING_TORCH_INDEX]
  --lang zh|en         the launcher's language (run passes it on to app.py too)
  --requirements FILE  install this file instead (run: requirements.txt, test/check:
                       requirements-dev.txt)
  --venv DIR           the virtual environment (default: .venv in the checkout)
"""


@dataclass
class LauncherArgs:
    command: str
    passthrough: list[str] = field(default_factory=list)
    torch: str | None = None
    pip_index: str | None = None
    torch_index: str | None = None
    requirements: str | None = None
    venv: str | None = None
    lang: str = "zh"


class UsageError(Exception):
    pass


def _take_option(args: LauncherArgs, argument: str, rest: list[str]) -> bool:
    """Consumes ``--opt value`` or ``--opt=value`` when it is one of the launcher's options."""
    name, equals, value = argument.partition("=")
    if name not in OPTIONS:
        return False
    if not equals:
        if not rest:
            raise UsageError(name)
        value = rest.pop(0)
    setattr(args, OPTIONS[name][1], value)
    return True


def parse_args(argv: Sequence[str], environment: dict[str, str]) -> LauncherArgs:
    if not argv or argv[0] not in COMMANDS:
        raise UsageError("")
    args = LauncherArgs(argv[0])
    for variable, name in OPTIONS.values():
        if variable and environment.get(variable):
            setattr(args, name, environment[variable])
    rest = list(argv[1:])
    while rest:
        argument = rest.pop(0)
        if argument == "--" and args.command != "run":
            args.passthrough += rest
            break
        if _take_option(args, argument, rest):
            continue
        name, equals, value = argument.partition("=")
        if name == "--lang":
            args.lang = value if equals else (rest[0] if rest else "zh")
            if args.command == "run":  # app.py has the same option
                args.passthrough.append(argument)
            elif not equals and rest:
                rest.pop(0)
            continue
        args.passthrough.append(argument)
    return args


def install_request(args: LauncherArgs) -> InstallRequest:
    requirements = Path(args.requirements) if args.requirements else \
        ROOT / COMMANDS[args.command]
    return InstallRequest(requirements=requirements,
                          venv=Path(args.venv) if args.venv else ROOT / ".venv",
                          torch_override=args.torch, pip_index=args.pip_index,
                          torch_index=args.torch_index, lang=args.lang)


def _replace_process(command: list[str], environment: dict[str, str]) -> int:
    """The app or pytest takes over this process (Ctrl-C and its exit status go straight to
    it); Windows has no real exec, so there it runs as a child."""
    if sys.platform == "win32":
        return subprocess.call(command, env=environment, cwd=ROOT)
    os.chdir(ROOT)
    os.execve(command[0], command, environment)


def _system_packages(lang: str) -> int:
    say(messages.text("system-packages", lang))
    status = subprocess.call(["bash", str(ROOT / "scripts" / "install_system_packages.sh")])
    if status != 0:
        say(messages.text("system-packages-failed", lang), error=True)
    return status


def quality_gate(python: Path, lang: str) -> int:
    """ruff (lint) then mypy (types), both configured in pyproject.toml; stops at the first
    that fails."""
    for tool in (["ruff", "check", "."], ["mypy"]):
        say(messages.text("quality-gate", lang, tool=" ".join(tool)))
        status = subprocess.call([str(python), "-m", *tool], cwd=ROOT)
        if status != 0:
            return status
    return 0


def _execute(args: LauncherArgs) -> int:
    if args.torch and not is_valid_build(args.torch):
        say(messages.text("unknown-build", args.lang, value=args.torch), error=True)
        return 2
    request = install_request(args)
    if not request.requirements.is_file():
        say(messages.text("no-requirements", args.lang, file=request.requirements), error=True)
        return 2
    if args.command == "test" and platform.system() == "Linux":
        status = _system_packages(args.lang)
        if status != 0:
            return status
    python = ensure_installed(request)
    if args.command == "install":
        return 0
    if args.command == "run":
        return _replace_process([str(python), str(ROOT / "app.py"), *args.passthrough],
                                dict(os.environ))
    status = quality_gate(python, args.lang)
    if status != 0 or args.command == "check":
        return status
    environment = {**os.environ, "HF_HUB_OFFLINE": "1"}
    return _replace_process([str(python), "-m", "pytest", *args.passthrough], environment)


def main(argv: Sequence[str]) -> int:
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    try:
        args = parse_args(argv, dict(os.environ))
    except UsageError as error:
        if error.args[0]:
            say(messages.text("missing-value", "zh", option=error.args[0]), error=True)
        say(USAGE, error=True)
        return 2
    try:
        return _execute(args)
    except InstallFailed as failed:
        return failed.status
    except KeyboardInterrupt:
        return 130
