"""The venv repair decision, over faked venvs: a python that is missing, does not run, is
outside the supported range or has no pip means a new venv; a link is never followed."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import pytest

from installer import venv_setup
from installer.venv_setup import VenvState, inspect_venv


def answering(status: int, output: str) -> venv_setup.Runner:
    def run(command: Sequence[str]) -> tuple[int, str]:
        return status, output
    return run


def failing(command: Sequence[str]) -> tuple[int, str]:
    raise OSError("Exec format error")


@pytest.fixture
def venv(tmp_path: Path) -> tuple[Path, Path]:
    folder = tmp_path / ".venv"
    python = venv_setup.venv_python(folder, "Linux")
    python.parent.mkdir(parents=True)
    python.write_text("")
    return folder, python


def test_no_venv_is_created(tmp_path: Path) -> None:
    folder = tmp_path / ".venv"
    assert inspect_venv(folder, folder / "bin" / "python").health == venv_setup.MISSING


def test_a_venv_without_its_python_is_broken(tmp_path: Path) -> None:
    folder = tmp_path / ".venv"
    folder.mkdir()
    state = inspect_venv(folder, folder / "bin" / "python", answering(0, "3 11 True"))
    assert state.health == venv_setup.BROKEN


def test_a_python_that_does_not_start_is_broken(venv: tuple[Path, Path]) -> None:
    assert inspect_venv(*venv, failing).health == venv_setup.BROKEN


def test_a_python_that_fails_is_broken(venv: tuple[Path, Path]) -> None:
    """A venv made by a Python since removed: its python is a dangling launcher that fails."""
    state = inspect_venv(*venv, answering(1, "No Python at 'C:\\Python311\\python.exe'"))
    assert state.health == venv_setup.BROKEN


@pytest.mark.parametrize(("output", "health"), [
    ("3 11 True", venv_setup.OK),
    ("3 13 True", venv_setup.OK),
    ("3 10 True", venv_setup.UNSUPPORTED),
    ("3 14 True", venv_setup.UNSUPPORTED),
    ("3 12 False", venv_setup.NO_PIP),
    ("garbage", venv_setup.BROKEN),
])
def test_what_the_venvs_python_reports(venv: tuple[Path, Path], output: str,
                                       health: str) -> None:
    assert inspect_venv(*venv, answering(0, output)).health == health


def test_windows_venvs_keep_python_in_scripts() -> None:
    assert venv_setup.venv_python(Path("v"), "Windows") == Path("v/Scripts/python.exe")
    assert venv_setup.venv_python(Path("v"), "Darwin") == Path("v/bin/python")


def test_removing_a_linked_venv_leaves_its_target(tmp_path: Path) -> None:
    target = tmp_path / "shared-venv"
    (target / "bin").mkdir(parents=True)
    link = tmp_path / ".venv"
    link.symlink_to(target)
    venv_setup.remove_venv(link)
    assert not link.exists() and not link.is_symlink()
    assert (target / "bin").is_dir()


def test_a_dangling_link_counts_as_a_broken_venv(tmp_path: Path) -> None:
    link = tmp_path / ".venv"
    link.symlink_to(tmp_path / "gone")
    state = inspect_venv(link, link / "bin" / "python")
    assert state == VenvState(venv_setup.BROKEN, f"{link / 'bin' / 'python'} missing")
