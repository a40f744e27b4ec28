"""The engine's settings: one typed object, built once by the caller and passed down."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from engine.limits import DEFAULT_LIMITS, Limits

# Where a model's weights live while it runs: "auto" picks one of the others per model as it
# loads, from the device's free memory (``engine.memory_plan``); the README says what each costs.
MEMORY_MODES = ("auto", "gpu", "model_offload", "sequential_offload")
# Names earlier versions saved (settings files) and API callers may still send.
MEMORY_MODE_ALIASES = {"normal": "auto", "low": "model_offload"}
DEVICES = ("auto", "cuda", "mps", "cpu")
PRECISIONS = ("auto", "fp16", "bf16", "fp32")
# Live previews: "approx" projects the latents to RGB with a fixed matrix (free, blurry);
# "taesd" decodes them with TAESD, a tiny real VAE decoder (sharp, a model to download).
PREVIEW_METHODS = ("approx", "taesd")
TAESD_MODEL = "taesd"  # the manifest id of the "taesd" method's decoder
MAX_STEP_CACHE_INTERVAL = 5


def canonical_memory_mode(mode: object) -> str | None:
    """``mode`` as one of MEMORY_MODES (an old name mapped), or None when it is none of them."""
    if not isinstance(mode, str):
        return None
    mode = MEMORY_MODE_ALIASES.get(mode, mode)
    return mode if mode in MEMORY_MODES else None


CHECKPOINTS_FOLDER = "checkpoints"  # in ``models_dir``: users' own base models
DEFAULT_MANIFEST = Path(__file__).resolve().parent.parent / "models_manifest.yaml"


@dataclass(frozen=True)
class SpeedSettings:
    """Optimizations beyond SDPA (diffusers' default attention, always on), each off by
    default because each has a cost somewhere: see the README's speed section.

    ``step_cache_interval`` of N >= 2 runs the UNet's deep blocks only every N steps and
    reuses their features between (DeepCache-style): faster, slightly different images; 0 or 1
    (every step) is off.
    """

    channels_last: bool = False
    fuse_qkv: bool = False
    compile_unet: bool = False
    step_cache_interval: int = 0
    preview_method: str = "approx"

    @property
    def load_time(self) -> tuple[bool, bool, bool]:
        """The options applied as a model loads: changing one releases the loaded models."""
        return self.channels_last, self.fuse_qkv, self.compile_unet

    def problems(self) -> list[str]:
        """Field names whose values are out of range (empty when all are good)."""
        bad = [name for name in ("channels_last", "fuse_qkv", "compile_unet")
               if not isinstance(getattr(self, name), bool)]
        interval = self.step_cache_interval
        if isinstance(interval, bool) or not isinstance(interval, int) or \
                not 0 <= interval <= MAX_STEP_CACHE_INTERVAL:
            bad.append("step_cache_interval")
        if self.preview_method not in PREVIEW_METHODS:
            bad.append("preview_method")
        return bad


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
    memory_mode: str = "auto"  # one of MEMORY_MODES (an alias is read as what it names)
    convert_downloads: bool = True  # pickled fp32 downloads get an fp16 safetensors copy
    # LoRAs and single-file checkpoints by any file path (the command line). The UI and the API
    # name LoRAs by manifest id or file name in ``lora_dir``, and single files only inside
    # ``checkpoint_dir``, so a request cannot make the server read other files.
    allow_file_paths: bool = False
    speed: SpeedSettings = field(default_factory=SpeedSettings)
    limits: Limits = field(default_factory=lambda: DEFAULT_LIMITS)

    @property
    def lora_dir(self) -> Path:
        return self.models_dir / "lora"

    @property
    def checkpoint_dir(self) -> Path:
        """Users' own diffusers model folders (safetensors only)."""
        return self.models_dir / CHECKPOINTS_FOLDER
