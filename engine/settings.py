"""The engine's settings: one typed object, built once by the caller and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.limits import DEFAULT_LIMITS, Limits

MEMORY_MODES = ("normal", "low")
DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")

CHECKPOINTS_FOLDER = "checkpoints"  # in ``models_dir``: users' own base models
DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "models_manifest.yaml"


@dataclass(frozen=True)
class EngineSettings:
    """``device``/``precision`` of "auto" pick CUDA, then Apple MPS, then CPU, and fp16 on a GPU.

    ``hub_cache_dir`` of None means huggingface_hub's own default cache (``HF_HOME``).
    ``lora_dir`` is where users drop LoRA files; they are found there by file name.
    """

    models_dir: Path = Path("models")
    hub_cache_dir: Path | None = None
    manifest_path: Path = DEFAULT_MANIFEST
    device: str = "auto"
    precision: str = "auto"
    offline: bool = False
    max_loaded_models: int = 2
    memory_mode: str = "normal"  # "normal", or "low": offload idle modules and tile the VAE
    convert_downloads: bool = True  # pickled fp32 downloads get an fp16 safetensors copy
    # LoRAs and single-file checkpoints by any file path (the command line). The UI and the API
    # name LoRAs by manifest id or file name in ``lora_dir``, and single files only inside
    # ``checkpoint_dir``, so a request cannot make the server read other files.
    allow_file_paths: bool = False
    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)

    @property
    def lora_dir(self) -> Path:
        return self.models_dir / "lora"

    @property
    def checkpoint_dir(self) -> Path:
        """Users' own diffusers model folders (safetensors only)."""
        return self.models_dir / CHECKPOINTS_FOLDER
