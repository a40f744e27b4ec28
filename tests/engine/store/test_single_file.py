"""Single-file A1111/Civitai checkpoints in models/checkpoints: found, explained, and loaded
through diffusers' single-file loader with a downloaded base's configs, never the hub."""

from __future__ import annotations

import hashlib

import pytest
import torch
from safetensors.torch import save_file

from engine.errors import EngineError
from engine.generate.engine import Engine
from engine.service import ImageService
from engine.settings import DEFAULT_MANIFEST
from engine.store.catalog import LocalKind
from engine.store.manifest import load_manifest
from tests.support.helpers import pixels, run, txt2img
from tests.support.ldm_checkpoint import export_single_file
from tests.support.tiny_repos import make_settings


def _tiny_pai_pipe(tiny_repos):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(
        tiny_repos.pai_base, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False, use_safetensors=False)


@pytest.fixture(scope="module")
def pai_single_file(tiny_repos, tmp_path_factory):
    """The tiny PAI base written as one LDM-named fp32 file, as a Civitai download would be."""
    path = tmp_path_factory.mktemp("single") / "水墨风格-v2.safetensors"
    return export_single_file(_tiny_pai_pipe(tiny_repos), path, dtype=torch.float32)


def _checkpoints(tmp_path):
    folder = tmp_path / "models" / "checkpoints"
    folder.mkdir(parents=True)
    return folder


def _header_only_file(path, clip_vocab: int = 21128, extra: dict | None = None):
    """A checkpoint with just the tensors the architecture check reads."""
    tensors = {
        "model.diffusion_model.input_blocks.0.0.weight": torch.zeros(32, 4, 3, 3),
        "model.diffusion_model.input_blocks.1.1.transformer_blocks.0.attn2.to_k.weight":
            torch.zeros(32, 32),
        "cond_stage_model.transformer.text_model.embeddings.token_embedding.weight":
            torch.zeros(clip_vocab, 2, dtype=torch.float16),
    }
    save_file({**tensors, **(extra or {})}, str(path))
    return path


def test_single_file_makes_the_same_image_as_the_base_it_was_exported_from(
        tiny_repos, pai_single_file, tmp_path):
    target = _checkpoints(tmp_path) / pai_single_file.name
    target.write_bytes(pai_single_file.read_bytes())
    engine = Engine(make_settings(tiny_repos, models_dir=tmp_path / "models"))
    from_file = run(engine, txt2img(model=str(target), seed=7))
    from_folder = run(engine, txt2img(model="pai-artist-large", seed=7))
    assert (pixels(from_file) == pixels(from_folder)).all()
    # A1111 and Civitai name a single file by the SHA-256 of the whole file.
    expected = hashlib.sha256(target.read_bytes()).hexdigest()[:10]
    assert from_file.images[0].parameters["model_hash"] == expected


def test_models_folder_lists_every_kind_with_the_reason_it_cannot_load(
        tiny_repos, pai_single_file, tmp_path):
    folder = _checkpoints(tmp_path)
    good = folder / "styles" / "mine.safetensors"  # sub-folders are scanned too
    good.parent.mkdir()
    good.write_bytes(pai_single_file.read_bytes())
    _header_only_file(folder / "english-sd15.safetensors", clip_vocab=49408)
    _header_only_file(folder / "big.safetensors",
                      extra={"conditioner.embedders.0.transformer.x": torch.zeros(1)})
    (folder / "half.safetensors").write_bytes(b"\x10\x00\x00\x00")
    (folder / "old.ckpt").write_bytes(b"pickle")
    diffusers_folder = folder / "my-diffusers"
    (diffusers_folder / "unet").mkdir(parents=True)
    (diffusers_folder / "model_index.json").write_text("{}")
    (diffusers_folder / "unet" / "diffusion_pytorch_model.safetensors").write_bytes(b"x")
    (tmp_path / "models" / "lora").mkdir()
    (tmp_path / "models" / "lora" / "ink.safetensors").write_bytes(
        tiny_repos.diffusers_lora.read_bytes())
    service = ImageService(make_settings(tiny_repos, models_dir=tmp_path / "models"),
                           load_manifest(DEFAULT_MANIFEST))

    found = {s.path.name: s for s in service.local_model_statuses()}
    assert found["mine.safetensors"].problem is None
    assert found["mine.safetensors"].kind is LocalKind.SINGLE_FILE
    assert found["english-sd15.safetensors"].problem == "checkpoint_needs_config"
    assert found["big.safetensors"].problem == "checkpoint_unsupported"
    assert found["big.safetensors"].problem_params["family"] == "SDXL"
    assert found["half.safetensors"].problem == "checkpoint_unreadable"
    assert found["old.ckpt"].problem == "checkpoint_pickle"
    assert found["my-diffusers"].kind is LocalKind.FOLDER
    assert "diffusion_pytorch_model.safetensors" not in found  # part of the folder
    assert found["ink.safetensors"].kind is LocalKind.LORA
    pickable = {p.name for p in service.local_models()}
    assert {"mine.safetensors", "my-diffusers"} <= pickable and "old.ckpt" not in pickable


