"""The requirements file as the launcher needs it: its text with the files it includes (what
the stamp records) and its exact pins (torch and torchvision's versions come from here, never
from a second copy in the code)."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

_INCLUDE = re.compile(r"^\s*(?:-r|--requirement)[\s=]+(\S+)")
_PIN = re.compile(r"^\s*([A-Za-z0-9][A-Za-z0-9._-]*)\s*==\s*([^\s;#]+)")


@dataclass(frozen=True)
class Requirements:
    path: Path
    text: str  # this file and those it includes, in reading order
    pins: dict[str, str]  # normalised name ("torch") -> exact version ("2.14.1")

    @property
    def pins_torch(self) -> bool:
        return "torch" in self.pins and "torchvision" in self.pins


def normalise(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def _read(path: Path, seen: set[Path]) -> list[tuple[Path, str]]:
    resolved = path.resolve()
    if resolved in seen:
        return []
    seen.add(resolved)
    text = path.read_text(encoding="utf-8")
    files = [(path, text)]
    for line in text.splitlines():
        included = _INCLUDE.match(line)
        if included:
            files += _read(path.parent / included.group(1), seen)
    return files


def read_requirements(path: Path) -> Requirements:
    files = _read(path, set())
    pins: dict[str, str] = {}
    for _, text in files:
        for line in text.splitlines():
            pin = _PIN.match(line)
            if pin:
                pins.setdefault(normalise(pin.group(1)), pin.group(2))
    text = "".join(f"# {file.name}\n{content}" for file, content in files)
    return Requirements(path, text, pins)
