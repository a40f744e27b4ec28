"""Full-size models with random weights, from the real configs, saved as a model repo.

Random weights cost exactly the FLOPs and bytes of trained ones, so a speed benchmark needs no
download. The configs are PAI's (a ``CLIPTextModel`` under a BERT vocabulary, 32-token context)
and SD 1.5's UNet, VAE and a ControlNet made from that UNet, written from the facts in the
team's briefs. ``TINY_SD15`` is the same family at a few channels, for CPU runs and tests.

``write_bench_repos`` saves them in the diffusers layout (fp16 safetensors, as the engine's own
conversion of PAI's pickles leaves them) inside a hub cache, so the engine loads them through
its real loading code and the bare diffusers pipelines load the very same files.
"""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from engine.demo.tiny_models import DPM_SOLVER_CONFIG, chinese_vocab
from engine.store.model_store import repo_folder_name
from engine.store.single_file import PAI_VOCAB_SIZE

logger = logging.getLogger(__name__)

PAI_CONTEXT_LENGTH = 32  # [CLS] + 30 characters + [SEP]
BENCH_ORG = "huajing-bench"
# Clearly not a hub repo: the engine resolves these ids from the cache only.
BASE_REPO = f"{BENCH_ORG}/sd15-random-weights"
CONTROLNET_REPO = f"{BENCH_ORG}/sd15-controlnet-random-weights"
SNAPSHOT = "0" * 40


@dataclass(frozen=True)
class FamilyConfigs:
    """Constructor arguments of each model class of one family."""

    name: str
    text_encoder: dict[str, Any]
    unet: dict[str, Any]
    vae: dict[str, Any]
    controlnet: dict[str, Any] = field(default_factory=dict)  # from_unet's extra arguments
    scaling_factor: float = 0.18215


def _pai_text_encoder(width: int, layers: int, heads: int, ffn: int) -> dict[str, Any]:
    # bos/eos are BERT's [CLS]/[SEP] ids in bert-base-chinese's vocabulary order.
    return {"vocab_size": PAI_VOCAB_SIZE, "hidden_size": width, "intermediate_size": ffn,
            "num_hidden_layers": layers, "num_attention_heads": heads,
            "projection_dim": width, "max_position_embeddings": PAI_CONTEXT_LENGTH,
            "pad_token_id": 0, "bos_token_id": 2, "eos_token_id": 3}


def _sd_unet(channels: tuple[int, ...], layers: int, cross_attention: int,
             groups: int) -> dict[str, Any]:
    crossed = len(channels) - 1  # every level but the deepest attends to the prompt
    return {"sample_size": 64, "in_channels": 4, "out_channels": 4, "layers_per_block": layers,
            "block_out_channels": channels,
            "down_block_types": ("CrossAttnDownBlock2D",) * crossed + ("DownBlock2D",),
            "up_block_types": ("UpBlock2D",) + ("CrossAttnUpBlock2D",) * crossed,
            "cross_attention_dim": cross_attention, "attention_head_dim": 8,
            "norm_num_groups": groups}


def _sd_vae(channels: tuple[int, ...], layers: int, groups: int) -> dict[str, Any]:
    # Four levels give the factor-8 downscale that the UNet's latents and ControlNet assume.
    return {"in_channels": 3, "out_channels": 3, "block_out_channels": channels,
            "layers_per_block": layers, "latent_channels": 4, "norm_num_groups": groups,
            "down_block_types": ("DownEncoderBlock2D",) * 4,
            "up_block_types": ("UpDecoderBlock2D",) * 4, "sample_size": 512,
            "scaling_factor": 0.18215}


REAL_SD15 = FamilyConfigs(
    name="PAI / SD 1.5 (full size)",
    text_encoder=_pai_text_encoder(width=768, layers=12, heads=12, ffn=3072),
    unet=_sd_unet((320, 640, 1280, 1280), layers=2, cross_attention=768, groups=32),
    vae=_sd_vae((128, 256, 512, 512), layers=2, groups=32),
)

