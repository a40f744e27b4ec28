"""Files a user drops into the models folder, written without torch, for tests that run the real
service (``engine.fake_engine.fake_image_service``): the real catalog reads them as it reads a
user's own files.
"""

from __future__ import annotations

import json
import math
import struct
from pathlib import Path

from engine.service import ImageService
from engine.store.catalog import ModelState

PAI_VOCAB = 21128  # bert-base-chinese's, as PAI's CLIP text encoder has it
TEXT_WIDTH = CONTEXT_DIM = UNET_CHANNELS = 32
IN_CHANNELS = 4
HEADER_TENSORS = {  # only what the architecture check reads (engine.store.single_file)
    "model.diffusion_model.input_blocks.0.0.weight": [UNET_CHANNELS, IN_CHANNELS, 3, 3],
    "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
        [CONTEXT_DIM, CONTEXT_DIM],
    "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight":
        [PAI_VOCAB, TEXT_WIDTH],
}


def write_single_file(path: Path, size: int | None = None,
                      extra: tuple[str, ...] = ()) -> Path:
    """A PAI-shaped single-file checkpoint (zeros); with ``size``, exactly that many bytes:
    one more tensor pads it, sparsely, so a '2 GB' file costs no disk. ``extra`` adds tensors
    by name (4 bytes each): ``conditioner.embedders.0.x`` makes it an SDXL file."""
    header: dict[str, dict] = {}
    offset = 0
    tensors = {**HEADER_TENSORS, **{name: [2] for name in extra}}  # F16: [2] is 4 bytes
    for name, shape in tensors.items():
        length = 2 * math.prod(shape)
        header[name] = {"dtype": "F16", "shape": shape, "data_offsets": [offset, offset + length]}
        offset += length
    room = len(_encoded(header))
    if size is not None:  # the padding's numbers are at most ``size``: room for them
        room = len(_encoded({**header, PADDING: _padding(offset, size)}))
        header[PADDING] = _padding(offset, size - 8 - offset - _aligned(room))
        offset = header[PADDING]["data_offsets"][1]
    encoded = _encoded(header).ljust(_aligned(room))  # trailing spaces are allowed
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.write(struct.pack("<Q", len(encoded)) + encoded)
        handle.truncate(8 + len(encoded) + offset)  # zeros, as a sparse file
    return path


PADDING = "model.diffusion_model.padding"


def _padding(offset: int, length: int) -> dict:
    return {"dtype": "U8", "shape": [length], "data_offsets": [offset, offset + length]}


def _aligned(length: int) -> int:
    return -(-length // 8) * 8


def _encoded(header: dict) -> bytes:
    return json.dumps(header, separators=(",", ":")).encode()


def give_base_the_single_files_shape(service: ImageService, model_id: str) -> None:
    """Make a downloaded (placeholder) base's configs describe the architecture of the files
    ``write_single_file`` writes, so the catalog takes it as their configs' source."""
    folder = service.store.base_folder(model_id)
    configs = {
        "text_encoder": {"model_type": "clip_text_model", "vocab_size": PAI_VOCAB,
                         "hidden_size": TEXT_WIDTH},
        "unet": {"cross_attention_dim": CONTEXT_DIM, "in_channels": IN_CHANNELS,
                 "block_out_channels": [UNET_CHANNELS], "sample_size": 64},
    }
    for part, config in configs.items():
        (folder / part).mkdir(exist_ok=True)
        (folder / part / "config.json").write_text(json.dumps(config), encoding="utf-8")
    (folder / "tokenizer").mkdir(exist_ok=True)


def sparse_file(path: Path, size: int) -> Path:
    """A file of ``size`` zero bytes that takes no disk (a pickle, a LoRA: contents unread)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("wb") as handle:
        handle.truncate(size)
    return path


def write_diffusers_folder(folder: Path) -> Path:
    """A user's own diffusers folder (as ``save_pretrained`` leaves one, placeholder weights)."""
    for part in ("unet", "vae", "text_encoder"):
        (folder / part).mkdir(parents=True, exist_ok=True)
        (folder / part / "config.json").write_text("{}", encoding="utf-8")
        (folder / part / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    (folder / "model_index.json").write_text("{}", encoding="utf-8")
    return folder


def model_state(service: ImageService, model_id: str) -> ModelState:
    """What the real catalog says of a manifest model now (from what is on disk)."""
    return next(status.state for status in service.model_statuses()
                if status.entry.id == model_id)
