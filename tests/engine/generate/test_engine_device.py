"""The real engine's device report: torch's own facts read through ``torch_facts``, the
problem decided by ``engine.device_report`` with a faked ``nvidia-smi``."""

from __future__ import annotations

import pytest
import torch

from engine.generate.engine import Engine
from installer.probes import NvidiaGpu
from tests.support.tiny_repos import make_settings

RTX = NvidiaGpu("NVIDIA GeForce RTX 4090", "572.16", 24564)


def expected_build() -> str:
    if torch.version.cuda:
        return f"CUDA {torch.version.cuda}"
    if getattr(torch.version, "hip", None):
        return "ROCm " + ".".join(torch.version.hip.split(".")[:2])
    return "MPS" if torch.backends.mps.is_built() else "CPU"


def test_the_engine_on_the_cpu_reports_it_and_its_torch(engine, monkeypatch):
    report = engine.device_report()
    assert (report.device, report.precision) == ("cpu", "fp32")
    assert report.torch_version == torch.__version__
    assert report.torch_build == expected_build()
    assert (report.gpu_name, report.gpu_memory_bytes, report.problem) == (None, None, None)
    # Made once: torch is not asked again (only the loaded models' memory modes are read).
    monkeypatch.setattr("engine.generate.engine.torch_facts",
                        lambda *args: pytest.fail("torch was asked again"))
    assert engine.device_report() == report


def test_an_engine_left_to_choose_names_the_gpu_or_the_gpu_it_cannot_use(tiny_repos):
    """With a GPU torch can use (the device machine): that GPU, no problem, and nvidia-smi not
    run. Without one (CI): a faked nvidia-smi's GPU, and the fix for this torch build."""
    probed = []

    def nvidia_smi():
        probed.append(True)
        return [RTX]

    engine = Engine(make_settings(tiny_repos, device="auto", precision="auto"),
                    nvidia_probe=nvidia_smi)
    report = engine.device_report()
    if torch.cuda.is_available():
        index = torch.cuda.current_device()
        assert report.device == f"cuda:{index}" and report.precision == "fp16"
        assert report.gpu_name == torch.cuda.get_device_name(index)
        assert report.gpu_memory_bytes == torch.cuda.get_device_properties(index).total_memory
        assert report.problem is None and probed == []
        return
    assert report.gpu_name is None and probed == [True]
    assert report.problem is not None
    assert report.problem.code == ("gpu_unused_cuda_unavailable" if torch.version.cuda
                                   else "gpu_unused_torch_cpu")
    assert report.problem.params["gpu"] == RTX.name