TINY_SD15 = FamilyConfigs(
    name="PAI / SD 1.5 (tiny replica)",
    text_encoder=_pai_text_encoder(width=32, layers=2, heads=4, ffn=37),
    unet={**_sd_unet((32, 64), layers=1, cross_attention=32, groups=32), "sample_size": 8},
    vae={**_sd_vae((8, 16, 16, 16), layers=1, groups=8), "sample_size": 64},
    controlnet={"conditioning_embedding_out_channels": (8, 16, 16, 32)},
)


@dataclass(frozen=True)
class BenchRepos:
    hub_cache: Path
    base_folder: Path
    controlnet_folder: Path
    base_repo: str = BASE_REPO
    controlnet_repo: str = CONTROLNET_REPO


def build_models(configs: FamilyConfigs, device: torch.device,
                 seed: int = 0) -> dict[str, Any]:
    """Every model of the family with random weights, made on ``device`` (fast on a GPU).

    Typed ``Any``: diffusers' model classes are not typed as ``torch.nn.Module`` subclasses.
    """
    from diffusers import AutoencoderKL, ControlNetModel, UNet2DConditionModel
    from transformers import CLIPTextConfig, CLIPTextModel

    torch.manual_seed(seed)
    with torch.device(device):
        unet = UNet2DConditionModel(**configs.unet)
        models: dict[str, Any] = {
            "text_encoder": CLIPTextModel(CLIPTextConfig(**configs.text_encoder)),
            "unet": unet, "vae": AutoencoderKL(**configs.vae),
            # from_unet zero-initialises its output convolutions: the FLOPs are the same.
            "controlnet": ControlNetModel.from_unet(unet, **configs.controlnet),
        }
    return models


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def _write_tokenizer(folder: Path) -> None:
    """PAI's tokenizer files: a BERT ``vocab.txt`` and a 32-token context."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(chinese_vocab()) + "\n", encoding="utf-8")
    _write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "BertTokenizer", "do_lower_case": True,
        "model_max_length": PAI_CONTEXT_LENGTH, "tokenize_chinese_chars": True})
    _write_json(folder / "special_tokens_map.json", {
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
        "cls_token": "[CLS]", "mask_token": "[MASK]"})


MODEL_INDEX = {
    "_class_name": "StableDiffusionPipeline",
    "_diffusers_version": "0.42.1",
    "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
    "text_encoder": ["transformers", "CLIPTextModel"],
    "tokenizer": ["transformers", "BertTokenizer"],
    "unet": ["diffusers", "UNet2DConditionModel"],
    "vae": ["diffusers", "AutoencoderKL"],
    "safety_checker": [None, None],
    "feature_extractor": [None, None],
    "requires_safety_checker": False,
}


def hub_snapshot(hub: Path, repo: str) -> Path:
    """The snapshot folder of ``repo`` in huggingface_hub's cache layout, its ref written.

    Saved into directly: copying 2.7 GB of weights into the cache would cost seconds of a
    lent GPU's time.
    """
    repo_dir = hub / repo_folder_name(repo)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(SNAPSHOT, encoding="utf-8")
    return repo_dir / "snapshots" / SNAPSHOT


def write_bench_repos(configs: FamilyConfigs, root: Path, device: torch.device,
                      save_dtype: torch.dtype) -> BenchRepos:
    """Build the family on ``device``, save it in a hub cache under ``root``."""
    started = time.perf_counter()
    models = build_models(configs, device)
    hub = root / "hub"
    base, controlnet = hub_snapshot(hub, BASE_REPO), hub_snapshot(hub, CONTROLNET_REPO)
    for name in ("text_encoder", "unet", "vae"):
        models[name].to(save_dtype).save_pretrained(base / name, safe_serialization=True)
    models["controlnet"].to(save_dtype).save_pretrained(controlnet, safe_serialization=True)
    del models
    _write_tokenizer(base / "tokenizer")
    _write_json(base / "scheduler" / "scheduler_config.json", DPM_SOLVER_CONFIG)
    _write_json(base / "model_index.json", MODEL_INDEX)
    logger.info("built and saved %s in %.1f s", configs.name, time.perf_counter() - started)
    return BenchRepos(hub_cache=hub, base_folder=base, controlnet_folder=controlnet)
