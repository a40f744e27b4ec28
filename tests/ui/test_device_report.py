"""设置's 设备 section and the page's device banner, over the real service on the fake engine
with a faked report: "an NVIDIA GPU is present but torch has no CUDA" shows the banner with
the fix command, in both languages; a healthy report shows none. While the engine starts the
page says so, and asks again until it has started."""

from __future__ import annotations

import pytest

from app_settings import Preferences, PreferencesStore
from engine.device_report import DeviceReport, TorchFacts, build_device_report
from engine.fake_engine import SlowStart, fake_image_service, slowly_starting_service
from engine.service import ImageService
from engine.settings import DEFAULT_MANIFEST, EngineSettings
from engine.store.manifest import load_manifest
from installer.probes import NvidiaGpu
from locales import LANGUAGES, error_text, translate
from tests.support.ui_client import by_keys, call, running_ui

pytestmark = pytest.mark.servers

RTX = NvidiaGpu("NVIDIA GeForce RTX 4090", "572.16", 24564)
CPU_TORCH = TorchFacts(device="cpu", requested_device="auto", precision="fp32",
                       torch_version="2.7.1+cpu", cuda_version=None, hip_version=None,
                       mps_built=False)


def gpu_unused(system: str = "Windows") -> DeviceReport:
    """What the engine reports on a PC with an RTX 4090 and the CPU build of torch."""
    return build_device_report(CPU_TORCH, lambda: [RTX], system)


def in_language(tmp_path, language: str) -> Preferences:
    """The preferences a UI is built with, saved where ``running_ui`` keeps them (a page load
    reads the saved ones)."""
    preferences = Preferences(language=language)
    PreferencesStore(tmp_path / "settings.json").save(preferences)
    return preferences


def updates_by_elem_id(ui, api_name: str, result) -> dict[str, dict]:
    """An event's updates by the elem_id of their component (the client leaves out blocks
    with no API value)."""
    [function] = [f for f in ui.demo.fns.values() if f.api_name == api_name]
    outputs = [block for block in function.outputs if not getattr(block, "skip_api", False)]
    assert len(outputs) == len(result)
    return {getattr(block, "elem_id", None): update
            for block, update in zip(outputs, result, strict=True) if isinstance(update, dict)}


def on_load(ui, client=None) -> dict[str, dict]:
    return updates_by_elem_id(ui, "on_load", (client or ui.client).predict(api_name="/on_load"))


@pytest.mark.parametrize("language", LANGUAGES)
def test_the_banner_names_the_gpu_and_the_fix_for_this_platform(tmp_path, language):
    service, _engine = fake_image_service(tmp_path / "data", device_report=gpu_unused())
    with running_ui(service, tmp_path, in_language(tmp_path, language)) as ui:
        banner = on_load(ui)["device-banner"]
        assert banner["visible"] is True
        assert "NVIDIA GeForce RTX 4090" in banner["value"]
        assert "`run.bat --torch auto`" in banner["value"]
        expected = translate(language, "warnings.gpu_unused_torch_cpu",
                             gpu=RTX.name, command="`run.bat --torch auto`")
        assert banner["value"] == "⚠️ " + expected
        built = ui.component_with_elem_id("device-banner")  # as the page first shows it
        assert built.visible is True and built.value == banner["value"]


def test_on_linux_the_banner_names_run_sh(tmp_path):
    service, _engine = fake_image_service(tmp_path / "data", device_report=gpu_unused("Linux"))
    with running_ui(service, tmp_path) as ui:
        banner = on_load(ui)["device-banner"]
        assert "`./run.sh --torch auto`" in banner["value"] and "run.bat" not in banner["value"]


@pytest.mark.parametrize("language", LANGUAGES)
def test_no_banner_when_nothing_is_wrong_and_the_device_shows_in_settings(tmp_path, language):
    service, engine = fake_image_service(tmp_path / "data")
    assert engine.report.problem is None
    with running_ui(service, tmp_path, in_language(tmp_path, language)) as ui:
        updates = on_load(ui)
        assert updates["device-banner"]["visible"] is False
        assert updates["device-banner"]["value"] == ""
        assert ui.component_with_elem_id("device-banner").visible is False
        details = updates["device-details"]["value"]
        assert translate(language, "device.runs_on", device="cpu", precision="fp32") in details
        assert translate(language, "device.no_gpu") in details
        assert translate(language, "device.torch", version="fake", build="CPU") in details
        heading = translate(language, "device.heading")
        assert any(getattr(block, "value", None) == heading for block in ui.demo.blocks.values())


