"""The built-in offline demo set: its manifest, every job kind on it, and its build cache."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
from PIL import Image

from engine.demo.build import (
    BASE_ID,
    DEMO_MANIFEST_NAME,
    DEMO_VERSION,
    MARKER_NAME,
    build_demo,
    demo_settings,
    is_complete,
)
from engine.requests import ControlNetRequest, ControlSpec, LoraWeight, Txt2ImgRequest
from engine.settings import DEFAULT_MANIFEST, EngineSettings
from engine.store.manifest import ModelKind, load_manifest
from tests.support.helpers import run, sample_image

PROMPT = "雾蒙蒙的日出在湖面上"
DEMO_SIDE = 256
FAST = dict(model=BASE_ID, prompt=PROMPT, steps=2, seed=7)


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    return build_demo(tmp_path_factory.mktemp("demo") / "set")


@pytest.fixture(scope="module")
def demo_engine(demo):
    from engine.generate.engine import Engine

    return Engine(demo_settings(demo, EngineSettings(device="cpu", precision="fp32")))


def _pixels(result) -> np.ndarray:
    return np.asarray(result.images[0].image, dtype=np.int16)


@pytest.mark.engine
def test_demo_manifest_validates_and_lists_the_set(demo):
    assert demo.manifest_path.name == DEMO_MANIFEST_NAME
    manifest = load_manifest(demo.manifest_path)
    (base,) = manifest.of_kind(ModelKind.BASE)
    controlnets = manifest.for_base(base.id, ModelKind.CONTROLNET)
    loras = manifest.for_base(base.id, ModelKind.LORA)
    assert base.id == demo.base_id == "demo-base"
    assert (base.default_size.width, base.default_size.height) == (DEMO_SIDE, DEMO_SIDE)
    assert sorted(c.control_type for c in controlnets) == ["canny", "depth"]
    assert len(loras) == 3 and len({lora.repo for lora in loras}) == 3
    annotators = manifest.of_kind(ModelKind.ANNOTATOR)  # the ids the preprocessors ask for
    assert {e.id for e in annotators} == {
        e.id for e in load_manifest(DEFAULT_MANIFEST).of_kind(ModelKind.ANNOTATOR)}
    for entry in manifest.models:
        assert entry.license == "apache-2.0"
        assert "噪声" in entry.description.zh and "noise" in entry.description.en
        assert entry.kind in (ModelKind.ANNOTATOR, ModelKind.PREVIEW_DECODER) or (
            entry.id.startswith("demo-") and entry.examples)
    assert [e.id for e in manifest.of_kind(ModelKind.PREVIEW_DECODER)] == ["taesd"]


@pytest.mark.engine
def test_demo_settings_point_at_the_set_offline(demo):
    base = EngineSettings(device="cpu", precision="fp32")
    settings = demo_settings(demo, base)
    assert (settings.hub_cache_dir, settings.manifest_path) == (demo.hub_cache,
                                                                demo.manifest_path)
    assert settings.offline and settings.device == "cpu" and settings.precision == "fp32"
    assert base.hub_cache_dir is None and not base.offline


@pytest.mark.engine
def test_txt2img_at_the_default_size(demo_engine):
    result = run(demo_engine, Txt2ImgRequest(**FAST))
    assert result.images[0].image.size == (DEMO_SIDE, DEMO_SIDE)
    assert _pixels(result).std() > 0


@pytest.mark.engine
@pytest.mark.parametrize("control_type", ["canny", "depth"])
def test_controlnet_job(demo_engine, control_type):
    control = ControlSpec(model=f"demo-controlnet-{control_type}", control_type=control_type,
                          image=sample_image(DEMO_SIDE, DEMO_SIDE))
    result = run(demo_engine, ControlNetRequest(**FAST, control=control))
    assert result.images[0].image.size == (DEMO_SIDE, DEMO_SIDE)
    assert result.control_map.size == (DEMO_SIDE, DEMO_SIDE)
    assert not result.warnings


@pytest.mark.engine
def test_lora_changes_the_image(demo_engine):
    plain = run(demo_engine, Txt2ImgRequest(**FAST))
    styled = run(demo_engine, Txt2ImgRequest(**FAST, loras=(LoraWeight("demo-lora-ink"),)))
    demo_engine.unload_loras()
    assert not styled.warnings
    # Random weights: the change is small, but any change shows the LoRA was applied.
    assert np.abs(_pixels(plain) - _pixels(styled)).max() > 0


@pytest.mark.engine
def test_a_complete_set_is_not_rebuilt(demo):
    weights = next(demo.hub_cache.glob("models--huajing-demo--tiny-base/snapshots/*/unet/*.bin"))
    before = weights.stat().st_mtime_ns
    again = build_demo(demo.root)
    assert again == demo
    assert weights.stat().st_mtime_ns == before


def test_marker_of_another_version_is_not_complete(tmp_path):
    (tmp_path / MARKER_NAME).write_text(f"{DEMO_VERSION + 1}\n", encoding="utf-8")
    assert not is_complete(tmp_path)
    (tmp_path / MARKER_NAME).write_text(f"{DEMO_VERSION}\n", encoding="utf-8")
    assert is_complete(tmp_path)


@pytest.mark.engine
def test_a_set_without_its_marker_is_rebuilt(demo, tmp_path):
    # A copy, so the shared set stays as the engine tests found it.
    root = tmp_path / "set"
    shutil.copytree(demo.root, root)
    (root / MARKER_NAME).unlink()
    unet = next((root / "hub").glob("models--huajing-demo--tiny-base/snapshots/*/unet"))
    shutil.rmtree(unet)  # as if a build had crashed half way
    (root / ".building-crashed").mkdir()

    rebuilt = build_demo(root)

    assert is_complete(root) and rebuilt.root == root
    assert any(unet.glob("*.bin"))
    assert not list(root.glob(".building-*"))
    ids = [entry.id for entry in load_manifest(rebuilt.manifest_path).models]
    # The base and its LoRAs, ControlNets... (6), the 5 annotators, the TAESD preview decoder.
    assert len(ids) == 6 + 5 + 1 and "taesd" in ids


@pytest.mark.engine
def test_lora_styles_have_preview_pictures(demo):
    from engine.service import ImageService
    from engine.store.manifest import load_manifest

    service = ImageService(demo_settings(demo, EngineSettings(device="cpu")),
                           load_manifest(demo.manifest_path))
    previews = [service.lora_preview(choice.name) for choice in service.lora_choices()]
    assert len(previews) == 3 and all(p is not None and p.is_file() for p in previews)
    sizes = {Image.open(p).size for p in previews}
    assert sizes == {(192, 128)}
