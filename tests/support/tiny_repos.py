"""The tiny random-weight replicas of the real repos that engine tests load, and the
engine settings that point at them (built once per session by ``tests/conftest.py``)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

TINY_PAI_SIZE = 64  # the tiny PAI base's latent 8 x the VAE's factor 8


@dataclass(frozen=True)
class TinyRepos:
    root: Path
    hub_cache: Path
    models_dir: Path
    pai_base: Path
    taiyi_base: Path
    xlarge_base: Path
    diffusers_lora: Path
    kohya_lora: Path
    foreign_lora: Path
    annotators: Path  # the tiny lllyasviel/Annotators replica, every detector's files
    # manifest id -> the hub cache file of LCM-LoRA, TCD-LoRA and Hyper-SD15 in their formats
    few_step_loras: dict[str, Path]

    @property
    def lora_dir(self) -> Path:
        return self.models_dir / "lora"


def build_tiny_repos(root: Path) -> TinyRepos:
    from engine.demo import tiny_models as tiny
    from engine.demo.tiny_annotators import (
        place_annotators_in_hub_cache,
        write_tiny_annotators_repo,
    )
    from engine.settings import DEFAULT_MANIFEST
    from engine.store.manifest import ModelKind, load_manifest
    from tests.support.few_step_loras import place_few_step_loras

    hub = root / "hub"
    made = root / "made"
    pai = tiny.write_base_model(made / "pai")
    taiyi = tiny.write_base_model(made / "taiyi", tiny.TinyBaseSpec(
        text_encoder="bert", context_length=512, seed=3))
    xlarge = tiny.write_base_model(made / "xlarge", tiny.TinyBaseSpec(sample_size=96, seed=4))
    canny = tiny.write_controlnet(made / "canny", pai, seed=11)
    depth = tiny.write_controlnet(made / "depth", pai, seed=12)
    dpt = tiny.write_depth_model(made / "dpt")
    poem = made / "poem"
    tiny.write_pai_legacy_lora(poem / "pytorch_lora_weights.bin", pai, seed=30)
    style = made / "25d"
    tiny.write_pai_legacy_lora(style / "pytorch_lora_weights.bin", pai, seed=33)
    for folder, repo in [
        (pai, "alibaba-pai/pai-diffusion-artist-large-zh"),
        (pai, "alibaba-pai/pai-diffusion-general-large-zh"),
        (taiyi, "IDEA-CCNL/Taiyi-Stable-Diffusion-1B-Chinese-v0.1"),
        (xlarge, "alibaba-pai/pai-diffusion-artist-xlarge-zh"),
        (canny, "alibaba-pai/pai-diffusion-artist-large-zh-controlnet-canny"),
        (depth, "alibaba-pai/pai-diffusion-artist-large-zh-controlnet-depth"),
        (dpt, "Intel/dpt-large"),
        (poem, "alibaba-pai/pai-diffusion-artist-large-zh-lora-poem"),
        (style, "alibaba-pai/pai-diffusion-artist-large-zh-lora-25d"),
    ]:
        tiny.place_in_hub_cache(folder, repo, hub)
    annotators = write_tiny_annotators_repo(made / "annotators")
    place_annotators_in_hub_cache(
        annotators, load_manifest(DEFAULT_MANIFEST).of_kind(ModelKind.ANNOTATOR), hub)
    lora_dir = root / "models" / "lora"
    return TinyRepos(
        root=root, hub_cache=hub, models_dir=root / "models", pai_base=pai, taiyi_base=taiyi,
        xlarge_base=xlarge,
        diffusers_lora=tiny.write_diffusers_lora(lora_dir / "ink.safetensors", pai),
        kohya_lora=tiny.write_kohya_lora(lora_dir / "kohya-style.safetensors", pai),
        foreign_lora=tiny.write_kohya_lora(lora_dir / "sd2-style.safetensors", pai,
                                           in_features_override=77),
        annotators=annotators, few_step_loras=place_few_step_loras(made, pai, hub))


def make_settings(repos: TinyRepos, **overrides):
    from engine.settings import EngineSettings

    values = dict(models_dir=repos.models_dir, hub_cache_dir=repos.hub_cache, offline=True,
                  device="cpu", precision="fp32")
    values.update(overrides)
    return EngineSettings(**values)
