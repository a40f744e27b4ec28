"""The AUTOMATIC1111-compatible API and the async job API, over HTTP, on the demo models."""

from __future__ import annotations

import base64
import io
import json
import threading

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from api.guard import AllowedHosts, GuardPolicy, LoginThrottle, RequestGuard
from api.routes import ApiOptions, install
from engine.demo.build import build_demo, demo_manifest_yaml, demo_settings
from engine.errors import ModelError
from engine.fake_engine import FakeEngine, fake_image_service
from engine.service import ImageService
from engine.settings import EngineSettings
from engine.store.manifest import parse_manifest
from locales import error_text
from tests.support.helpers import sample_image

SMALL = {"steps": 3, "width": 64, "height": 64}
OTHER_BASE, OTHER_REPO = "demo-base-b", "huajing-demo/tiny-base-b"


@pytest.fixture(scope="module")
def service(tmp_path_factory):
    """The demo set with a second base of other random weights, to switch to."""
    demo = build_demo(tmp_path_factory.mktemp("demo"))
    settings = demo_settings(demo, EngineSettings(device="cpu", precision="fp32"))
    service = ImageService(settings, parse_manifest(_with_other_base(demo)),
                           active_model=demo.base_id)
    service.start(preload=False)
    return service


def _with_other_base(demo) -> str:
    """The demo manifest, plus ``OTHER_BASE``: its own repo in the demo's hub cache."""
    import torch
    import yaml

    from engine.demo import tiny_models as tiny
    from engine.demo.build import BASE_SAMPLE_SIZE, demo_manifest

    with torch.random.fork_rng(devices=[]):  # the factory seeds torch's global generator
        folder = tiny.write_base_model(demo.root / "other-base", tiny.TinyBaseSpec(
            sample_size=BASE_SAMPLE_SIZE, seed=5))
    tiny.place_in_hub_cache(folder, OTHER_REPO, demo.hub_cache)
    manifest = demo_manifest()
    base = next(entry for entry in manifest["models"] if entry["id"] == demo.base_id)
    manifest["models"].insert(1, dict(base, id=OTHER_BASE, repo=OTHER_REPO))
    return yaml.safe_dump(manifest, allow_unicode=True, sort_keys=False)


def make_client(service, guard: dict | None = None, **options) -> TestClient:
    """The API as app.py serves it: behind the request guard (TestClient's host is
    "testserver"); ``client.api`` is the FastAPI app inside."""
    app = FastAPI()
    install(app, service, ApiOptions(**options))
    policy = GuardPolicy(allowed_hosts=AllowedHosts(["testserver"]),
                         users=dict(options.get("auth", ())), **(guard or {}))
    client = TestClient(RequestGuard(app, policy))
    client.api = app
    return client


@pytest.fixture
def served(tmp_path) -> tuple[ImageService, FakeEngine]:
    """The real service over the torch-free service engine, every manifest model on disk."""
    return fake_image_service(tmp_path / "data")


@pytest.fixture(scope="module")
def client(service):
    return make_client(service)


def b64_png(image: Image.Image) -> str:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def decode(data: str) -> Image.Image:
    return Image.open(io.BytesIO(base64.b64decode(data)))


@pytest.mark.engine
def test_txt2img_answers_like_a1111(client):
    response = client.post("/sdapi/v1/txt2img", json={
        "prompt": "雾蒙蒙的日出在湖面上", "seed": 42, "batch_size": 2, "unknown_field": 1,
        "sampler_name": "DPM++ 2M Karras", **SMALL})
    assert response.status_code == 200
    body = response.json()
    assert len(body["images"]) == 2 and decode(body["images"][0]).size == (64, 64)
    info = json.loads(body["info"])
    assert info["all_seeds"] == [42, 43] and info["seed"] == 42
    assert info["sampler_name"] == "DPM++ 2M" and "unknown_field" in info["ignored_fields"]
    assert info["infotexts"][0].startswith("雾蒙蒙的日出在湖面上\n")
    assert "Schedule type: Karras" in info["infotexts"][0]
    assert body["parameters"]["prompt"] == "雾蒙蒙的日出在湖面上"
    assert decode(body["images"][0]).info["parameters"] == info["infotexts"][0]


