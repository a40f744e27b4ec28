"""Choosing where and in what precision models run. Probed when asked, never at import."""

from __future__ import annotations

import logging
from dataclasses import dataclass

import torch

from engine.device_report import TorchFacts
from engine.errors import InvalidRequest
from engine.settings import DEVICES, PRECISIONS

logger = logging.getLogger(__name__)

_DTYPES = {"fp16": torch.float16, "bf16": torch.bfloat16, "fp32": torch.float32}


@dataclass(frozen=True)
class Placement:
    device: torch.device
    dtype: torch.dtype

    @property
    def precision(self) -> str:
        return next(name for name, dtype in _DTYPES.items() if dtype == self.dtype)


def _mps_available() -> bool:
    backend = getattr(torch.backends, "mps", None)
    return bool(backend and backend.is_available())


def pick_placement(device: str = "auto", precision: str = "auto") -> Placement:
    """CUDA, then MPS, then CPU; fp16 on a GPU and fp32 on the CPU unless overridden."""
    if device not in DEVICES:
        raise InvalidRequest("unknown_device", name=device, known=", ".join(DEVICES))
    if precision not in PRECISIONS:
        raise InvalidRequest("unknown_precision", name=precision, known=", ".join(PRECISIONS))
    if device == "auto":
        device = "cuda" if torch.cuda.is_available() else "mps" if _mps_available() else "cpu"
    elif device == "cuda" and not torch.cuda.is_available():
        raise InvalidRequest("device_unavailable", name=device)
    elif device == "mps" and not _mps_available():
        raise InvalidRequest("device_unavailable", name=device)
    if precision == "auto":
        precision = "fp32" if device == "cpu" else "fp16"
    placement = Placement(torch.device(device), _DTYPES[precision])
    logger.info("models run on %s in %s", placement.device, precision)
    return placement


def _mps_memory() -> int | None:
    """What macOS lets MPS use (torch 2.5+); None where this torch cannot say."""
    recommended = getattr(getattr(torch, "mps", None), "recommended_max_memory", None)
    try:
        return int(recommended()) if recommended is not None else None
    except RuntimeError:
        return None


def torch_facts(placement: Placement, requested_device: str) -> TorchFacts:
    """What torch says about its build and the device ``placement`` uses."""
    device = placement.device
    used, name, memory = device.type, None, None
    if device.type == "cuda":  # ROCm builds use the cuda device type too
        index = device.index if device.index is not None else torch.cuda.current_device()
        properties = torch.cuda.get_device_properties(index)
        used, name, memory = f"cuda:{index}", properties.name, int(properties.total_memory)
    elif device.type == "mps":
        memory = _mps_memory()
    mps = getattr(torch.backends, "mps", None)
    return TorchFacts(device=used, requested_device=requested_device,
                      precision=placement.precision, torch_version=torch.__version__,
                      cuda_version=torch.version.cuda,
                      hip_version=getattr(torch.version, "hip", None),
                      mps_built=bool(mps and mps.is_built()), gpu_name=name,
                      gpu_memory_bytes=memory)
