"""Single-file checkpoints (A1111/Civitai ``.safetensors``) placed in ``models/checkpoints``.

Such a file holds weights only. The architecture's configs and the tokenizer come from a local
diffusers folder of the same family (a downloaded PAI base, say), chosen by comparing the
shapes in the file's header with each candidate's configs, so nothing is fetched from the hub
and the weights are never read until the model loads. Only safetensors: no pickle is opened.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ModelError

logger = logging.getLogger(__name__)

SINGLE_FILE_SUFFIX = ".safetensors"
PAI_VOCAB_SIZE = 21128  # bert-base-chinese's vocabulary, which PAI's CLIP text encoder uses
SUGGESTED_PAI_BASE = "pai-artist-large"

_UNET = "model.diffusion_model."
_CONV_IN = _UNET + "input_blocks.0.0.weight"
_CROSS_ATTENTION = _UNET + "input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight"
_CLIP_TOKENS = "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight"
_FAMILY_MARKERS = (  # key prefixes of checkpoints this app cannot run
    ("conditioner.embedders.", "SDXL"),
    ("cond_stage_model.model.", "SD 2.x"),
    ("model.diffusion_model.joint_blocks.", "SD 3"),
    ("double_blocks.", "FLUX"),
)


@dataclass(frozen=True)
class CheckpointShape:
    """What a single file's header says about its architecture."""

    vocab_size: int
    text_width: int
    context_dim: int
    unet_channels: int
    in_channels: int
    has_vae: bool = True  # some files leave the VAE out: the base's is used then


def is_single_file(path: Path) -> bool:
    return path.suffix.lower() == SINGLE_FILE_SUFFIX and path.is_file()


def _header_shapes(path: Path) -> dict[str, list[int]]:
    from safetensors import safe_open

    try:
        with safe_open(str(path), framework="numpy") as handle:
            return {key: list(handle.get_slice(key).get_shape()) for key in handle.keys()}
    except Exception as error:  # noqa: BLE001 - safetensors raises its own untyped errors
        logger.warning("cannot read %s: %s", path.name, type(error).__name__)
        raise ModelError("checkpoint_unreadable", name=path.name) from None


def read_shape(path: Path) -> CheckpointShape:
    """The architecture of an SD 1.x-style checkpoint; other families are refused by name."""
    shapes = _header_shapes(path)
    for prefix, family in _FAMILY_MARKERS:
        if any(key.startswith(prefix) for key in shapes):
            raise ModelError("checkpoint_unsupported", name=path.name, family=family)
    needed = (_CONV_IN, _CROSS_ATTENTION, _CLIP_TOKENS)
    if not all(key in shapes for key in needed):
        raise ModelError("checkpoint_unsupported", name=path.name, family="?")
    return CheckpointShape(
        vocab_size=shapes[_CLIP_TOKENS][0], text_width=shapes[_CLIP_TOKENS][1],
        context_dim=shapes[_CROSS_ATTENTION][1], unet_channels=shapes[_CONV_IN][0],
        in_channels=shapes[_CONV_IN][1],
        has_vae=any(key.startswith(("first_stage_model.", "vae.")) for key in shapes))


def _config(folder: Path, part: str) -> dict:
    try:
        return json.loads((folder / part / "config.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def fits(shape: CheckpointShape, folder: Path) -> bool:
    """Whether ``folder``'s configs describe a model with exactly these shapes."""
    text, unet = _config(folder, "text_encoder"), _config(folder, "unet")
    channels = unet.get("block_out_channels") or [None]
    return (text.get("model_type") == "clip_text_model"
            and text.get("vocab_size") == shape.vocab_size
            and text.get("hidden_size") == shape.text_width
            and unet.get("cross_attention_dim") == shape.context_dim
            and unet.get("in_channels") == shape.in_channels
            and channels[0] == shape.unet_channels
            and (folder / "tokenizer").is_dir())


def config_folder_for(path: Path, shape: CheckpointShape, candidates: Iterable[Path]) -> Path:
    """The first local diffusers folder whose architecture matches ``shape`` (``path``'s)."""
    for folder in candidates:
        if fits(shape, folder):
            return folder
    if shape.vocab_size == PAI_VOCAB_SIZE:
        raise ModelError("checkpoint_needs_pai_base", name=path.name, base=SUGGESTED_PAI_BASE)
    raise ModelError("checkpoint_needs_config", name=path.name, vocab=str(shape.vocab_size))
