"""Tiny random-weight replicas of the real model repos.

They have the same classes, file layout and quirks as the hub repos (BERT tokenizer with a
CLIP text encoder, a 32-token context, pickled ``.bin`` weights, a safety checker folder that
must never be loaded, LoRAs in PAI's legacy attention-processor format), so the real loading
code runs over them. The offline ``--demo`` model set is built from these, and so are the test
fixtures. The weights are random: the images are noise.
"""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from engine.store.model_store import repo_folder_name
from engine.store.single_file import PAI_VOCAB_SIZE

if TYPE_CHECKING:
    from transformers import PreTrainedModel

logger = logging.getLogger(__name__)

TINY_TEXT_WIDTH = 32
BERT_SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
# bert-base-chinese has 21128 entries; the text encoder's embedding table is that size.
CJK_FIRST, CJK_LAST = 0x4E00, 0x9FA5
CHINESE_PUNCTUATION = "，。！？、；：“”‘’（）《》【】…—"

DPM_SOLVER_CONFIG = {
    "_class_name": "DPMSolverMultistepScheduler",
    "algorithm_type": "dpmsolver++",
    "solver_order": 2,
    "beta_schedule": "scaled_linear",
    "beta_start": 0.00085,
    "beta_end": 0.012,
    "prediction_type": "epsilon",
    "num_train_timesteps": 1000,
    "trained_betas": None,
    "thresholding": False,
    "lower_order_final": True,
    "steps_offset": 1,
}


@dataclass(frozen=True)
class TinyBaseSpec:
    """What varies between the replicas of the real base repos."""

    text_encoder: str = "clip"  # "clip" for PAI, "bert" for Taiyi
    sample_size: int = 8  # latent size; the default image is sample_size * 8 pixels
    context_length: int = 32
    cross_attention_dim: int = TINY_TEXT_WIDTH
    with_safety_checker: bool = True
    seed: int = 0


def chinese_vocab() -> list[str]:
    """A bert-base-chinese-like vocabulary: specials, ASCII, punctuation and CJK ideographs."""
    ascii_tokens = [chr(c) for c in range(33, 127)]
    cjk = [chr(c) for c in range(CJK_FIRST, CJK_LAST + 1)]
    return BERT_SPECIAL_TOKENS + ascii_tokens + list(CHINESE_PUNCTUATION) + cjk


def _write_json(path: Path, data: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2, ensure_ascii=False), encoding="utf-8")


def _randomise(module: torch.nn.Module, seed: int, scale: float = 0.2) -> None:
    """Give every parameter random values, so that no layer starts at zero."""
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in module.parameters():
            parameter.copy_(torch.randn(parameter.shape, generator=generator) * scale)


def _save_pickled(module: torch.nn.Module, folder: Path, weights_name: str, config: dict,
                  key_prefix: str = "") -> None:
    """Save as the PAI repos do: a config.json and a pickled state dict (no safetensors)."""
    folder.mkdir(parents=True, exist_ok=True)
    _write_json(folder / "config.json", config)
    state = {key_prefix + k: v.contiguous() for k, v in module.state_dict().items()}
    torch.save(state, folder / weights_name)


def _write_tokenizer(folder: Path, context_length: int) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(chinese_vocab()) + "\n", encoding="utf-8")
    _write_json(folder / "tokenizer_config.json", {
        "tokenizer_class": "BertTokenizer",
        "do_lower_case": True,
        "model_max_length": context_length,
        "tokenize_chinese_chars": True,
        "strip_accents": None,
    })
    _write_json(folder / "special_tokens_map.json", {
        "unk_token": "[UNK]", "sep_token": "[SEP]", "pad_token": "[PAD]",
        "cls_token": "[CLS]", "mask_token": "[MASK]",
    })


