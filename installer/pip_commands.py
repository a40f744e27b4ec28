"""The pip command lines, always through the venv's python (``python -m pip``), never a
system pip. Index options appear only when the user asked for them: otherwise pip's own
configuration (``pip config``, PIP_INDEX_URL, a mirror set there) decides."""

from __future__ import annotations

from pathlib import Path

from installer.requirements import Requirements
from installer.torch_choice import TorchChoice

# pip 25.1 added --resume-retries (25.2 turned it on by default, with 5): a dropped
# connection in the middle of a 2 GB torch wheel resumes instead of starting over.
RESUME_RETRIES_SINCE = (25, 1)
RESUME_RETRIES = 10


def pip(python: Path) -> list[str]:
    return [str(python), "-m", "pip"]


def index_options(pip_index: str | None) -> list[str]:
    return ["--index-url", pip_index] if pip_index else []


def download_options(pip_version: tuple[int, ...], log_file: Path) -> list[str]:
    """``--log`` keeps pip's full output for diagnosing a failure while its progress bars go
    to the terminal untouched."""
    options = ["--log", str(log_file)]
    if pip_version[:2] >= RESUME_RETRIES_SINCE:
        options += ["--resume-retries", str(RESUME_RETRIES)]
    return options


def upgrade_pip(python: Path, pip_index: str | None) -> list[str]:
    return [*pip(python), "install", "--upgrade", "pip", *index_options(pip_index)]


def install_torch(python: Path, requirements: Requirements, choice: TorchChoice,
                  pip_index: str | None, replace: bool, options: list[str]) -> list[str]:
    """torch and torchvision alone, at the pinned versions of the chosen build. PyTorch's index
    is added beside the user's (``--extra-index-url``): the ``+cu126`` pins can only come from
    it, and their dependencies still come from the user's index or mirror."""
    local = choice.local_version
    wanted = [f"torch=={requirements.pins['torch']}{local}",
              f"torchvision=={requirements.pins['torchvision']}{local}"]
    command = [*pip(python), "install"]
    if replace:
        # Only the two packages change; the requirements step after it adds any dependency
        # the new build needs.
        command += ["--force-reinstall", "--no-deps"]
    command += index_options(pip_index)
    if choice.index_url:
        command += ["--extra-index-url", choice.index_url]
    return [*command, *options, *wanted]


def install_requirements(python: Path, requirements: Path, pip_index: str | None,
                         options: list[str]) -> list[str]:
    return [*pip(python), "install", *index_options(pip_index), *options, "-r",
            str(requirements)]


def parse_pip_version(output: str) -> tuple[int, ...]:
    """ "pip 26.3 from /..." -> (26, 3); (0,) when unreadable."""
    words = output.split()
    if len(words) < 2 or words[0] != "pip":
        return (0,)
    parts = []
    for part in words[1].split(".")[:3]:
        digits = "".join(c for c in part if c.isdigit())
        parts.append(int(digits) if digits else 0)
    return tuple(parts)
