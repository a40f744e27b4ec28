"""The service the UI and API use: model states on disk, activation, background start."""

from __future__ import annotations

import shutil

import pytest

from engine.errors import EngineError
from engine.service import ImageService
from engine.settings import DEFAULT_MANIFEST
from engine.store.catalog import ModelState
from engine.store.manifest import ModelKind, load_manifest
from tests.support.helpers import txt2img
from tests.support.tiny_repos import make_settings


@pytest.fixture
def service(tiny_repos):
    service = ImageService(make_settings(tiny_repos), load_manifest(DEFAULT_MANIFEST))
    service.start(preload=False)
    return service


def _states(service) -> dict[str, ModelState]:
    return {status.entry.id: status.state for status in service.model_statuses()}


def test_states_follow_the_cache(service):
    states = _states(service)
    assert states["pai-artist-large"] is ModelState.READY
    assert states["pai-food-large"] is ModelState.MISSING
    assert states["pai-artist-large-lora-poem"] is ModelState.READY
    assert states["pai-artist-large-controlnet-canny"] is ModelState.READY
    sizes = {s.entry.id: s.size_bytes for s in service.model_statuses(ModelKind.BASE)}
    assert sizes["pai-artist-large"] > 1_000_000 and sizes["pai-food-large"] == 0


def test_incomplete_snapshot_is_broken(tiny_repos, tmp_path):
    cache = tmp_path / "hub"
    shutil.copytree(tiny_repos.hub_cache / "models--alibaba-pai--pai-diffusion-artist-large-zh",
                    cache / "models--alibaba-pai--pai-diffusion-artist-large-zh")
    unet = next(cache.glob("models--*/snapshots/*/unet"))
    (unet / "diffusion_pytorch_model.bin").unlink()
    service = ImageService(make_settings(tiny_repos, hub_cache_dir=cache),
                           load_manifest(DEFAULT_MANIFEST))
    assert _states(service)["pai-artist-large"] is ModelState.BROKEN


def test_activate_switches_the_active_model(service):
    assert service.active_model == "pai-artist-large"
    service.activate("pai-general-large")
    assert service.active_model == "pai-general-large"
    active = [s.entry.id for s in service.model_statuses() if s.active]
    assert active == ["pai-general-large"]
    with pytest.raises(EngineError) as caught:
        service.activate("pai-food-large")
    assert caught.value.code == "model_not_downloaded"
    assert service.active_model == "pai-general-large"


def test_choices_for_the_ui(service, tiny_repos):
    assert [e.base for e in service.controlnets_for("pai-general-large")][0] == "pai-general-large"
    names = [choice.name for choice in service.lora_choices()]
    assert names[:2] == ["pai-artist-large-lora-poem", "pai-artist-large-lora-25d"]
    assert {"ink", "kohya-style"} <= set(names)  # files dropped into models/lora
    poem = service.lora_choices()[0]
    assert poem.weight == 0.4 and poem.title_zh == "诗意"
    lcm = next(choice for choice in service.lora_choices() if choice.name == "lcm-lora-sd15")
    assert lcm.base == "SD 1.5" and lcm.weight == 1.0  # a family LoRA: made for all SD 1.5
    assert service.default_size("pai-anime-large") == (512, 768)
    assert "canny" in service.control_types() and "lineart" in service.control_types()


def test_generate_and_save(service, tmp_path):
    service.output_dir = tmp_path / "outputs"
    result = service.generate(txt2img(batch_size=2))
    saved = service.save(result)
    assert len(saved) == 2 and all(path.is_file() for path in saved)
    assert service.prompt_info("pai-artist-large", "山水").tokens == 2
    assert service.prompt_info("pai-food-large", "番茄炒蛋") is None  # not downloaded


def test_engine_failure_is_reported_to_callers(tiny_repos):
    def broken_factory(settings, manifest):
        raise RuntimeError("no torch here")

    service = ImageService(make_settings(tiny_repos), load_manifest(DEFAULT_MANIFEST),
                           engine_factory=broken_factory)
    service.start(preload=False)
    with pytest.raises(EngineError) as caught:
        service.generate(txt2img())
    assert caught.value.code == "engine_failed"
    assert _states(service)["pai-artist-large"] is ModelState.READY  # the catalog still works


def test_users_own_safetensors_folders_are_offered_and_pickled_ones_not(tiny_repos, tmp_path):
    from diffusers import StableDiffusionPipeline

    models = tmp_path / "models"
    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_repos.pai_base, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    pipe.save_pretrained(models / "checkpoints" / "my-style", safe_serialization=True)
    shutil.copytree(tiny_repos.pai_base, models / "checkpoints" / "pickled")
    service = ImageService(make_settings(tiny_repos, models_dir=models),
                           load_manifest(DEFAULT_MANIFEST))
    assert [p.name for p in service.local_models()] == ["my-style"]
    folder = str(service.local_models()[0])
    assert service.default_size(folder) == (64, 64)
    service.activate(folder)
    assert service.generate(txt2img(model=folder)).images[0].image.size == (64, 64)