@pytest.mark.engine
def test_defaults_follow_a1111(client):
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "山", "steps": 2})
    info = json.loads(response.json()["info"])
    assert (info["width"], info["height"], info["sampler_name"]) == (512, 512, "Euler")


@pytest.mark.engine
def test_bad_input_is_a_4xx_with_a_chinese_message(client):
    response = client.post("/sdapi/v1/txt2img", json={"prompt": "山", "steps": 2, "width": 65})
    assert response.status_code == 400
    assert response.json()["error"] == "invalid_size"
    assert response.json()["detail"] == error_text("zh-CN", "invalid_size", {
        "value": "65", "min": 64, "max": 2048, "step": 8})
    english = client.post("/sdapi/v1/txt2img", json={"prompt": "山", "width": 65},
                          headers={"Accept-Language": "en-US"})
    assert english.json()["detail"].startswith("Width and height")
    assert client.post("/sdapi/v1/txt2img", json={"steps": "many"}).status_code == 422


@pytest.mark.engine
def test_img2img_inpaint_and_bad_images(client):
    init = b64_png(sample_image(80, 64))
    plain = client.post("/sdapi/v1/img2img", json={
        "init_images": [init], "prompt": "山", "denoising_strength": 0.6, "steps": 3,
        "width": 80, "height": 64})
    assert plain.status_code == 200 and decode(plain.json()["images"][0]).size == (80, 64)
    mask = Image.new("L", (80, 64), 0)
    mask.paste(255, (20, 16, 60, 48))
    inpaint = client.post("/sdapi/v1/img2img", json={
        "init_images": [init], "mask": b64_png(mask), "prompt": "山", "steps": 3,
        "width": 80, "height": 64})
    assert "Mask blur" in json.loads(inpaint.json()["info"])["infotexts"][0]
    for images in ([], ["not base64 at all!"]):
        response = client.post("/sdapi/v1/img2img", json={"init_images": images, **SMALL})
        assert (response.status_code, response.json()["error"]) == (400, "missing_image")


@pytest.mark.parametrize("invert", [1, 0])
def test_inpaint_fields_reach_the_request_as_a1111_means_them(invert, served):
    from engine.requests import InpaintRequest, ResizeMode

    service, engine = served
    mask = Image.new("L", (80, 64), 0)
    mask.paste(255, (20, 16, 60, 48))
    answer = make_client(service).post("/sdapi/v1/img2img", json={
        "init_images": [b64_png(sample_image(80, 64))], "mask": b64_png(mask), "prompt": "山",
        "mask_blur": 7, "inpainting_mask_invert": invert, "denoising_strength": 0.45,
        "resize_mode": 1, "steps": 3, "width": 80, "height": 64})

    assert answer.status_code == 200, answer.text
    (request,) = engine.requests
    assert type(request) is InpaintRequest
    assert (request.invert_mask, request.mask_blur) == (bool(invert), 7)
    assert (request.strength, request.resize_mode) == (0.45, ResizeMode.CROP_AND_RESIZE)
    assert request.mask.size == request.init_image.size == (80, 64)
    assert (request.mask.getpixel((40, 32)), request.mask.getpixel((5, 5))) == (255, 0)


