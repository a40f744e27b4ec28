"""Tiny replicas of the few-step LoRA files (LCM-LoRA, TCD-LoRA, Hyper-SD15), in the key formats
of the real files, with random weights for the tiny PAI UNet.

What is known about the real files, and how (no machine here reaches the hub):
- ``latent-consistency/lcm-lora-sdv1-5`` ``pytorch_lora_weights.safetensors``: UNet only, kohya
  style keys over diffusers module names (``lora_unet_down_blocks_0_attentions_0_proj_in``) with
  ``lora_down``/``lora_up``/``alpha``: listed so by stable-diffusion.cpp's LoRA tests (PR #955,
  "unet|lora_down+lora_up+alpha|hf"). It adapts attention, ``proj_in``/``proj_out``, the
  feed-forward, the ResNet convolutions, ``time_emb_proj`` and the down/up samplers (the LCM
  LoRA training script's target modules), hence its 135 MB.
- ``ByteDance/Hyper-SD`` ``Hyper-SD15-8steps-lora.safetensors``: inferred to be the same
  format and modules (it descends from the LCM-LoRA recipe and loads as-is in A1111 and
  ComfyUI); not read from the file.
- ``h1t/TCD-SD15-LoRA`` ``pytorch_lora_weights.safetensors``: the default name of diffusers'
  ``save_lora_weights``, same size as LCM-LoRA; inferred to hold diffusers' own keys
  (``unet.<module>.lora.down.weight``/``lora.up.weight``, no alpha), as diffusers' LCM-LoRA
  training script (which TCD's follows) writes them; not read from the file.
The ranks and alphas of the real files are not known; the replicas use small ones (alpha
differs from the rank so that alpha scaling is exercised).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import torch

# diffusers' LCM-LoRA training script's target modules (peft matches them as name suffixes).
FEW_STEP_TARGETS = ("to_q", "to_k", "to_v", "to_out.0", "proj_in", "proj_out", "ff.net.0.proj",
                    "ff.net.2", "conv1", "conv2", "conv_shortcut", "downsamplers.0.conv",
                    "upsamplers.0.conv", "time_emb_proj")


def _targets(unet) -> Iterator[tuple[str, torch.nn.Module]]:
    for name, module in unet.named_modules():
        if isinstance(module, (torch.nn.Linear, torch.nn.Conv2d)) and any(
                name == target or name.endswith("." + target) for target in FEW_STEP_TARGETS):
            yield name, module


def _pair(generator: torch.Generator, rank: int, module: torch.nn.Module,
          scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(down, up) as peft shapes them: a convolution's down keeps its kernel, its up is 1x1."""
    if isinstance(module, torch.nn.Conv2d):
        down = torch.randn(rank, module.in_channels, *module.kernel_size, generator=generator)
        up = torch.randn(module.out_channels, rank, 1, 1, generator=generator)
    else:
        down = torch.randn(rank, module.in_features, generator=generator)
        up = torch.randn(module.out_features, rank, generator=generator)
    return down * scale, up * scale


def _save(state: dict[str, torch.Tensor], path: Path) -> Path:
    from safetensors.torch import save_file

    Path(path).parent.mkdir(parents=True, exist_ok=True)
    # The real files are fp16.
    save_file({k: v.to(torch.float16).contiguous() for k, v in state.items()}, str(path))
    return Path(path)


def write_kohya_diffusers_names_lora(path: Path, base: Path, seed: int, rank: int = 4,
                                     alpha: float = 2.0, scale: float = 0.15) -> Path:
    """LCM-LoRA's (and, inferred, Hyper-SD15's) format: ``lora_unet_<module with _>``."""
    from engine.demo.tiny_models import load_tiny_unet

    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, module in _targets(load_tiny_unet(base)):
        key = "lora_unet_" + name.replace(".", "_")
        state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"] = _pair(
            generator, rank, module, scale)
        state[f"{key}.alpha"] = torch.tensor(alpha)
    return _save(state, path)


def write_diffusers_dotted_lora(path: Path, base: Path, seed: int, rank: int = 4,
                                scale: float = 0.15) -> Path:
    """diffusers' own ``save_lora_weights`` keys (TCD-LoRA, inferred):
    ``unet.<module>.lora.down.weight`` and ``lora.up.weight``."""
    from engine.demo.tiny_models import load_tiny_unet

    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}
    for name, module in _targets(load_tiny_unet(base)):
        state[f"unet.{name}.lora.down.weight"], state[f"unet.{name}.lora.up.weight"] = _pair(
            generator, rank, module, scale)
    return _save(state, path)


# manifest id -> (hub repo, file name, writer): placed in the hub cache as a download would.
FEW_STEP_REPLICAS = {
    "lcm-lora-sd15": ("latent-consistency/lcm-lora-sdv1-5", "pytorch_lora_weights.safetensors",
                      lambda path, base: write_kohya_diffusers_names_lora(path, base, seed=40)),
    "tcd-lora-sd15": ("h1t/TCD-SD15-LoRA", "pytorch_lora_weights.safetensors",
                      lambda path, base: write_diffusers_dotted_lora(path, base, seed=41)),
    "hyper-sd15-8steps-lora": ("ByteDance/Hyper-SD", "Hyper-SD15-8steps-lora.safetensors",
                               lambda path, base: write_kohya_diffusers_names_lora(
                                   path, base, seed=42, rank=8, alpha=8.0)),
}


def place_few_step_loras(made: Path, base: Path, hub: Path) -> dict[str, Path]:
    """Write each replica and put it in the hub cache under its real repo and file name."""
    from engine.demo.tiny_models import place_in_hub_cache

    placed = {}
    for manifest_id, (repo, file_name, write) in FEW_STEP_REPLICAS.items():
        folder = made / manifest_id
        write(folder / file_name, base)
        placed[manifest_id] = place_in_hub_cache(folder, repo, hub) / file_name
    return placed
