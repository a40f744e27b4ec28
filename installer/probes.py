"""What hardware this machine has, found without torch: NVIDIA GPUs through ``nvidia-smi``
(installed with the driver on Windows and Linux), AMD GPUs on Linux through the kernel's PCI
vendor ids, Apple Silicon from the platform. Each probe takes its command runner and paths as
arguments so the tests can fake the machine.
"""

from __future__ import annotations

import logging
import os
import platform
import shutil
import subprocess
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

logger = logging.getLogger(__name__)

NVIDIA_SMI_QUERY = ("--query-gpu=name,driver_version,memory.total",
                    "--format=csv,noheader,nounits")
AMD_PCI_VENDOR = "0x1002"
PROBE_TIMEOUT_S = 15

# (command line) -> its standard output; raises OSError / CalledProcessError / TimeoutExpired.
CommandRunner = Callable[[Sequence[str]], str]


@dataclass(frozen=True)
class NvidiaGpu:
    name: str
    driver_version: str  # "572.16" on Windows, "570.124.06" on Linux
    memory_mib: int

    @property
    def driver_major_minor(self) -> tuple[int, int]:
        parts = self.driver_version.split(".")
        try:
            return int(parts[0]), int(parts[1]) if len(parts) > 1 else 0
        except ValueError:
            return 0, 0


def run_command(command: Sequence[str]) -> str:
    return subprocess.run(list(command), capture_output=True, text=True, check=True,
                          timeout=PROBE_TIMEOUT_S).stdout


def _nvidia_smi() -> str | None:
    """On Windows the driver puts nvidia-smi in System32, which is not always on PATH."""
    found = shutil.which("nvidia-smi")
    if found:
        return found
    if platform.system() == "Windows":
        system32 = Path(os.environ.get("SystemRoot", r"C:\Windows")) / "System32"
        candidate = system32 / "nvidia-smi.exe"
        return str(candidate) if candidate.is_file() else None
    return None


def parse_nvidia_smi(output: str) -> list[NvidiaGpu]:
    gpus = []
    for line in output.splitlines():
        fields = [field.strip() for field in line.split(",")]
        if len(fields) != 3 or not fields[0]:
            continue
        try:
            memory = int(float(fields[2]))
        except ValueError:
            memory = 0
        gpus.append(NvidiaGpu(fields[0], fields[1], memory))
    return gpus


def nvidia_gpus(run: CommandRunner = run_command,
                nvidia_smi: str | None = None) -> list[NvidiaGpu]:
    """The NVIDIA GPUs the driver reports; none when there is no driver or it does not answer."""
    command = nvidia_smi or _nvidia_smi()
    if command is None:
        return []
    try:
        return parse_nvidia_smi(run([command, *NVIDIA_SMI_QUERY]))
    except (OSError, subprocess.SubprocessError) as error:
        logger.info("nvidia-smi did not answer: %s", type(error).__name__)
        return []


def has_amd_gpu(pci_root: Path = Path("/sys/bus/pci/devices")) -> bool:
    """An AMD display controller on Linux (PCI class 0x03xxxx, vendor 0x1002)."""
    try:
        devices = list(pci_root.iterdir())
    except OSError:
        return False
    for device in devices:
        try:
            vendor = (device / "vendor").read_text().strip()
            device_class = (device / "class").read_text().strip()
        except OSError:
            continue
        if vendor == AMD_PCI_VENDOR and device_class.startswith("0x03"):
            return True
    return False


def is_apple_silicon(system: str | None = None, machine: str | None = None) -> bool:
    return (system or platform.system()) == "Darwin" and \
        (machine or platform.machine()) in ("arm64", "aarch64")
