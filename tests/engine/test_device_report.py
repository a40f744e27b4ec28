"""The device report's rules (``engine.device_report``), torch-free: faked torch facts and a
faked ``nvidia-smi``, so "an NVIDIA GPU that torch cannot use" is tested on any machine."""

from __future__ import annotations

import dataclasses
import functools

import pytest

from engine.device_report import TorchFacts, build_device_report, fix_command
from installer.probes import NvidiaGpu, nvidia_gpus

RTX = NvidiaGpu("NVIDIA GeForce RTX 4090", "572.16", 24564)
GB = 1024**3

CPU_BUILD = TorchFacts(device="cpu", requested_device="auto", precision="fp32",
                       torch_version="2.7.1+cpu", cuda_version=None, hip_version=None,
                       mps_built=False)
CUDA_BUILD_UNUSED = dataclasses.replace(CPU_BUILD, torch_version="2.7.1+cu128",
                                        cuda_version="12.8")
ON_CUDA = dataclasses.replace(CUDA_BUILD_UNUSED, device="cuda:0", precision="fp16",
                              gpu_name=RTX.name, gpu_memory_bytes=24 * GB)
ROCM_BUILD_UNUSED = dataclasses.replace(CPU_BUILD, torch_version="2.7.1+rocm6.4",
                                        hip_version="6.4.43482-0f2d60242")
ON_MPS = dataclasses.replace(CPU_BUILD, device="mps", precision="fp16", mps_built=True)


def never_probed():
    raise AssertionError("nvidia-smi runs only when generation is not on a CUDA device")


# (facts, GPUs nvidia-smi reports, platform.system()) -> (problem code or None, its command)
CASES = {
    "GPU present, CPU torch, Windows": (CPU_BUILD, [RTX], "Windows",
                                        "gpu_unused_torch_cpu", "run.bat --torch auto"),
    "GPU present, CPU torch, Linux": (CPU_BUILD, [RTX], "Linux",
                                      "gpu_unused_torch_cpu", "./run.sh --torch auto"),
    "GPU present, ROCm torch, Linux": (ROCM_BUILD_UNUSED, [RTX], "Linux",
                                       "gpu_unused_torch_cpu", "./run.sh --torch auto"),
    "GPU present, CUDA torch cannot use it": (CUDA_BUILD_UNUSED, [RTX], "Windows",
                                              "gpu_unused_cuda_unavailable",
                                              "run.bat --torch auto"),
    "no GPU, CPU torch": (CPU_BUILD, [], "Linux", None, None),
    "no GPU, CUDA torch": (CUDA_BUILD_UNUSED, [], "Windows", None, None),
    "CPU asked for, GPU present": (dataclasses.replace(CPU_BUILD, requested_device="cpu"),
                                   [RTX], "Linux", None, None),
    "on the GPU": (ON_CUDA, [RTX], "Linux", None, None),
    "on Apple Silicon": (ON_MPS, [], "Darwin", None, None),
}


@pytest.mark.parametrize("case", CASES)
def test_the_problem_and_its_fix_command(case):
    facts, gpus, system, code, command = CASES[case]
    report = build_device_report(facts, lambda: gpus, system)
    if code is None:
        assert report.problem is None
        return
    assert report.problem is not None
    assert report.problem.code == code
    assert report.problem.params["command"] == command
    assert report.problem.params["gpu"] == "NVIDIA GeForce RTX 4090"


def test_a_cuda_torch_that_cannot_use_the_gpu_names_the_driver_and_cuda_release():
    report = build_device_report(CUDA_BUILD_UNUSED, lambda: [RTX], "Linux")
    assert report.problem is not None
    assert report.problem.params == {"gpu": RTX.name, "driver": "572.16", "cuda": "12.8",
                                     "command": "./run.sh --torch auto"}


@pytest.mark.parametrize("facts", [ON_CUDA, dataclasses.replace(CPU_BUILD,
                                                                requested_device="cpu")])
def test_nvidia_smi_is_not_run_when_nothing_could_come_of_it(facts):
    assert build_device_report(facts, never_probed, "Linux").problem is None


def test_the_real_probe_with_a_faked_nvidia_smi():
    """installer.probes' parser behind the report: what the driver prints is what is named."""
    def nvidia_smi(command):
        return "NVIDIA GeForce RTX 3060, 560.94, 12288\n"

    probe = functools.partial(nvidia_gpus, run=nvidia_smi, nvidia_smi="nvidia-smi")
    report = build_device_report(CPU_BUILD, probe, "Windows")
    assert report.problem is not None
    assert report.problem.params["gpu"] == "NVIDIA GeForce RTX 3060"
    assert report.device == "cpu" and report.gpu_name is None  # not the device in use


@pytest.mark.parametrize(("facts", "build"), [
    (CPU_BUILD, "CPU"), (CUDA_BUILD_UNUSED, "CUDA 12.8"), (ROCM_BUILD_UNUSED, "ROCm 6.4"),
    (ON_MPS, "MPS"),
])
def test_the_torch_build(facts, build):
    assert build_device_report(facts, list, "Linux").torch_build == build


def test_the_log_line_names_device_gpu_memory_and_torch():
    on_gpu = build_device_report(ON_CUDA, never_probed, "Linux")
    assert on_gpu.summary() == ("cuda:0 (NVIDIA GeForce RTX 4090, 24.0 GB) in fp16, "
                                "torch 2.7.1+cu128 (CUDA 12.8 build)")
    assert (on_gpu.gpu_name, on_gpu.gpu_memory_bytes) == (RTX.name, 24 * GB)
    on_cpu = build_device_report(CPU_BUILD, list, "Linux")
    assert on_cpu.summary() == "cpu in fp32, torch 2.7.1+cpu (CPU build)"
    assert (on_cpu.gpu_name, on_cpu.gpu_memory_bytes) == (None, None)


@pytest.mark.parametrize(("system", "command"), [
    ("Windows", "run.bat --torch auto"), ("Linux", "./run.sh --torch auto"),
    ("Darwin", "./run.sh --torch auto"),
])
def test_the_fix_command_is_the_launchers_for_the_platform(system, command):
    assert fix_command(system) == command