def _text_encoder(spec: TinyBaseSpec) -> tuple[PreTrainedModel, str]:
    from transformers import BertConfig, BertModel, CLIPTextConfig, CLIPTextModel

    if spec.text_encoder == "clip":
        config = CLIPTextConfig(
            vocab_size=PAI_VOCAB_SIZE, hidden_size=spec.cross_attention_dim, intermediate_size=37,
            num_hidden_layers=2, num_attention_heads=4, projection_dim=spec.cross_attention_dim,
            max_position_embeddings=spec.context_length, pad_token_id=0, bos_token_id=2,
            eos_token_id=3,
        )
        return CLIPTextModel(config), "CLIPTextModel"
    bert_config = BertConfig(
        vocab_size=PAI_VOCAB_SIZE, hidden_size=spec.cross_attention_dim, intermediate_size=37,
        num_hidden_layers=2, num_attention_heads=4, max_position_embeddings=spec.context_length,
    )
    return BertModel(bert_config, add_pooling_layer=False), "BertModel"


def _unet(spec: TinyBaseSpec):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel(
        sample_size=spec.sample_size, in_channels=4, out_channels=4, layers_per_block=1,
        block_out_channels=(32, 64), down_block_types=("CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=spec.cross_attention_dim, attention_head_dim=8, norm_num_groups=32,
    )


def _vae():
    from diffusers import AutoencoderKL

    # Four blocks give the downscale factor 8 of the real VAE, which ControlNet needs.
    return AutoencoderKL(
        block_out_channels=(8, 16, 16, 16), layers_per_block=1, latent_channels=4,
        norm_num_groups=8, down_block_types=("DownEncoderBlock2D",) * 4,
        up_block_types=("UpDecoderBlock2D",) * 4, sample_size=spec_image_size(8),
    )


def spec_image_size(sample_size: int) -> int:
    return sample_size * 8


def _write_safety_checker(root: Path, seed: int) -> None:
    from diffusers.pipelines.stable_diffusion.safety_checker import StableDiffusionSafetyChecker
    from transformers import CLIPConfig

    config = CLIPConfig(
        text_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
                     "num_attention_heads": 2, "vocab_size": 99},
        vision_config={"hidden_size": 16, "intermediate_size": 16, "num_hidden_layers": 1,
                       "num_attention_heads": 2, "image_size": 32, "patch_size": 16},
        projection_dim=16,
    )
    checker = StableDiffusionSafetyChecker(config)
    _randomise(checker, seed)
    _save_pickled(checker, root / "safety_checker", "pytorch_model.bin", config.to_dict())
    _write_json(root / "feature_extractor" / "preprocessor_config.json", {
        "image_processor_type": "CLIPImageProcessor", "crop_size": {"height": 32, "width": 32},
        "do_center_crop": True, "do_normalize": True, "do_resize": True,
        "size": {"shortest_edge": 32}, "image_mean": [0.5, 0.5, 0.5], "image_std": [0.5, 0.5, 0.5],
    })


def write_base_model(root: Path, spec: TinyBaseSpec = TinyBaseSpec()) -> Path:
    """A PAI-style (or Taiyi-style) base repo: diffusers layout, pickled weights."""
    root = Path(root)
    torch.manual_seed(spec.seed)
    text_encoder, text_encoder_class = _text_encoder(spec)
    unet, vae = _unet(spec), _vae()
    _randomise(unet, spec.seed + 1, scale=0.05)

    # transformers 4 (which wrote the real files) nested CLIP's weights under "text_model.".
    prefix = "text_model." if spec.text_encoder == "clip" else ""
    _save_pickled(text_encoder, root / "text_encoder", "pytorch_model.bin",
                  text_encoder.config.to_dict(), key_prefix=prefix)
    _save_pickled(unet, root / "unet", "diffusion_pytorch_model.bin", dict(unet.config))
    _save_pickled(vae, root / "vae", "diffusion_pytorch_model.bin", dict(vae.config))
    _write_tokenizer(root / "tokenizer", spec.context_length)
    _write_json(root / "scheduler" / "scheduler_config.json", DPM_SOLVER_CONFIG)

    index = {
        "_class_name": "StableDiffusionPipeline",
        "_diffusers_version": "0.14.0",
        "scheduler": ["diffusers", "DPMSolverMultistepScheduler"],
        "text_encoder": ["transformers", text_encoder_class],
        "tokenizer": ["transformers", "BertTokenizer"],
        "unet": ["diffusers", "UNet2DConditionModel"],
        "vae": ["diffusers", "AutoencoderKL"],
        "safety_checker": ["stable_diffusion", "StableDiffusionSafetyChecker"],
        "feature_extractor": ["transformers", "CLIPImageProcessor"],
        "requires_safety_checker": True,
    }
    _write_json(root / "model_index.json", index)
    if spec.with_safety_checker:
        _write_safety_checker(root, spec.seed + 2)
    return root


