"""At start-up the app logs what generation runs on, once the engine has started, and warns
with the fix when an NVIDIA GPU is present that torch cannot use: the real ``app.main`` over
the real service on the fake engine with a faked report; serving is left out."""

from __future__ import annotations

import logging
import threading

import pytest
from PIL import Image

from engine.device_report import TorchFacts, build_device_report
from engine.fake_engine import SlowStart, fake_image_service, slowly_starting_service
from engine.service import ImageService
from installer.probes import NvidiaGpu
from locales import translate
from tests.support.ui_client import free_port

pytestmark = pytest.mark.servers

RTX = NvidiaGpu("NVIDIA GeForce RTX 4090", "572.16", 24564)
CPU_TORCH = TorchFacts(device="cpu", requested_device="auto", precision="fp32",
                       torch_version="2.7.1+cpu", cuda_version=None, hip_version=None,
                       mps_built=False)
GPU_UNUSED = build_device_report(CPU_TORCH, lambda: [RTX], "Linux")


def run_main(tmp_path, monkeypatch, service: ImageService, *flags: str) -> None:
    import app

    for name in ("SPACE_ID", "GRADIO_SERVER_NAME", "PORT", "GRADIO_SERVER_PORT", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # main sets it
    monkeypatch.setattr(app, "configure_logging", lambda verbose: None)
    monkeypatch.setattr(app, "build_service", lambda *args, **kwargs: service)
    monkeypatch.setattr(app, "serve", lambda guarded_app, settings: 0)
    assert app.main(["--port", str(free_port()), "--data-dir", str(tmp_path / "data"),
                     "--outputs-base", str(tmp_path), *flags]) == 0


def logged(caplog, level: int) -> list[str]:
    return [record.getMessage() for record in caplog.records
            if record.name == "huajing" and record.levelno == level]


@pytest.mark.parametrize(("flags", "language"), [((), "zh-CN"), (("--lang", "en"), "en")])
def test_start_up_logs_the_device_and_warns_with_the_fix(tmp_path, monkeypatch, caplog, flags,
                                                         language):
    caplog.set_level(logging.INFO, logger="huajing")
    service, _engine = fake_image_service(tmp_path / "engine", device_report=GPU_UNUSED)
    run_main(tmp_path, monkeypatch, service, *flags)
    assert logged(caplog, logging.INFO)[0] == "device: cpu in fp32, torch 2.7.1+cpu (CPU build)"
    assert logged(caplog, logging.WARNING) == [translate(
        language, "warnings.gpu_unused_torch_cpu", gpu=RTX.name,
        command="./run.sh --torch auto")]


def test_a_healthy_device_is_one_info_line_and_no_warning(tmp_path, monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="huajing")
    service, _engine = fake_image_service(tmp_path / "engine")
    run_main(tmp_path, monkeypatch, service)
    assert [line for line in logged(caplog, logging.INFO) if line.startswith("device:")] == [
        "device: cpu in fp32, torch fake (CPU build)"]
    assert logged(caplog, logging.WARNING) == []


def test_the_line_comes_once_the_engine_has_started_and_main_does_not_wait(tmp_path,
                                                                           monkeypatch, caplog):
    caplog.set_level(logging.INFO, logger="huajing")
    slow_start = SlowStart(configure=lambda engine: setattr(engine, "report", GPU_UNUSED))
    release = slow_start.release
    service = slowly_starting_service(tmp_path, slow_start)
    try:
        run_main(tmp_path, monkeypatch, service)  # returns while the engine is still starting
        assert not [line for line in logged(caplog, logging.INFO) if line.startswith("device:")]
    finally:
        release.set()
    service.engine  # noqa: B018 - waits for the start; the hook runs before the preload
    for _ in range(100):
        if logged(caplog, logging.WARNING):
            break
        threading.Event().wait(0.05)
    assert "device: cpu in fp32, torch 2.7.1+cpu (CPU build)" in logged(caplog, logging.INFO)
    assert "./run.sh --torch auto" in logged(caplog, logging.WARNING)[0]