def test_a_pai_file_without_a_downloaded_base_names_the_base_to_download(
        tiny_repos, pai_single_file, tmp_path):
    path = _checkpoints(tmp_path) / "mine.safetensors"
    path.write_bytes(pai_single_file.read_bytes())
    settings = make_settings(tiny_repos, models_dir=tmp_path / "models",
                             hub_cache_dir=tmp_path / "empty-hub")
    service = ImageService(settings, load_manifest(DEFAULT_MANIFEST))
    [status] = [s for s in service.local_model_statuses() if s.path == path]
    assert status.problem == "checkpoint_needs_pai_base"
    assert status.problem_params["base"] == "pai-artist-large"
    with pytest.raises(EngineError) as caught:
        run(Engine(settings), txt2img(model=str(path)))
    assert caught.value.code == "checkpoint_needs_pai_base"


def test_a_broken_single_file_fails_cleanly_and_the_engine_goes_on(engine, tiny_repos):
    path = tiny_repos.models_dir / "checkpoints" / "cut-off.safetensors"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"\x20\x00\x00\x00\x00\x00\x00\x00{\"a\": 1")
    try:
        with pytest.raises(EngineError) as caught:
            run(engine, txt2img(model=str(path)))
        assert caught.value.code == "checkpoint_unreadable"
        assert run(engine, txt2img()).images
    finally:
        path.unlink()


def test_the_weights_come_from_the_file_and_a_missing_vae_from_the_base(
        tiny_repos, tmp_path):
    pipe = _tiny_pai_pipe(tiny_repos)
    with torch.no_grad():
        for parameter in pipe.unet.parameters():
            parameter.mul_(1.5)  # a fine-tune: same architecture, other weights
    folder = _checkpoints(tmp_path)
    export_single_file(pipe, folder / "tuned.safetensors", dtype=torch.float32)
    export_single_file(_tiny_pai_pipe(tiny_repos), folder / "no-vae.safetensors",
                       dtype=torch.float32, include_vae=False)
    engine = Engine(make_settings(tiny_repos, models_dir=tmp_path / "models"))
    base = pixels(run(engine, txt2img(model="pai-artist-large", seed=3)))
    tuned = pixels(run(engine, txt2img(model=str(folder / "tuned.safetensors"), seed=3)))
    no_vae = pixels(run(engine, txt2img(model=str(folder / "no-vae.safetensors"), seed=3)))
    assert (tuned != base).any()
    assert (no_vae == base).all()


def test_single_files_outside_the_checkpoints_folder_only_from_the_command_line(
        tiny_repos, pai_single_file):
    outside = str(pai_single_file)  # in a temporary folder, not models/checkpoints
    with pytest.raises(EngineError) as caught:
        run(Engine(make_settings(tiny_repos)), txt2img(model=outside))
    assert caught.value.code == "unknown_model"
    command_line = Engine(make_settings(tiny_repos, allow_file_paths=True))
    assert run(command_line, txt2img(model=outside)).images