def test_a_submitted_request_is_prepared_and_validated_once_and_runs_as_it_waited(
        service, monkeypatch):
    """One request path: submit prepares and validates; the queue holds that prepared request
    (tags out of the prompt, in ``loras``); the engine runs exactly it, validating nothing."""
    import engine.validation as validation
    from engine.generate.engine import Engine
    from engine.requests import LoraWeight, PreparedRequest

    validated = []
    validate = validation.validate_request

    def counting(request, *args, **kwargs):
        validated.append(request)
        return validate(request, *args, **kwargs)

    ran = []
    generate = Engine.generate

    def recording(self, prepared, *args, **kwargs):
        ran.append(prepared)
        return generate(self, prepared, *args, **kwargs)

    monkeypatch.setattr(validation, "validate_request", counting)
    monkeypatch.setattr(Engine, "generate", recording)
    job = service.submit(txt2img(prompt="山 <lora:ink:0.5>"), owner="me")
    assert job.wait(120) and job.state.value == "done", job.error

    assert len(validated) == 1
    assert ran == [job.request] and isinstance(job.request, PreparedRequest)
    assert job.request.request.prompt == "山 "
    assert job.request.request.loras == (LoraWeight("ink", 0.5),)
    parameters = job.result.images[0].parameters
    assert parameters["prompt"] == "山 <lora:ink:0.5>"  # the image says what was written
    assert [lora["name"] for lora in parameters["loras"]] == ["ink"]


def test_the_engine_runs_only_prepared_requests(service):
    with pytest.raises(TypeError):
        service.engine.generate(txt2img())


def test_a_bad_request_is_refused_while_the_backend_is_still_starting(tmp_path):
    """Preparing and validating is torch-free: it never waits for the backend to start."""
    from engine.fake_engine import SlowStart, slowly_starting_service

    # A service that waited for its backend would wait these 5 s, then fail below.
    slow_start = SlowStart(wait_s=5)
    release, built = slow_start.release, slow_start.built
    service = slowly_starting_service(tmp_path, slow_start)
    service.start(preload=False)
    try:
        with pytest.raises(EngineError) as caught:
            service.submit(txt2img(steps=10_000), owner="someone")
        assert caught.value.code == "invalid_steps"
        with pytest.raises(EngineError) as caught:
            service.submit(txt2img(prompt="山 <lora:no-such-style:0.5>"), owner="someone")
        assert caught.value.code == "unknown_lora"
        assert not built.is_set()  # refused before the backend existed
        job = service.submit(txt2img(steps=2), owner="someone")  # a good one waits in line
    finally:
        release.set()
    assert job.wait(30) and job.error is None and len(job.result.images) == 1


# -- the device report and the start-up hook (over the torch-free fake backend) ---------------

def _slow_service(tmp_path, factory_fails: bool = False):
    """A service whose backend starts when ``release`` is set, recording what ran in order."""
    from engine.fake_engine import SlowStart, slowly_starting_service

    events = []

    def record_loads(engine) -> None:
        real_load = engine.load
        engine.load = lambda model: (events.append(("load", model)), real_load(model))

    slow_start = SlowStart(wait_s=5, configure=record_loads, fails=factory_fails)
    return slowly_starting_service(tmp_path, slow_start), slow_start.release, events


def test_the_device_report_is_none_while_the_backend_starts_then_the_backends(tmp_path):
    service, release, _events = _slow_service(tmp_path)
    service.start(preload=False)
    assert service.device_report() is None  # answered at once, not after the start
    release.set()
    service.engine  # noqa: B018 - waits for the start
    report = service.device_report()
    assert report is not None and report.device == "cpu" and report.problem is None


def test_the_start_up_hook_runs_once_started_before_the_preload_and_at_once_after(tmp_path):
    import threading

    service, release, events = _slow_service(tmp_path)
    service.after_start(lambda: events.append(("hook", threading.current_thread().name)))
    service.start(preload=True)
    assert events == []
    release.set()
    service.engine  # noqa: B018 - waits for the start
    for _ in range(100):  # the preload follows in the starting thread
        if len(events) == 2:
            break
        threading.Event().wait(0.05)
    assert events[0] == ("hook", "engine-start") and events[1][0] == "load"
    service.after_start(lambda: events.append(("late hook", threading.current_thread().name)))
    assert events[-1] == ("late hook", threading.current_thread().name)


def test_a_backend_that_failed_has_no_report_and_runs_no_hook(tmp_path):
    service, release, events = _slow_service(tmp_path, factory_fails=True)
    service.after_start(lambda: events.append("hook"))
    release.set()
    service.start(preload=False)
    with pytest.raises(EngineError) as caught:
        service.engine  # noqa: B018 - waits for the start
    assert caught.value.code == "engine_failed"
    with pytest.raises(EngineError) as caught:
        service.device_report()
    assert caught.value.code == "engine_failed" and events == []
