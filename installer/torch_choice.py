"""Which torch build to install, and from where, for this machine: a pure decision over the
probed hardware (``Machine``) and the user's override, so that every row of the decision table
is a unit test.

The data below belongs to the torch series pinned in requirements.txt; ``TORCH_SERIES`` names
it and a test fails when the pin moves to another series, so that the table is read again.
"""

from __future__ import annotations

import platform
import re
from dataclasses import dataclass

from installer import probes

TORCH_SERIES = "2.14"
PYTORCH_INDEX = "https://download.pytorch.org/whl"
DEFAULT = "default"  # the build the platform's default index (pip's config) serves
CPU = "cpu"
AUTO = "auto"


@dataclass(frozen=True)
class CudaVariant:
    build: str  # the wheel's local version and the index folder: "cu126"
    cuda: str
    min_driver_linux: tuple[int, ...]
    min_driver_windows: tuple[int, ...]


# The CUDA builds PyTorch publishes for 2.14 (its RELEASE.md support matrix: CUDA 12.6, 13.0,
# 13.2; pytorch/pytorch#194367), newest first. The drivers are the "Toolkit Driver Version"
# of each CUDA minor's GA release in NVIDIA's CUDA Toolkit release notes (Table 3, "CUDA
# Toolkit and Corresponding Driver Versions"); later updates of the same minor run on it
# through minor-version compatibility. NVIDIA lists no Windows driver from CUDA 13.1 on (the
# driver is no longer bundled): 580.88 is the one CUDA 13.0 GA shipped with on Windows, and
# for 13.2 we ask for the same R595 branch the Linux row names.
CUDA_VARIANTS = (
    CudaVariant("cu132", "13.2", (595, 45, 4), (595, 0)),
    CudaVariant("cu130", "13.0", (580, 65, 6), (580, 88)),
    CudaVariant("cu126", "12.6", (560, 28, 3), (560, 76)),
)
# PyPI's torch 2.14 wheels for Linux x86_64 are this CUDA build (torch.version.cuda "13.0",
# nvidia-*-cu13 dependencies): there, a driver new enough for it needs no other index.
PYPI_LINUX_X86_64_BUILD = "cu130"
# The ROCm build PyTorch publishes for 2.14 (download.pytorch.org/whl/rocm7.2).
ROCM_BUILD = "rocm7.2"

_BUILD_PATTERN = re.compile(r"^(auto|default|cpu|cu\d{3}|rocm\d+(\.\d+)*)$")


@dataclass(frozen=True)
class Machine:
    system: str  # platform.system(): "Linux", "Windows", "Darwin"
    arch: str  # "x86_64" or "arm64"
    nvidia_driver: tuple[int, ...] | None  # None: no NVIDIA GPU (or no driver answering)
    amd_gpu: bool


@dataclass(frozen=True)
class TorchChoice:
    build: str  # "cu126", "rocm7.2", "cpu" or "default"
    index_url: str | None  # None: the user's own index (pip's configuration or --pip-index)
    reason: str  # why, as a message key: "override", "nvidia", "nvidia-pypi", "amd", ...
    cuda: str | None = None
    driver_too_old: bool = False

    @property
    def local_version(self) -> str:
        """The ``+cu126`` a PyTorch index adds to the pinned version; nothing on the default."""
        return f"+{self.build}" if self.index_url else ""


def parse_driver(version: str) -> tuple[int, ...]:
    """ "570.124.06" -> (570, 124, 6); unreadable parts count as 0, so such a driver is old."""
    parts = []
    for part in version.strip().split(".")[:3]:
        parts.append(int(part) if part.isdigit() else 0)
    return tuple(parts)


def _at_least(driver: tuple[int, ...], minimum: tuple[int, ...]) -> bool:
    # Padded: (580, 88) must not compare below (580, 88, 0).
    def padded(version: tuple[int, ...]) -> tuple[int, ...]:
        return (version + (0, 0, 0))[:3]
    return padded(driver) >= padded(minimum)


def is_valid_build(value: str) -> bool:
    return bool(_BUILD_PATTERN.match(value))


def detect_machine() -> Machine:
    system = platform.system()
    arch = {"amd64": "x86_64", "aarch64": "arm64"}.get(platform.machine().lower(),
                                                       platform.machine().lower())
    driver = None
    if system in ("Linux", "Windows"):
        gpus = probes.nvidia_gpus()
        if gpus:
            driver = parse_driver(gpus[0].driver_version)
    amd = system == "Linux" and probes.has_amd_gpu()
    return Machine(system, arch, driver, amd)


def _index(base: str, build: str) -> str:
    return f"{base.rstrip('/')}/{build}"


def _forced(build: str, machine: Machine, base: str) -> TorchChoice:
    if build == DEFAULT:
        return TorchChoice(DEFAULT, None, "override")
    if build == CPU and machine.system != "Linux":
        # Windows' and macOS' default wheels are the CPU (and MPS) builds already.
        return TorchChoice(DEFAULT, None, "override")
    return TorchChoice(build, _index(base, build), "override")


def _for_nvidia(driver: tuple[int, ...], machine: Machine, base: str) -> TorchChoice:
    linux = machine.system == "Linux"
    if linux and machine.arch == "x86_64":
        pypi = next(v for v in CUDA_VARIANTS if v.build == PYPI_LINUX_X86_64_BUILD)
        if _at_least(driver, pypi.min_driver_linux):
            return TorchChoice(DEFAULT, None, "nvidia-pypi", cuda=pypi.cuda)
    for variant in CUDA_VARIANTS:
        minimum = variant.min_driver_linux if linux else variant.min_driver_windows
        if _at_least(driver, minimum):
            return TorchChoice(variant.build, _index(base, variant.build), "nvidia",
                               cuda=variant.cuda)
    # The default wheel runs on the CPU: Windows' is the CPU build, and Linux's CUDA build
    # falls back to the CPU until the driver is updated, then uses the GPU, unreinstalled.
    return TorchChoice(DEFAULT, None, "nvidia-driver-too-old", driver_too_old=True)


def choose_torch(machine: Machine, override: str | None = None,
                 torch_index: str | None = None) -> TorchChoice:
    """The build for ``machine``; ``override`` (``--torch`` or HUAJING_TORCH) wins unless it
    is ``auto``. ``torch_index`` replaces download.pytorch.org/whl (a mirror laid out alike)."""
    base = torch_index or PYTORCH_INDEX
    if override and override != AUTO:
        return _forced(override, machine, base)
    if machine.system == "Darwin":
        return TorchChoice(DEFAULT, None, "apple" if machine.arch == "arm64" else "cpu")
    if machine.nvidia_driver is not None and machine.system in ("Linux", "Windows"):
        return _for_nvidia(machine.nvidia_driver, machine, base)
    if machine.system == "Linux" and machine.amd_gpu:
        return TorchChoice(ROCM_BUILD, _index(base, ROCM_BUILD), "amd")
    return TorchChoice(DEFAULT, None, "cpu")


def expected_build(choice: TorchChoice, machine: Machine) -> str | None:
    """What the installed torch should report (``+cu126``, torch.version.cuda or hip), or
    None where the default index's build is not known here (then any is accepted)."""
    if choice.build != DEFAULT:
        return choice.build
    if machine.system == "Linux" and machine.arch == "x86_64":
        return PYPI_LINUX_X86_64_BUILD
    if machine.system in ("Windows", "Darwin"):
        return CPU
    return None