@pytest.mark.engine
def test_controlnet_unit_in_alwayson_scripts(client):
    unit = {"enabled": True, "input_image": b64_png(sample_image()), "module": "canny",
            "model": "demo-controlnet-canny", "weight": 1.0, "threshold_a": 100,
            "threshold_b": 200, "control_mode": 0, "resize_mode": 1}
    response = client.post("/sdapi/v1/txt2img", json={
        "prompt": "白色的小鸟", **SMALL, "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert response.status_code == 200
    images = response.json()["images"]
    assert len(images) == 2  # the image and, as A1111's extension does, the control map
    assert "ControlNet 0" in json.loads(response.json()["info"])["infotexts"][0]


@pytest.mark.engine
def test_lists_and_a_switch_to_the_other_model_for_the_next_generation(client, service):
    titles = [m["title"] for m in client.get("/sdapi/v1/sd-models").json()]
    assert titles == ["demo-base", OTHER_BASE]
    assert "DPM++ 2M" in {s["name"] for s in client.get("/sdapi/v1/samplers").json()}
    assert {"automatic", "karras"} <= {s["name"] for s in
                                       client.get("/sdapi/v1/schedulers").json()}
    loras = client.get("/sdapi/v1/loras").json()
    assert loras[0]["metadata"]["preferred_weight"] == 0.8
    assert client.get("/controlnet/model_list").json()["model_list"][0] == "demo-controlnet-canny"
    assert "canny" in client.get("/controlnet/module_list").json()["module_list"]
    assert client.get("/sdapi/v1/options").json() == {"sd_model_checkpoint": "demo-base"}
    body = {"prompt": "山", "seed": 3, **SMALL}
    before = client.post("/sdapi/v1/txt2img", json=body).json()
    try:
        switched = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": OTHER_BASE})
        assert switched.json() == {"sd_model_checkpoint": OTHER_BASE}
        assert client.get("/sdapi/v1/options").json() == {"sd_model_checkpoint": OTHER_BASE}
        after = client.post("/sdapi/v1/txt2img", json=body).json()
        assert json.loads(after["info"])["sd_model_name"] == OTHER_BASE
        assert decode(after["images"][0]).tobytes() != decode(before["images"][0]).tobytes()
        missing = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"})
        assert (missing.status_code, missing.json()["error"]) == (404, "unknown_model")
        assert client.get("/sdapi/v1/options").json() == {"sd_model_checkpoint": OTHER_BASE}
    finally:
        client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "demo-base"})
    assert service.active_model == "demo-base"  # as the other tests expect it
    assert client.get("/sdapi/v1/cmd-flags").json() == {}


@pytest.mark.engine
def test_png_info_round_trip_regenerates_the_identical_image(client):
    first = client.post("/sdapi/v1/txt2img", json={
        "prompt": "亭台楼阁，(水墨绘画:1.2)", "negative_prompt": "油画", "seed": 7,
        "sampler_name": "Euler a", **SMALL}).json()
    info = client.post("/sdapi/v1/png-info", json={"image": first["images"][0]}).json()
    parameters = info["parameters"]
    again = client.post("/sdapi/v1/txt2img", json={
        "prompt": parameters["prompt"], "negative_prompt": parameters["negative_prompt"],
        "seed": parameters["seed"], "steps": parameters["steps"],
        "cfg_scale": parameters["guidance"], "sampler_name": parameters["sampler"],
        "scheduler": parameters["schedule"], "width": parameters["width"],
        "height": parameters["height"]}).json()
    assert decode(again["images"][0]).tobytes() == decode(first["images"][0]).tobytes()