def test_settings_names_the_gpu_in_use_and_its_memory(tmp_path):
    on_gpu = DeviceReport(device="cuda:0", precision="fp16", torch_version="2.7.1+cu128",
                          torch_build="CUDA 12.8", gpu_name=RTX.name,
                          gpu_memory_bytes=24 * 1024**3)
    service, _engine = fake_image_service(tmp_path / "data", device_report=on_gpu)
    with running_ui(service, tmp_path) as ui:
        updates = on_load(ui)
        details = updates["device-details"]["value"]
        assert translate("zh-CN", "device.gpu", name=RTX.name, memory="24.0") in details
        assert "CUDA 12.8" in details and updates["device-banner"]["visible"] is False


def test_switching_language_in_settings_translates_the_banner_and_the_section(tmp_path):
    service, _engine = fake_image_service(tmp_path / "data", device_report=gpu_unused())
    with running_ui(service, tmp_path) as ui:
        result = call(ui.client, "/save_settings", **by_keys(
            settings__language="en", settings__output_dir=str(tmp_path / "out"),
            settings__memory_mode="auto", settings__default_sampler="DPM++ 2M"))
        updates = updates_by_elem_id(ui, "save_settings", result)
        assert updates["device-banner"]["value"].startswith("⚠️ Found NVIDIA GeForce RTX 4090")
        assert updates["device-details"]["value"].startswith("Runs on: cpu")


def tick(ui) -> tuple[dict, dict, object]:
    """Call what the page's device timer calls (a timer event has no API name): the banner's
    and the details' updates, and the timer's."""
    banner = ui.component_with_elem_id("device-banner")
    details = ui.component_with_elem_id("device-details")
    [function] = [f for f in ui.demo.fns.values()
                  if details in f.outputs and any(event == "tick" for _id, event in f.targets)]
    [poll] = [block for block in function.outputs if block not in (banner, details)]
    updates = function.fn(None)
    return updates[banner], updates[details], updates[poll]


def test_while_the_engine_starts_the_page_says_so_and_asks_again_until_it_has(tmp_path):
    slow_start = SlowStart(configure=lambda engine: setattr(engine, "report", gpu_unused()))
    release = slow_start.release
    service = slowly_starting_service(tmp_path, slow_start)
    service.start(preload=False)
    try:
        with running_ui(service, tmp_path) as ui:
            updates = on_load(ui)
            assert updates["device-details"]["value"] == translate("zh-CN", "device.starting")
            assert updates["device-banner"]["visible"] is False
            banner, _details, poll = tick(ui)
            assert poll.active is True and banner["visible"] is False  # still starting
            release.set()
            service.engine  # noqa: B018 - waits for the start
            banner, details, poll = tick(ui)
            assert poll.active is False  # the timer stops once the report is there
            assert banner["visible"] is True and RTX.name in banner["value"]
            assert details["value"].startswith(translate("zh-CN", "device.runs_on",
                                                         device="cpu", precision="fp32"))
    finally:
        release.set()


def test_an_engine_that_failed_to_start_is_said_in_settings_and_not_waited_for(tmp_path):
    settings = EngineSettings(models_dir=tmp_path / "models", hub_cache_dir=tmp_path / "hub")

    def broken_factory(settings, manifest):
        raise RuntimeError("no torch here")

    service = ImageService(settings, load_manifest(DEFAULT_MANIFEST),
                           engine_factory=broken_factory)
    service.start(preload=False)
    with running_ui(service, tmp_path) as ui:
        updates = on_load(ui)
        assert updates["device-details"]["value"] == error_text("zh-CN", "engine_failed", {})
        assert updates["device-banner"]["visible"] is False
        _banner, _details, poll = tick(ui)
        assert poll.active is False
