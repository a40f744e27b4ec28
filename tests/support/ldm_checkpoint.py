"""Writes a diffusers Stable Diffusion 1.x folder as one A1111/Civitai-style ``.safetensors``
file (the original LDM key names), so tests can load single-file checkpoints like the ones
users download, built from the tiny random-weight replicas.

The names follow the original CompVis layout that diffusers' single-file loader reads:
``model.diffusion_model.`` (UNet), ``first_stage_model.`` (VAE) and
``cond_stage_model.transformer.text_model.`` (CLIP text encoder).
"""

from __future__ import annotations

from pathlib import Path

import torch
from safetensors.torch import save_file

_UNET_RESNET = (("norm1", "in_layers.0"), ("conv1", "in_layers.2"), ("norm2", "out_layers.0"),
                ("conv2", "out_layers.3"), ("time_emb_proj", "emb_layers.1"),
                ("conv_shortcut", "skip_connection"))
_UNET_PLAIN = {"time_embedding.linear_1": "time_embed.0", "time_embedding.linear_2": "time_embed.2",
               "conv_in": "input_blocks.0.0", "conv_norm_out": "out.0", "conv_out": "out.2"}
_VAE_ATTENTION = (("group_norm", "norm"), ("to_q", "q"), ("to_k", "k"), ("to_v", "v"),
                  ("to_out.0", "proj_out"))


def _rename(rest: str, pairs) -> str:
    for new, old in pairs:
        if rest.startswith(new + "."):
            return old + rest[len(new):]
    return rest


def _unet_key(key: str, per_block: int, attention_up_blocks: set[int]) -> str:
    parts = key.split(".")
    module = ".".join(parts[:-1])
    if module in _UNET_PLAIN:
        return f"{_UNET_PLAIN[module]}.{parts[-1]}"
    if parts[0] == "mid_block":
        index = {"resnets": 0, "attentions": 1}[parts[1]] + 2 * int(parts[2])
        rest = ".".join(parts[3:])
        rest = _rename(rest, _UNET_RESNET) if parts[1] == "resnets" else rest
        return f"middle_block.{index}.{rest}"
    block, kind, layer, rest = int(parts[1]), parts[2], int(parts[3]), ".".join(parts[4:])
    if parts[0] == "down_blocks":
        if kind == "downsamplers":  # the block's last input slot: "op" is its conv
            return f"input_blocks.{1 + block * (per_block + 1) + per_block}.0.op.{parts[-1]}"
        slot = 1 + block * (per_block + 1) + layer
        return _unet_slot("input_blocks", slot, kind, rest)
    if kind == "upsamplers":
        slot = block * (per_block + 1) + per_block
        position = 2 if block in attention_up_blocks else 1
        return f"output_blocks.{slot}.{position}.conv.{parts[-1]}"
    return _unet_slot("output_blocks", block * (per_block + 1) + layer, kind, rest)


def _unet_slot(blocks: str, slot: int, kind: str, rest: str) -> str:
    if kind == "resnets":
        return f"{blocks}.{slot}.0.{_rename(rest, _UNET_RESNET)}"
    return f"{blocks}.{slot}.1.{rest}"


def _vae_key(key: str, value: torch.Tensor, up_blocks: int) -> tuple[str, torch.Tensor]:
    side, rest = key.split(".", 1)  # encoder / decoder / quant_conv ...
    if rest.startswith("conv_norm_out."):
        return f"{side}.norm_out.{rest.split('.', 1)[1]}", value
    parts = rest.split(".")
    if parts[0] in ("down_blocks", "up_blocks"):
        index = int(parts[1]) if parts[0] == "down_blocks" else up_blocks - 1 - int(parts[1])
        name = "down" if parts[0] == "down_blocks" else "up"
        if parts[2] in ("downsamplers", "upsamplers"):
            sampler = "downsample" if name == "down" else "upsample"
            return f"{side}.{name}.{index}.{sampler}.conv.{parts[-1]}", value
        tail = ".".join(parts[4:]).replace("conv_shortcut", "nin_shortcut")
        return f"{side}.{name}.{index}.block.{parts[3]}.{tail}", value
    if parts[0] == "mid_block" and parts[1] == "resnets":
        tail = ".".join(parts[3:]).replace("conv_shortcut", "nin_shortcut")
        return f"{side}.mid.block_{int(parts[2]) + 1}.{tail}", value
    if parts[0] == "mid_block":  # attention: LDM keeps its projections as 1x1 convolutions
        tail = _rename(".".join(parts[3:]), _VAE_ATTENTION)
        if value.ndim == 2:
            value = value[:, :, None, None]
        return f"{side}.mid.attn_1.{tail}", value
    return key, value


def export_single_file(pipe, path: Path, dtype: torch.dtype = torch.float16,
                       include_vae: bool = True) -> Path:
    """``pipe``'s UNet, VAE (unless left out, as some files do) and text encoder in one
    LDM-named safetensors file."""
    unet_config = pipe.unet.config
    attention_up = {i for i, kind in enumerate(unet_config.up_block_types) if "CrossAttn" in kind}
    tensors = {}
    for key, value in pipe.unet.state_dict().items():
        name = _unet_key(key, unet_config.layers_per_block, attention_up)
        tensors["model.diffusion_model." + name] = value
    up_blocks = len(pipe.vae.config.up_block_types)
    for key, value in (pipe.vae.state_dict() if include_vae else {}).items():
        name, value = _vae_key(key, value, up_blocks)
        tensors["first_stage_model." + name] = value
    for key, value in pipe.text_encoder.state_dict().items():
        name = key if key.startswith("text_model.") else "text_model." + key
        tensors["cond_stage_model.transformer." + name] = value
    save_file({k: v.to(dtype).contiguous() for k, v in tensors.items()}, str(path))
    return path