def load_tiny_unet(base: Path):
    from diffusers import UNet2DConditionModel

    return UNet2DConditionModel.from_pretrained(Path(base) / "unet", use_safetensors=False)


def write_controlnet(root: Path, base: Path, seed: int = 10) -> Path:
    """A ControlNet for ``base``, with random (not zero) output convolutions."""
    from diffusers import ControlNetModel

    controlnet = ControlNetModel.from_unet(
        load_tiny_unet(base), conditioning_embedding_out_channels=(8, 16, 16, 32))
    # from_unet zero-initialises the output convolutions: the control image would change nothing.
    _randomise(controlnet, seed, scale=0.05)
    _save_pickled(controlnet, Path(root), "diffusion_pytorch_model.bin", dict(controlnet.config))
    return Path(root)


def place_in_hub_cache(folder: Path, repo_id: str, cache_dir: Path,
                       commit: str = "0" * 40) -> Path:
    """Copy a repo folder into huggingface_hub's cache layout, as a download would leave it.

    ``models--ORG--NAME/refs/main`` holds the commit hash and ``snapshots/<hash>/`` the files,
    so ``from_pretrained(repo_id)`` and ``snapshot_download(..., local_files_only=True)`` find it.
    """
    repo_dir = Path(cache_dir) / repo_folder_name(repo_id)
    snapshot = repo_dir / "snapshots" / commit
    if snapshot.exists():
        shutil.rmtree(snapshot)
    shutil.copytree(folder, snapshot)
    (repo_dir / "refs").mkdir(parents=True, exist_ok=True)
    (repo_dir / "refs" / "main").write_text(commit, encoding="utf-8")
    return snapshot


def write_depth_model(root: Path, seed: int = 20) -> Path:
    """A tiny ``Intel/dpt-large`` look-alike: DPTForDepthEstimation with its image processor."""
    from transformers import DPTConfig, DPTForDepthEstimation, DPTImageProcessor

    config = DPTConfig(
        hidden_size=32, num_hidden_layers=4, num_attention_heads=4, intermediate_size=37,
        image_size=64, patch_size=16, backbone_out_indices=[0, 1, 2, 3],
        neck_hidden_sizes=[8, 16, 32, 32], fusion_hidden_size=16, reassemble_factors=[4, 2, 1, 0.5],
    )
    torch.manual_seed(seed)
    model = DPTForDepthEstimation(config)
    _randomise(model, seed, scale=0.1)
    root = Path(root)
    model.save_pretrained(root)
    processor = DPTImageProcessor(size={"height": 64, "width": 64}, keep_aspect_ratio=False)
    processor.save_pretrained(root)
    return root


def _attention_linears(unet):
    """(module path, projection name, Linear) for every attention projection in the UNet."""
    for processor in unet.attn_processors:
        path = processor.rsplit(".processor", 1)[0]
        attention = unet.get_submodule(path)
        for name, linear in (("to_q", attention.to_q), ("to_k", attention.to_k),
                             ("to_v", attention.to_v), ("to_out", attention.to_out[0])):
            yield path, name, linear


