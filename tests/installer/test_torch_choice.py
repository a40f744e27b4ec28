"""The torch decision table: platform x GPU x driver x override -> build and index (None: the
platform's default index, i.e. the user's pip configuration)."""

from __future__ import annotations

from pathlib import Path

import pytest

from installer.requirements import read_requirements
from installer.torch_choice import (
    CUDA_VARIANTS,
    PYPI_LINUX_X86_64_BUILD,
    TORCH_SERIES,
    Machine,
    choose_torch,
    expected_build,
    is_valid_build,
    parse_driver,
)

ROOT = Path(__file__).resolve().parents[2]
PT = "https://download.pytorch.org/whl"


def linux(driver: str | None = None, amd: bool = False, arch: str = "x86_64") -> Machine:
    return Machine("Linux", arch, parse_driver(driver) if driver else None, amd)


def windows(driver: str | None = None) -> Machine:
    return Machine("Windows", "x86_64", parse_driver(driver) if driver else None, False)


MAC_ARM = Machine("Darwin", "arm64", None, False)
MAC_INTEL = Machine("Darwin", "x86_64", None, False)

# (machine, override, expected build, expected index)
TABLE = [
    # Linux without a GPU: PyPI's wheel as is (it runs on the CPU); CI installs this way.
    (linux(), None, "default", None),
    # Linux + NVIDIA: PyPI's CUDA 13.0 wheel when the driver runs it (580.65.06 and newer).
    (linux("595.71.05"), None, "default", None),
    (linux("580.65.06"), None, "default", None),
    (linux("580.82.07"), None, "default", None),
    # ... below that, the newest PyTorch-index build it runs: 12.6 from 560.28.03.
    (linux("580.65.05"), None, "cu126", f"{PT}/cu126"),
    (linux("570.124.06"), None, "cu126", f"{PT}/cu126"),
    (linux("560.28.03"), None, "cu126", f"{PT}/cu126"),
    # Too old for any: the default wheel (CPU until the driver is updated).
    (linux("560.28.02"), None, "default", None),
    (linux("535.104.05"), None, "default", None),
    # Linux arm64 + NVIDIA: PyPI's wheel is not known to be CUDA there: the PyTorch index.
    (linux("595.45.04", arch="arm64"), None, "cu132", f"{PT}/cu132"),
    (linux("590.48.01", arch="arm64"), None, "cu130", f"{PT}/cu130"),
    # Linux + AMD: ROCm from PyTorch's index; NVIDIA wins when both are present.
    (linux(amd=True), None, "rocm7.2", f"{PT}/rocm7.2"),
    (linux("580.65.06", amd=True), None, "default", None),
    # Windows: PyPI's wheel is the CPU build, so NVIDIA always needs PyTorch's index.
    (windows(), None, "default", None),
    (windows("596.36"), None, "cu132", f"{PT}/cu132"),
    (windows("595.00"), None, "cu132", f"{PT}/cu132"),
    (windows("594.99"), None, "cu130", f"{PT}/cu130"),
    (windows("580.88"), None, "cu130", f"{PT}/cu130"),
    (windows("580.87"), None, "cu126", f"{PT}/cu126"),
    (windows("572.16"), None, "cu126", f"{PT}/cu126"),
    (windows("560.76"), None, "cu126", f"{PT}/cu126"),
    (windows("560.75"), None, "default", None),
    (windows("537.13"), None, "default", None),
    # macOS: the default wheel (MPS on Apple Silicon, CPU on Intel).
    (MAC_ARM, None, "default", None),
    (MAC_INTEL, None, "default", None),
    # Overrides (--torch or HUAJING_TORCH) win over the hardware.
    (linux("595.71.05"), "cu132", "cu132", f"{PT}/cu132"),
    (linux("595.71.05"), "cpu", "cpu", f"{PT}/cpu"),
    (linux(), "cu126", "cu126", f"{PT}/cu126"),
    (linux("570.124.06"), "default", "default", None),
    (linux(amd=True), "rocm7.1", "rocm7.1", f"{PT}/rocm7.1"),
    (windows("596.36"), "cpu", "default", None),
    (windows(), "cu130", "cu130", f"{PT}/cu130"),
    (MAC_ARM, "cpu", "default", None),
    (linux("570.124.06"), "auto", "cu126", f"{PT}/cu126"),
]


@pytest.mark.parametrize(("machine", "override", "build", "index"), TABLE)
def test_the_decision_table(machine: Machine, override: str | None, build: str,
                            index: str | None) -> None:
    choice = choose_torch(machine, override)
    assert (choice.build, choice.index_url) == (build, index)


def test_a_torch_index_mirror_replaces_download_pytorch_org() -> None:
    mirror = "https://mirror.nju.edu.cn/pytorch/whl/"
    choice = choose_torch(windows("572.16"), None, mirror)
    assert choice.index_url == "https://mirror.nju.edu.cn/pytorch/whl/cu126"
    assert choose_torch(linux(), None, mirror).index_url is None  # PyPI stays PyPI


def test_a_driver_too_old_is_said_so() -> None:
    assert choose_torch(linux("535.104.05")).driver_too_old
    assert choose_torch(windows("537.13")).driver_too_old
    assert not choose_torch(linux("570.124.06")).driver_too_old
    assert not choose_torch(linux()).driver_too_old


def test_the_pinned_versions_carry_the_local_build_only_from_a_pytorch_index() -> None:
    assert choose_torch(windows("572.16")).local_version == "+cu126"
    assert choose_torch(linux("580.65.06")).local_version == ""


@pytest.mark.parametrize(("machine", "override", "expected"), [
    (linux(), None, PYPI_LINUX_X86_64_BUILD),
    (linux("570.124.06"), None, "cu126"),
    (windows(), None, "cpu"),
    (MAC_ARM, None, "cpu"),
    (linux(amd=True), None, "rocm7.2"),
    (linux(arch="arm64"), None, None),
    (linux("595.71.05"), "cpu", "cpu"),
])
def test_the_build_the_installed_torch_should_report(machine: Machine, override: str | None,
                                                     expected: str | None) -> None:
    assert expected_build(choose_torch(machine, override), machine) == expected


def test_driver_versions_are_read_as_numbers() -> None:
    assert parse_driver("570.124.06") == (570, 124, 6)
    assert parse_driver("572.16") == (572, 16)
    assert parse_driver("bogus") == (0,)


@pytest.mark.parametrize("value", ["auto", "cpu", "default", "cu126", "cu132", "rocm7.2"])
def test_valid_builds(value: str) -> None:
    assert is_valid_build(value)


@pytest.mark.parametrize("value", ["cuda", "cu12.6", "rocm", "gpu", "", "cu126; rm -rf"])
def test_invalid_builds(value: str) -> None:
    assert not is_valid_build(value)


def test_the_table_describes_the_pinned_torch() -> None:
    """When requirements.txt moves torch to another series, the variants and their drivers
    must be read again from PyTorch's support matrix and NVIDIA's release notes."""
    pins = read_requirements(ROOT / "requirements.txt").pins
    assert pins["torch"].startswith(TORCH_SERIES + ".")
    assert PYPI_LINUX_X86_64_BUILD in {variant.build for variant in CUDA_VARIANTS}
    newest_first = [variant.min_driver_linux for variant in CUDA_VARIANTS]
    assert newest_first == sorted(newest_first, reverse=True)
