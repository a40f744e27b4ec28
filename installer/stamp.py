"""What was installed last time, and what to (re)install now. The stamp is written only after
every step succeeded, so an interrupted or failed install is redone by the next run; pip's
download cache keeps what was already fetched."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

_TORCH_LINE = "torch-build: "


@dataclass(frozen=True)
class Stamp:
    torch_build: str  # the chosen build ("cu126", "default", ...); "" when torch is not pinned
    requirements: str  # the requirements text (Requirements.text)

    def render(self) -> str:
        return f"{_TORCH_LINE}{self.torch_build}\n{self.requirements}"

    @staticmethod
    def parse(text: str) -> Stamp:
        first, _, rest = text.partition("\n")
        if not first.startswith(_TORCH_LINE):
            # A stamp from scripts/install.sh (the requirements alone): pins are compared anew.
            return Stamp("", text)
        return Stamp(first[len(_TORCH_LINE):], rest)


@dataclass(frozen=True)
class InstallPlan:
    torch: bool  # install torch and torchvision (from the chosen index) in a step of their own
    replace_torch: bool  # another build is installed: reinstall those two, not their deps
    requirements: bool  # pip install -r

    @property
    def nothing(self) -> bool:
        return not (self.torch or self.requirements)


def stamp_path(venv: Path, requirements: Path) -> Path:
    return venv / f".installed-{requirements.name}"


def read_stamp(path: Path) -> Stamp | None:
    try:
        return Stamp.parse(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError):
        return None


def plan_install(previous: Stamp | None, wanted: Stamp, pins_torch: bool,
                 installed_build: str | None, expected_build: str | None,
                 torch_from_own_index: bool) -> InstallPlan:
    """``installed_build``: what the venv's torch is ("cu130", "cpu"; None when absent);
    ``expected_build``: what the choice gives (None when unknown: any is accepted)."""
    pins_changed = previous is None or previous.requirements != wanted.requirements
    if not pins_torch:
        return InstallPlan(False, False, pins_changed)
    build_changed = previous is not None and previous.torch_build != wanted.torch_build
    if expected_build is None:
        wrong_build = build_changed
    else:
        wrong_build = installed_build != expected_build
    replace = installed_build is not None and wrong_build
    missing = installed_build is None
    # From the default index, requirements.txt installs torch itself unless one must go.
    torch_step = replace or (torch_from_own_index and (pins_changed or missing))
    return InstallPlan(torch_step, replace, pins_changed or torch_step or missing)
