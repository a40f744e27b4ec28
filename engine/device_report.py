"""What generation runs on, told to the user: the device, the precision, the torch build, the
GPU's name and memory, and the one problem worth a banner (an NVIDIA GPU that torch cannot
use, with the command that fixes it).

Torch-free: the backend reads torch into ``TorchFacts`` (``engine.generate.devices``) and
``build_device_report`` decides here, so the rules are tested with faked facts and a faked
``nvidia-smi`` probe on any machine. The probe is ``installer.probes.nvidia_gpus`` (stdlib
only, shared with the launcher) or a test's stand-in.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from engine.errors import WarningCode
from engine.memory_plan import ModelMemory
from engine.requests import EngineWarning
from installer.probes import NvidiaGpu

# The launcher's flag that reinstalls the torch build matching the driver (issue 12).
TORCH_FIX_ARGUMENTS = "--torch auto"
BYTES_PER_GB = 1024**3

NvidiaProbe = Callable[[], Sequence[NvidiaGpu]]


@dataclass(frozen=True)
class TorchFacts:
    """What torch says, read once by the backend; nothing here imports torch."""

    device: str  # the device generation runs on: "cuda:0", "mps", "cpu"
    requested_device: str  # EngineSettings.device: "auto", "cuda", "mps" or "cpu"
    precision: str  # "fp16", "bf16", "fp32"
    torch_version: str  # torch.__version__, e.g. "2.7.1+cu128"
    cuda_version: str | None  # torch.version.cuda: None in CPU, ROCm and macOS builds
    hip_version: str | None  # torch.version.hip: set in ROCm builds only
    mps_built: bool  # torch.backends.mps.is_built(): macOS builds
    gpu_name: str | None = None  # of the device used; None on the CPU
    gpu_memory_bytes: int | None = None


@dataclass(frozen=True)
class DeviceReport:
    device: str
    precision: str
    torch_version: str
    torch_build: str  # "CUDA 12.8", "ROCm 6.4", "MPS" or "CPU"
    gpu_name: str | None
    gpu_memory_bytes: int | None
    problem: EngineWarning | None = None  # what deserves a banner; None when all is well
    # The memory mode of each loaded model (engine.memory_plan): changes as models load.
    models: tuple[ModelMemory, ...] = ()

    @property
    def gpu_memory_gb(self) -> str | None:
        if self.gpu_memory_bytes is None:
            return None
        return f"{self.gpu_memory_bytes / BYTES_PER_GB:.1f}"

    def summary(self) -> str:
        """One line for the log, e.g. "cuda:0 (NVIDIA GeForce RTX 4090, 24.0 GB) in fp16,
        torch 2.7.1+cu128 (CUDA 12.8 build)"."""
        gpu = ""
        if self.gpu_name is not None:
            memory = f", {self.gpu_memory_gb} GB" if self.gpu_memory_bytes is not None else ""
            gpu = f" ({self.gpu_name}{memory})"
        return (f"{self.device}{gpu} in {self.precision}, torch {self.torch_version} "
                f"({self.torch_build} build)")


def torch_build(facts: TorchFacts) -> str:
    if facts.cuda_version:
        return f"CUDA {facts.cuda_version}"
    if facts.hip_version:  # "6.4.43482-0f2d60242": the release is what users know
        return "ROCm " + ".".join(facts.hip_version.split(".")[:2])
    return "MPS" if facts.mps_built else "CPU"


def fix_command(system: str) -> str:
    """The launcher command for ``platform.system()``: run.bat on Windows, run.sh elsewhere."""
    launcher = "run.bat" if system == "Windows" else "./run.sh"
    return f"{launcher} {TORCH_FIX_ARGUMENTS}"


def find_problem(facts: TorchFacts, nvidia_gpus: NvidiaProbe,
                 system: str) -> EngineWarning | None:
    """An NVIDIA GPU the driver reports while generation runs elsewhere. Already on a GPU,
    or on the CPU because the user asked for it, there is nothing to say (and no probe to
    run: ``nvidia-smi`` can take seconds)."""
    if facts.device.startswith("cuda") or facts.requested_device == "cpu":
        return None
    gpus = nvidia_gpus()
    if not gpus:
        return None
    gpu, command = gpus[0], fix_command(system)
    if facts.cuda_version is None:  # a CPU (or ROCm) build of torch
        return EngineWarning(WarningCode.GPU_UNUSED_TORCH_CPU,
                             {"gpu": gpu.name, "command": command})
    # A CUDA build that sees no device: usually a driver older than that CUDA release.
    return EngineWarning(WarningCode.GPU_UNUSED_CUDA_UNAVAILABLE,
                         {"gpu": gpu.name, "driver": gpu.driver_version,
                          "cuda": facts.cuda_version, "command": command})


def build_device_report(facts: TorchFacts, nvidia_gpus: NvidiaProbe,
                        system: str) -> DeviceReport:
    """``nvidia_gpus`` is called only when generation does not run on a CUDA device."""
    return DeviceReport(device=facts.device, precision=facts.precision,
                        torch_version=facts.torch_version, torch_build=torch_build(facts),
                        gpu_name=facts.gpu_name, gpu_memory_bytes=facts.gpu_memory_bytes,
                        problem=find_problem(facts, nvidia_gpus, system))
