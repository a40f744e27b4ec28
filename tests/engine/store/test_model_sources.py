"""Where models may come from, over the API and in the engine: manifest ids, hub ids in the
cache, and what the checkpoints folder lists, nothing else on disk; damaged weights are a
clear ``model_load_failed``, never a 500; listings show no server paths."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes import ApiOptions, install
from engine.demo import tiny_models as tiny
from engine.demo.build import BASE_REPO, build_demo, demo_manifest_yaml, demo_settings
from engine.service import ImageService
from engine.settings import EngineSettings
from engine.store.manifest import ModelKind, parse_manifest
from locales import error_text

SMALL = {"prompt": "山", "steps": 2, "width": 64, "height": 64}
CORRUPT_REPO = "someone/corrupt-pickle"


@dataclasses.dataclass(frozen=True)
class World:
    service: ImageService
    client: TestClient
    root: Path
    outside_folder: Path  # a complete diffusers folder, but not in models/checkpoints


def _safetensors_copy(source: Path, target: Path) -> Path:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        source, safety_checker=None, feature_extractor=None, requires_safety_checker=False)
    pipe.save_pretrained(target, safe_serialization=True)
    return target


@pytest.fixture(scope="module")
def world(tmp_path_factory) -> World:
    root = tmp_path_factory.mktemp("sources")
    demo = build_demo(root / "demo")
    base = next((demo.hub_cache / ("models--" + BASE_REPO.replace("/", "--"))).glob(
        "snapshots/*"))
    checkpoints = root / "models" / "checkpoints"
    _safetensors_copy(base, checkpoints / "mine")
    outside = _safetensors_copy(base, root / "elsewhere" / "model")
    (checkpoints / "linked").symlink_to(outside, target_is_directory=True)
    (root / "elsewhere" / "file.safetensors").write_bytes(
        (checkpoints / "mine" / "unet" / "diffusion_pytorch_model.safetensors").read_bytes())
    (checkpoints / "linked.safetensors").symlink_to(root / "elsewhere" / "file.safetensors")
    corrupt = tiny.place_in_hub_cache(base, CORRUPT_REPO, demo.hub_cache)
    (corrupt / "text_encoder" / "pytorch_model.bin").unlink()
    (corrupt / "text_encoder" / "pytorch_model.bin").write_bytes(os.urandom(4096))
    settings = demo_settings(demo, EngineSettings(device="cpu", precision="fp32",
                                                  models_dir=root / "models"))
    service = ImageService(settings, parse_manifest(demo_manifest_yaml()),
                           active_model=demo.base_id)
    service.start(preload=False)
    app = FastAPI()
    install(app, service, ApiOptions())
    return World(service, TestClient(app), root, outside)


def _refusals(world: World) -> list[str]:
    home_folder = Path("~/x").expanduser()
    return ["/etc", "/etc/passwd", str(world.outside_folder), str(world.root / "no-such"),
            "../x", "../models/checkpoints/mine", "~/x", "~", str(home_folder), "..",
            "linked", str(world.root / "models" / "checkpoints" / "linked"),
            "linked.safetensors", str(world.outside_folder / "unet"),
            str(world.root / "elsewhere" / "file.safetensors")]


def _answer(response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body.get("error"), body.get("detail")


@pytest.mark.engine
def test_paths_outside_the_checkpoints_folder_all_get_the_same_answer(world):
    for reference in _refusals(world):
        response = world.client.post("/sdapi/v1/options",
                                     json={"sd_model_checkpoint": reference})
        # The same code and text, whether the path exists or not: no existence oracle.
        assert _answer(response) == (404, "unknown_model", error_text(
            "zh-CN", "unknown_model", {"name": reference})), reference
    assert world.service.active_model == "demo-base"


@pytest.mark.engine
def test_override_settings_and_v2_jobs_refuse_the_same_paths(world):
    for reference in (str(world.outside_folder), "/etc", "linked", "~/x"):
        body = {**SMALL, "override_settings": {"sd_model_checkpoint": reference}}
        response = world.client.post("/sdapi/v1/txt2img", json=body)
        assert _answer(response)[:2] == (404, "unknown_model"), reference
        created = world.client.post("/sdapi/v2/jobs", json=body)
        if created.status_code == 202:  # refused when it runs, not when queued
            job = created.json()
            status = world.client.get(f"/sdapi/v2/jobs/{job['id']}",
                                      headers={"X-Job-Token": job["token"]})
            while status.json()["state"] in ("queued", "running"):
                status = world.client.get(f"/sdapi/v2/jobs/{job['id']}",
                                          headers={"X-Job-Token": job["token"]})
            assert status.json()["error"] == "unknown_model", reference
        else:
            assert _answer(created)[:2] == (404, "unknown_model"), reference


@pytest.mark.engine
def test_own_models_are_listed_by_their_name_in_the_folder_and_selectable(world):
    response = world.client.get("/sdapi/v1/sd-models")
    assert str(world.root) not in response.text  # neither the models folder nor the cache
    own = [m for m in response.json() if m["model_name"] == "mine"]
    assert [(m["title"], m["filename"]) for m in own] == [("mine", "checkpoints/mine")]
    assert {m["title"] for m in response.json()} == {"demo-base", "mine"}  # no links out
    try:
        switched = world.client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "mine"})
        assert switched.json() == {"sd_model_checkpoint": "mine"}
        assert world.client.post("/sdapi/v1/reload-checkpoint").status_code == 200
        generated = world.client.post("/sdapi/v1/txt2img", json={
            **SMALL, "override_settings": {"sd_model_checkpoint": "mine"}})
        assert generated.status_code == 200
    finally:
        world.service.activate("demo-base")


@pytest.mark.engine
def test_a_corrupt_pickle_is_model_load_failed_not_a_500(world):
    response = world.client.post("/sdapi/v1/options", json={"sd_model_checkpoint": CORRUPT_REPO},
                                 headers={"Accept-Language": "en"})
    assert _answer(response) == (400, "model_load_failed", error_text(
        "en", "model_load_failed", {"name": CORRUPT_REPO}))
    generated = world.client.post("/sdapi/v1/txt2img", json={
        **SMALL, "override_settings": {"sd_model_checkpoint": CORRUPT_REPO}})
    assert _answer(generated)[:2] == (400, "model_load_failed")
    assert world.client.post("/sdapi/v1/txt2img", json=SMALL).status_code == 200


@pytest.mark.engine
def test_the_command_line_still_names_any_folder(world):
    store = dataclasses.replace(world.service.settings, allow_file_paths=True)
    from engine.store.model_store import ModelStore

    cli = ModelStore(store, world.service.manifest)
    assert cli.base_folder(str(world.outside_folder)) == world.outside_folder
    assert world.service.store.user_model(str(world.outside_folder)) is None


def test_lora_links_out_of_the_lora_folder_are_neither_listed_nor_loaded(tiny_repos, tmp_path):
    from engine.errors import EngineError
    from engine.generate.engine import Engine
    from engine.settings import DEFAULT_MANIFEST
    from engine.store.manifest import load_manifest
    from tests.support.helpers import run, txt2img
    from tests.support.tiny_repos import make_settings

    models = tmp_path / "models"
    (models / "lora").mkdir(parents=True)
    shutil.copy(tiny_repos.diffusers_lora, models / "lora" / "own.safetensors")
    outside = tmp_path / "outside.safetensors"
    shutil.copy(tiny_repos.diffusers_lora, outside)
    (models / "lora" / "evil.safetensors").symlink_to(outside)
    settings = make_settings(tiny_repos, models_dir=models)
    service = ImageService(settings, load_manifest(DEFAULT_MANIFEST))
    files = {c.name for c in service.lora_choices()} - {
        e.id for e in service.entries(ModelKind.LORA)}
    assert files == {"own"}
    assert [s.path.name for s in service.local_model_statuses()] == ["own.safetensors"]
    engine = Engine(settings)
    with pytest.raises(EngineError) as caught:
        run(engine, txt2img(prompt="山 <lora:evil:0.5>"))
    assert caught.value.code == "unknown_lora"
    assert run(engine, txt2img(prompt="山 <lora:own:0.5>")).images