@pytest.mark.engine
def test_async_jobs_answer_at_once_and_only_the_owner_may_cancel(client, service):
    gate = threading.Event()
    original = service.generate

    def held(request, on_progress=None, cancel=None):
        gate.wait(30)
        return original(request, on_progress=on_progress, cancel=cancel)

    service.generate = held
    try:
        first = client.post("/sdapi/v2/jobs", json={"prompt": "山", **SMALL})
        second = client.post("/sdapi/v2/jobs", json={"prompt": "水", **SMALL})
        assert first.status_code == second.status_code == 202
        waiting = client.get(f"/sdapi/v2/jobs/{second.json()['id']}",
                             headers={"X-Job-Token": second.json()["token"]}).json()
        peeked = client.get(f"/sdapi/v2/jobs/{second.json()['id']}",
                            headers={"X-Job-Token": first.json()["token"]})
        assert peeked.status_code == 403  # nobody else reads my prompt or images
        assert (waiting["state"], waiting["position"]) == ("queued", 1)
        denied = client.delete(f"/sdapi/v2/jobs/{second.json()['id']}",
                               headers={"X-Job-Token": first.json()["token"]})
        assert denied.status_code == 403
        cancelled = client.delete(f"/sdapi/v2/jobs/{second.json()['id']}",
                                  headers={"X-Job-Token": second.json()["token"]}).json()
        assert cancelled["state"] == "cancelled" and cancelled["error"] == "cancelled"
    finally:
        gate.set()
        service.generate = original
    job = service.jobs.get(first.json()["id"])
    assert job.wait(60)
    done = client.get(f"/sdapi/v2/jobs/{job.id}",
                      headers={"X-Job-Token": first.json()["token"]}).json()
    assert done["state"] == "done" and len(done["result"]["images"]) == 1
    assert client.get("/sdapi/v2/jobs/unknown").status_code == 404


def test_an_unknown_model_is_404_and_a_busy_one_409_with_code_and_text(monkeypatch, served):
    service, engine = served
    client = make_client(service)
    unknown = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "nope"},
                          headers={"Accept-Language": "en"})
    assert (unknown.status_code, unknown.json()["error"]) == (404, "unknown_model")
    assert unknown.json()["detail"] == error_text("en", "unknown_model", {"name": "nope"})
    generated = client.post("/sdapi/v1/txt2img", json={
        "prompt": "山", **SMALL, "override_settings": {"sd_model_checkpoint": "nope"}})
    assert (generated.status_code, generated.json()["error"]) == (404, "unknown_model")

    def held_by_a_download(model):
        raise ModelError("model_busy", name=model)

    monkeypatch.setattr(engine, "load", held_by_a_download)
    busy = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "being-downloaded"})
    assert (busy.status_code, busy.json()["error"]) == (409, "model_busy")
    assert busy.json()["detail"] == error_text("zh-CN", "model_busy",
                                               {"name": "being-downloaded"})


