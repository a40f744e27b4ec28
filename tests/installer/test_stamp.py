"""Reinstall only when something changed: the pins, the chosen torch build, or the torch
actually installed; the stamp is written only after success (tested end to end)."""

from __future__ import annotations

from pathlib import Path

import pytest

from installer.requirements import read_requirements
from installer.stamp import InstallPlan, Stamp, plan_install, read_stamp, stamp_path

PINS = "torch==2.14.1\ntorchvision==0.29.1\n"


def plan(previous: Stamp | None, wanted: Stamp, installed: str | None = "cu126",
         expected: str | None = "cu126", own_index: bool = True,
         pins_torch: bool = True) -> InstallPlan:
    return plan_install(previous, wanted, pins_torch, installed, expected, own_index)


def test_nothing_changed_nothing_to_do() -> None:
    assert plan(Stamp("cu126", PINS), Stamp("cu126", PINS)).nothing


def test_a_first_install_with_a_pytorch_index_installs_torch_first() -> None:
    assert plan(None, Stamp("cu126", PINS), installed=None) == InstallPlan(True, False, True)


def test_a_first_install_from_the_default_index_leaves_torch_to_the_requirements() -> None:
    first = plan(None, Stamp("default", PINS), installed=None, expected="cu130", own_index=False)
    assert first == InstallPlan(False, False, True)


def test_changed_pins_reinstall_the_requirements_and_torch_from_its_index() -> None:
    changed = plan(Stamp("cu126", PINS), Stamp("cu126", PINS + "numpy==2.4.6\n"))
    assert changed == InstallPlan(True, False, True)


def test_another_build_replaces_torch_and_torchvision_only() -> None:
    switched = plan(Stamp("cu126", PINS), Stamp("cu130", PINS), installed="cu126",
                    expected="cu130")
    assert switched.torch and switched.replace_torch


def test_a_torch_swapped_by_hand_is_put_back() -> None:
    """Same stamp, but the venv's torch is not the chosen build (say, pip install torch)."""
    fixed = plan(Stamp("default", PINS), Stamp("default", PINS), installed="cpu",
                 expected="cu130", own_index=False)
    assert fixed.torch and fixed.replace_torch


def test_an_unknown_default_build_is_accepted_unless_the_choice_changed() -> None:
    same = plan(Stamp("default", PINS), Stamp("default", PINS), installed="cu128",
                expected=None, own_index=False)
    assert same.nothing
    changed = plan(Stamp("cu126", PINS), Stamp("default", PINS), installed="cu126",
                   expected=None, own_index=False)
    assert changed.replace_torch


def test_a_missing_torch_is_installed_even_with_an_unchanged_stamp() -> None:
    again = plan(Stamp("cu126", PINS), Stamp("cu126", PINS), installed=None)
    assert again.torch and not again.replace_torch


def test_requirements_without_torch_follow_the_pins_alone() -> None:
    assert plan(Stamp("", "x==1\n"), Stamp("", "x==1\n"), pins_torch=False).nothing
    assert plan(None, Stamp("", "x==1\n"), pins_torch=False) == InstallPlan(False, False, True)


def test_an_install_sh_stamp_is_read_as_pins_alone() -> None:
    old = Stamp.parse(PINS)
    assert old == Stamp("", PINS)
    assert Stamp.parse(Stamp("cu126", PINS).render()) == Stamp("cu126", PINS)


def test_the_stamp_is_per_requirements_file(tmp_path: Path) -> None:
    assert stamp_path(tmp_path, Path("requirements-dev.txt")).name == \
        ".installed-requirements-dev.txt"
    assert read_stamp(tmp_path / "absent") is None


def test_pins_come_from_the_file_and_the_files_it_includes(tmp_path: Path) -> None:
    (tmp_path / "base.txt").write_text("torch==2.14.1  # pinned\nTorchVision==0.29.1\n"
                                       "numpy>=2\n", encoding="utf-8")
    (tmp_path / "dev.txt").write_text("-r base.txt\npytest==9.2.0\n", encoding="utf-8")
    requirements = read_requirements(tmp_path / "dev.txt")
    assert requirements.pins == {"pytest": "9.2.0", "torch": "2.14.1", "torchvision": "0.29.1"}
    assert requirements.pins_torch
    assert "numpy>=2" in requirements.text and "pytest==9.2.0" in requirements.text


@pytest.mark.parametrize("name", ["requirements.txt", "requirements-dev.txt"])
def test_the_real_requirements_pin_the_torch_pair(name: str) -> None:
    root = Path(__file__).resolve().parents[2]
    pins = read_requirements(root / name).pins
    assert pins["torch"] == "2.14.1" and pins["torchvision"] == "0.29.1"
