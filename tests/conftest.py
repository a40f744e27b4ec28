"""Shared fixtures: tiny replicas of every real repo, in a hub cache, and an offline engine.

The hub is never reached: HF_HUB_OFFLINE is set before huggingface_hub is imported.
"""

from __future__ import annotations

import os

os.environ["HF_HUB_OFFLINE"] = "1"

from dataclasses import dataclass
from pathlib import Path

import pytest

TINY_PAI_SIZE = 64  # the tiny PAI base's latent 8 x the VAE's factor 8
# Tests that use one of these fixtures (directly or through another fixture) load the tiny
# torch/diffusers models: they get the `engine` marker here, so none can be left unmarked.
ENGINE_FIXTURES = frozenset({"tiny_repos", "engine"})


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by marker
def pytest_collection_modifyitems(config, items) -> None:
    for item in items:
        if ENGINE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.engine)


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

    @property
    def lora_dir(self) -> Path:
        return self.models_dir / "lora"


def _build_tiny_repos(root: Path) -> TinyRepos:
    from engine.demo import tiny_models as tiny
    from engine.store.manifest import ModelKind, load_manifest
    from engine.settings import DEFAULT_MANIFEST
    from engine.demo.tiny_annotators import (
        place_annotators_in_hub_cache, write_tiny_annotators_repo,
    )

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
        annotators=annotators)


@pytest.fixture(scope="session")
def tiny_repos(tmp_path_factory) -> TinyRepos:
    return _build_tiny_repos(tmp_path_factory.mktemp("tiny"))


def make_settings(repos: TinyRepos, **overrides):
    from engine.settings import EngineSettings

    values = dict(models_dir=repos.models_dir, hub_cache_dir=repos.hub_cache, offline=True,
                  device="cpu", precision="fp32")
    values.update(overrides)
    return EngineSettings(**values)


@pytest.fixture(scope="session")
def engine(tiny_repos):
    """One engine for the session: models load once. Tests must leave it as they found it."""
    from engine.generate.engine import Engine

    return Engine(make_settings(tiny_repos))


@pytest.fixture
def hub_online(monkeypatch):
    """For tests that reach a local hub server: undo the offline switch above for them only.
    The client reads the constant at request time (``constants.is_offline_mode``), the
    environment only at import; a hang in a fault test should fail in 5 s, not 10."""
    from huggingface_hub import constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 5)