@pytest.mark.parametrize(("header", "language"), [
    ("en-US,en;q=0.9", "en"), ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"), (None, "zh-CN")])
def test_the_job_status_answers_in_the_language_asked_for(header, language, served):
    service, _engine = served
    client = make_client(service)
    job = client.post("/sdapi/v2/jobs", json={
        "prompt": "山", **SMALL, "override_settings": {"sd_model_checkpoint": "nope"}}).json()
    assert service.jobs.get(job["id"]).wait(60)
    asked = {"Accept-Language": header} if header else {}
    failed = client.get(f"/sdapi/v2/jobs/{job['id']}",
                        headers={"X-Job-Token": job["token"], **asked}).json()
    assert (failed["state"], failed["error"]) == ("failed", "unknown_model")
    assert failed["detail"] == error_text(language, "unknown_model", {"name": "nope"})
    stranger = client.get(f"/sdapi/v2/jobs/{job['id']}",
                          headers={"X-Job-Token": "not-the-token", **asked})
    assert (stranger.status_code, stranger.json()["error"]) == (403, "job_not_yours")
    assert stranger.json()["detail"] == error_text(language, "job_not_yours", {"id": job["id"]})


@pytest.mark.engine
def test_interrupt_and_progress_mid_job(client, service):
    started = threading.Event()
    original = service.generate

    def slow(request, on_progress=None, cancel=None):
        started.set()
        cancel.wait(30)
        return original(request, on_progress=on_progress, cancel=cancel)

    service.generate = slow
    try:
        job = client.post("/sdapi/v2/jobs", json={"prompt": "山", **SMALL}).json()
        assert started.wait(30)
        progress = client.get("/sdapi/v1/progress").json()
        assert progress["state"]["job"] == job["id"] and "current_image" in progress
        assert client.post("/sdapi/v1/interrupt").status_code == 200
    finally:
        service.generate = original
    assert service.jobs.get(job["id"]).wait(60)
    answer = client.get(f"/sdapi/v2/jobs/{job['id']}", headers={"X-Job-Token": job["token"]})
    assert answer.json()["state"] == "cancelled"


@pytest.mark.engine
def test_progress_textinfo_says_when_the_first_step_compiles(client, service):
    from engine.requests import PHASE_COMPILING, ProgressUpdate
    from locales import translate

    compiling, release = threading.Event(), threading.Event()
    original = service.generate

    def compile_first(request, on_progress=None, cancel=None):
        on_progress(ProgressUpdate(0, 3, 0, 1, phase=PHASE_COMPILING))
        compiling.set()
        release.wait(30)
        return original(request, on_progress=on_progress, cancel=cancel)

    service.generate = compile_first
    try:
        job = client.post("/sdapi/v2/jobs", json={"prompt": "山", **SMALL}).json()
        assert compiling.wait(30)
        progress = client.get("/sdapi/v1/progress", headers={"Accept-Language": "zh-CN"}).json()
        assert progress["textinfo"] == translate("zh-CN", "common.compiling")
        english = client.get("/sdapi/v1/progress", headers={"Accept-Language": "en"}).json()
        assert english["textinfo"] == translate("en", "common.compiling")
    finally:
        release.set()
        service.generate = original
    assert service.jobs.get(job["id"]).wait(60)
    assert client.get("/sdapi/v1/progress").json()["textinfo"] is None


@pytest.mark.engine
def test_a_full_queue_answers_503_in_chinese(tmp_path_factory):
    demo = build_demo(tmp_path_factory.mktemp("demo-busy"))
    busy = ImageService(demo_settings(demo, EngineSettings(device="cpu", precision="fp32")),
                        parse_manifest(demo_manifest_yaml()), active_model=demo.base_id)
    busy.max_waiting = 1  # one runs (held at the gate), one may wait, the rest are refused
    gate = threading.Event()
    busy.generate = lambda request, on_progress=None, cancel=None: gate.wait(30)
    client = make_client(busy)
    try:
        answers = [client.post("/sdapi/v2/jobs", json={"prompt": "山", **SMALL})
                   for _ in range(3)]
        assert answers[0].status_code == 202
        refused = client.post("/sdapi/v1/txt2img", json={"prompt": "山", **SMALL})
        assert refused.status_code == 503
        assert refused.json()["detail"] == error_text("zh-CN", "queue_full", {"size": 1})
    finally:
        gate.set()


@pytest.mark.engine
def test_auth_guards_every_route(service):
    # Many free tries: this test is about every route, not the back-off (see test_guard.py).
    guarded = make_client(service, guard={"throttle": LoginThrottle(free_tries=1000)},
                          auth=(("alice", "s3cret"),))
    schema_paths = guarded.api.openapi()["paths"]
    routes = [(method, path.replace("{job_id}", "x")) for path, methods in schema_paths.items()
              for method in methods] + [("get", "/docs"), ("get", "/openapi.json")]
    assert len(routes) > 20
    for method, path in routes:
        assert guarded.request(method.upper(), path).status_code == 401, path
        wrong = guarded.request(method.upper(), path, auth=("alice", "nope"))
        assert wrong.status_code == 401, path
    assert guarded.get("/sdapi/v1/sd-models", auth=("alice", "s3cret")).status_code == 200
    text = guarded.get("/sdapi/v1/cmd-flags", auth=("alice", "s3cret")).text
    assert "s3cret" not in text

@pytest.mark.servers
def test_same_port_as_the_ui_and_the_same_password(tmp_path):
    import httpx

    from api.server import build_server
    from app import build_http_app
    from app_settings import AppSettings, Preferences, PreferencesStore
    from tests.support.ui_client import free_port
    from ui.app import UiOptions, build_ui

    service, _engine = fake_image_service(tmp_path / "data")
    ui = build_ui(service, UiOptions(Preferences()), PreferencesStore(tmp_path / "settings.json"))
    ui.queue()
    port = free_port()
    settings = AppSettings(port=port, auth=(("alice", "s3cret"),))
    server = build_server(build_http_app(ui, service, settings), "127.0.0.1", port)
    thread = server.start_in_thread()
    try:
        base = f"http://127.0.0.1:{port}"
        assert httpx.get(f"{base}/sdapi/v1/sd-models").status_code == 401
        assert httpx.get(f"{base}/openapi.json").status_code == 401
        schema = httpx.get(f"{base}/openapi.json", auth=("alice", "s3cret")).json()
        assert "/sdapi/v1/txt2img" in schema["paths"]
        answer = httpx.post(f"{base}/sdapi/v1/txt2img", auth=("alice", "s3cret"),
                            json={"prompt": "山", **SMALL}, timeout=60)
        assert answer.status_code == 200 and len(answer.json()["images"]) == 1
        assert "alice" not in httpx.get(f"{base}/config").text  # the UI's config needs login
    finally:
        server.should_exit = True
        thread.join(10)


@pytest.mark.engine
def test_memory_unload_reload_and_detect(client, service):
    memory = client.get("/sdapi/v1/memory").json()
    assert memory["ram"]["total"] > 0
    assert client.post("/sdapi/v1/unload-checkpoint").status_code == 200
    assert service.engine.pipelines.loaded_models == ()
    assert client.post("/sdapi/v1/reload-checkpoint").status_code == 200
    assert service.engine.pipelines.loaded_models == ("demo-base",)
    detected = client.post("/controlnet/detect", json={
        "controlnet_module": "canny", "controlnet_input_images": [b64_png(sample_image())],
        "controlnet_threshold_a": 100, "controlnet_threshold_b": 200}).json()
    edges = decode(detected["images"][0])
    assert edges.size == (64, 64) and set(edges.getdata()) <= {(0, 0, 0), (255, 255, 255)}


FIELD_VALUES = {
    "prompt": st.text(max_size=40), "negative_prompt": st.text(max_size=20),
    "seed": st.integers(-(2**40), 2**40), "steps": st.integers(-5, 200),
    "cfg_scale": st.floats(-5, 50, allow_nan=False), "width": st.integers(-8, 3000),
    "height": st.integers(-8, 3000), "batch_size": st.integers(-1, 12),
    "n_iter": st.integers(-1, 20), "sampler_name": st.sampled_from(
        ["Euler", "DPM++ 2M Karras", "nope", "", "k_euler_a"]),
    "scheduler": st.sampled_from(["karras", "Karras", "bogus", None]),
    "override_settings": st.dictionaries(st.just("sd_model_checkpoint"),
                                         st.sampled_from(["demo-base", "nope", ""])),
    "alwayson_scripts": st.just({}), "unknown": st.integers(),
}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(body=st.fixed_dictionaries({}, optional=FIELD_VALUES))
def test_no_request_body_makes_a_500(body, tmp_path_factory):
    client = fuzz_client(lambda: fake_image_service(tmp_path_factory.mktemp("fuzz"))[0])
    response = client.post("/sdapi/v1/txt2img", json=body)
    assert response.status_code in (200, 400, 404, 422, 503), response.text
    if response.status_code in (400, 404):
        assert response.json()["detail"]


_FUZZ_CLIENTS: dict = {}


def fuzz_client(factory) -> TestClient:
    """One fake-backed client for the whole fuzz run (building it per example is slow)."""
    if "client" not in _FUZZ_CLIENTS:
        _FUZZ_CLIENTS["client"] = make_client(factory())
    return _FUZZ_CLIENTS["client"]


@pytest.mark.engine
def test_progress_shows_a_preview_of_the_running_job(client, service):
    paused, resume = threading.Event(), threading.Event()
    original = service.generate

    def paused_after_each_step(request, on_progress=None, cancel=None):
        def report(update):
            on_progress(update)
            paused.set()
            resume.wait(30)

        return original(request, on_progress=report, cancel=cancel)

    service.generate = paused_after_each_step
    try:
        job = client.post("/sdapi/v2/jobs", json={"prompt": "山", **SMALL}).json()
        assert paused.wait(60)
        progress = client.get("/sdapi/v1/progress").json()
        assert progress["state"]["sampling_step"] == 1 and progress["state"]["job"] == job["id"]
        assert decode(progress["current_image"]).size == (32, 32)  # 8x8 latents, 4x larger
        skipped = client.get("/sdapi/v1/progress", params={"skip_current_image": True})
        assert skipped.json()["current_image"] is None
        status = client.get(f"/sdapi/v2/jobs/{job['id']}",
                            headers={"X-Job-Token": job["token"]}).json()
        assert status["state"] == "running" and status["preview"]
    finally:
        resume.set()
        service.generate = original
    assert service.jobs.get(job["id"]).wait(60)


@pytest.mark.engine
def test_skip_drops_the_current_batch_and_goes_on(client, service):
    paused, resume = threading.Event(), threading.Event()
    original = service.generate

    def paused_in_the_first_batch(request, on_progress=None, cancel=None):
        def report(update):
            on_progress(update)  # raises to skip once /skip was called
            if update.batch_index == 0:
                paused.set()
                resume.wait(30)

        return original(request, on_progress=report, cancel=cancel)

    service.generate = paused_in_the_first_batch
    try:
        job = client.post("/sdapi/v2/jobs", json={"prompt": "山", "n_iter": 2, "seed": 3,
                                                  **SMALL}).json()
        assert paused.wait(60)
        assert client.post("/sdapi/v1/skip").status_code == 200
    finally:
        resume.set()
        service.generate = original
    assert service.jobs.get(job["id"]).wait(60)
    done = client.get(f"/sdapi/v2/jobs/{job['id']}", headers={"X-Job-Token": job["token"]}).json()
    assert done["state"] == "done"
    assert json.loads(done["result"]["info"])["all_seeds"] == [4]  # batch 2 of seeds 3, 4


@pytest.mark.engine
def test_review_regressions(client):
    nan = client.post("/sdapi/v1/txt2img", content='{"prompt": "山", "cfg_scale": NaN}',
                      headers={"content-type": "application/json"})
    assert nan.status_code == 422
    unit = {"enabled": True, "image": b64_png(sample_image()), "module": "depth",
            "model": "demo-controlnet-depth", "threshold_a": -1, "threshold_b": -1.0}
    depth = client.post("/sdapi/v1/txt2img", json={
        "prompt": "山", **SMALL, "alwayson_scripts": {"controlnet": {"args": [unit]}}})
    assert depth.status_code == 200
    canny = dict(unit, module="canny", model="demo-controlnet-canny", threshold_a=100.0,
                 threshold_b=200.0)
    assert client.post("/sdapi/v1/txt2img", json={
        "prompt": "山", **SMALL,
        "alwayson_scripts": {"controlnet": {"args": [canny]}}}).status_code == 200
    hostile = Image.new("RGB", (8, 8))
    info = PngImagePlugin.PngInfo()
    info.add_text("prompt", json.dumps({"1": "x", "2": {"class_type": "KSampler",
                                                          "inputs": {"positive": ["1", 0]}},
                                        "3": {"class_type": "EmptyLatentImage"}}))
    buffer = io.BytesIO()
    hostile.save(buffer, format="PNG", pnginfo=info)
    answer = client.post("/sdapi/v1/png-info",
                         json={"image": base64.b64encode(buffer.getvalue()).decode()})
    assert answer.status_code == 200
    unsupported = client.post("/sdapi/v1/txt2img", json={"prompt": "山", **SMALL,
                                                         "enable_hr": True}).json()
    assert "enable_hr" in json.loads(unsupported["info"])["ignored_fields"]


@pytest.mark.engine
def test_oversized_bodies_are_refused(service):
    small = make_client(service, guard={"max_large_body_bytes": 1000})
    answer = small.post("/sdapi/v1/txt2img", json={"prompt": "山" * 2000})
    assert answer.status_code == 413


def test_models_in_the_models_folder_are_listed_and_selectable(served):
    from tests.support.model_files import write_single_file

    service, engine = served
    write_single_file(service.settings.checkpoint_dir / "水墨.safetensors")
    client = make_client(service)
    listed = {m["model_name"]: m for m in client.get("/sdapi/v1/sd-models").json()}
    assert listed["水墨"]["title"] == "水墨.safetensors"  # no server path, as options take it
    assert listed["水墨"]["filename"] == "checkpoints/水墨.safetensors"
    switched = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": "水墨.safetensors"})
    assert switched.json() == {"sd_model_checkpoint": "水墨.safetensors"}
    assert engine.loaded[-1] == "水墨.safetensors"  # the engine loaded the user's own file


def test_saved_and_sent_images_are_encoded_once_and_sent_as_saved(tmp_path, monkeypatch):
    from engine.metadata import outputs

    encoded = []

    def counting(image):
        encoded.append(image.seed)
        return real_encode(image)

    real_encode = outputs.encode_png
    monkeypatch.setattr(outputs, "encode_png", counting)
    output_dir = tmp_path / "outputs"
    client = make_client(fake_image_service(tmp_path / "data", output_dir=output_dir)[0])
    response = client.post("/sdapi/v1/txt2img", json={
        "prompt": "山", **SMALL, "seed": 5, "batch_size": 2, "save_images": True})

    assert response.status_code == 200
    assert encoded == [5, 6]  # one PNG per image serves the file and the answer
    assert [base64.b64decode(image) for image in response.json()["images"]] == [
        path.read_bytes() for path in sorted(output_dir.glob("*/*.png"))]


@pytest.mark.parametrize("fault", ["unwritable", "disk_full"])
def test_save_images_on_a_failing_disk_returns_the_images_with_a_warning(
        tmp_path, monkeypatch, fault):
    import errno

    from engine.metadata import outputs

    output_dir = tmp_path / "outputs"
    if fault == "unwritable":
        output_dir.write_text("a file where the folder should be")
    else:
        def disk_full(handle, data):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(outputs, "_write_bytes", disk_full)
    client = make_client(fake_image_service(tmp_path / "data", output_dir=output_dir)[0])
    response = client.post("/sdapi/v1/txt2img", json={
        "prompt": "山", **SMALL, "batch_size": 2, "save_images": True})
    assert response.status_code == 200
    assert len(response.json()["images"]) == 2
    assert json.loads(response.json()["info"])["warnings"] == ["save_failed"]
    assert str(tmp_path) not in response.text  # the server's folder is not named


@pytest.mark.engine
def test_a_finished_v2_job_keeps_its_result_but_not_its_input_images(client, service):
    init = b64_png(Image.new("RGB", (64, 64), "white"))
    created = client.post("/sdapi/v2/jobs", json={
        "type": "img2img", "prompt": "山", "init_images": [init], **SMALL}).json()
    job = service.jobs.get(created["id"])
    assert job.wait(120) and job.state.value == "done"
    assert job.context.init_images == [] and init not in job.context.model_dump_json()
    assert job.request.request.init_image is None  # the prepared request, as queued
    status = client.get(f"/sdapi/v2/jobs/{created['id']}",
                        headers={"x-job-token": created["token"]}).json()
    assert len(status["result"]["images"]) == 1