def _pair(generator, rank: int, linear, scale: float) -> tuple[torch.Tensor, torch.Tensor]:
    down = torch.randn(rank, linear.in_features, generator=generator) * scale
    up = torch.randn(linear.out_features, rank, generator=generator) * scale
    return down, up


def write_pai_legacy_lora(path: Path, base: Path, rank: int = 4, seed: int = 30,
                          scale: float = 0.5) -> Path:
    """PAI's format: a pickled ``unet.save_attn_procs()`` dict, UNet only."""
    generator = torch.Generator().manual_seed(seed)
    state = {}
    for module_path, name, linear in _attention_linears(load_tiny_unet(base)):
        down, up = _pair(generator, rank, linear, scale)
        state[f"{module_path}.processor.{name}_lora.down.weight"] = down
        state[f"{module_path}.processor.{name}_lora.up.weight"] = up
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    return Path(path)


def write_diffusers_lora(path: Path, base: Path, rank: int = 4, seed: int = 31,
                         scale: float = 0.5) -> Path:
    """The diffusers/peft format: ``unet.<module>.lora_A/B.weight`` in safetensors."""
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    state = {}
    for module_path, name, linear in _attention_linears(load_tiny_unet(base)):
        target = f"unet.{module_path}.{'to_out.0' if name == 'to_out' else name}"
        down, up = _pair(generator, rank, linear, scale)
        state[f"{target}.lora_A.weight"], state[f"{target}.lora_B.weight"] = down, up
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return Path(path)


def write_kohya_lora(path: Path, base: Path, rank: int = 4, seed: int = 32, scale: float = 0.5,
                     text_encoder_layers: int = 2, in_features_override: int | None = None) -> Path:
    """kohya's format: ``lora_unet_``/``lora_te_`` keys, ``lora_down``/``lora_up`` and ``alpha``.

    ``in_features_override`` makes a LoRA for another architecture (its shapes do not fit).
    """
    from safetensors.torch import save_file

    generator = torch.Generator().manual_seed(seed)
    state: dict[str, torch.Tensor] = {}

    def add(key: str, linear) -> None:
        down, up = _pair(generator, rank, linear, scale)
        if in_features_override:
            down = torch.randn(rank, in_features_override, generator=generator) * scale
        state[f"{key}.lora_down.weight"], state[f"{key}.lora_up.weight"] = down, up
        state[f"{key}.alpha"] = torch.tensor(float(rank))

    for module_path, name, linear in _attention_linears(load_tiny_unet(base)):
        suffix = "to_out_0" if name == "to_out" else name
        add("lora_unet_" + module_path.replace(".", "_") + "_" + suffix, linear)
    width = TINY_TEXT_WIDTH
    for layer in range(text_encoder_layers):
        for projection in ("q_proj", "k_proj", "v_proj", "out_proj"):
            add(f"lora_te_text_model_encoder_layers_{layer}_self_attn_{projection}",
                torch.nn.Linear(width, width))
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    save_file(state, str(path))
    return Path(path)


def write_taesd(root: Path, seed: int = 40) -> Path:
    """A tiny ``madebyollin/taesd`` look-alike: diffusers' AutoencoderTiny with its files as
    that repo has them (config.json, diffusion_pytorch_model.safetensors), narrow channels."""
    from diffusers import AutoencoderTiny

    torch.manual_seed(seed)
    taesd: Any = AutoencoderTiny(encoder_block_out_channels=(8, 8, 8, 8),
                                 decoder_block_out_channels=(8, 8, 8, 8),
                                 num_encoder_blocks=(1, 1, 1, 1),
                                 num_decoder_blocks=(1, 1, 1, 1))
    _randomise(taesd, seed, scale=0.3)
    taesd.save_pretrained(Path(root), safe_serialization=True)
    return Path(root)
