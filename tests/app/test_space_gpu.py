"""ZeroGPU (README: 若安装了 ``spaces``，生成函数会用 ``spaces.GPU`` 包装): ``app.main`` hands
``spaces.GPU`` to the WebUI, which wraps every handler that runs the model with it, so a
generation started from the page runs inside the wrapper; without ``spaces`` nothing is wrapped.

``spaces`` here is a stand-in module that records what it wrapped and counts the calls; the
app is composed by the real ``app.main`` over the real service on the torch-free fake engine
(``engine.fake_engine``) and served by our own server thread, driven with ``gradio_client`` as
a browser session would drive it.
"""

from __future__ import annotations

import contextlib
import functools
import sys
import types
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gradio_client import handle_file
from PIL import Image

from api.server import build_server
from engine.fake_engine import FakeEngine, fake_image_service
from engine.requests import ControlNetRequest, Img2ImgRequest, Txt2ImgRequest
from engine.service import ImageService
from tests.support.ui_client import by_keys, call, free_port

PROMPT = "雾蒙蒙的日出在湖面上"
SMALL = dict(common__width=64, common__height=64, common__steps=2)
# What runs the model on a GPU: the three generation tabs and ControlNet's map preview.
GPU_HANDLERS = {
    "txt2img": "build_txt2img_tab.<locals>.run",
    "img2img": "build_img2img_tab.<locals>.run",
    "controlnet": "build_controlnet_tab.<locals>.run",
    "controlnet_preview": "build_controlnet_tab.<locals>.show_preview",
}


class FakeSpaces(types.ModuleType):
    """``spaces`` as ZeroGPU installs it: ``GPU`` wraps a function (also as ``GPU(duration=)``)."""

    def __init__(self) -> None:
        super().__init__("spaces")
        self.wrapped: list[str] = []
        self.calls: Counter[str] = Counter()

    def GPU(self, function: Callable | None = None, **_options: Any):  # named like spaces.GPU
        if function is None:
            return lambda inner: self.GPU(inner)
        name = function.__qualname__
        self.wrapped.append(name)

        @functools.wraps(function)  # Gradio reads the signature (gr.Request, gr.Progress)
        def on_gpu(*args, **kwargs):
            self.calls[name] += 1
            return function(*args, **kwargs)

        return on_gpu


@dataclass
class Composed:
    """What ``app.main`` built: the UI, the options it gave it, and where it is served."""

    url: str = ""
    ui: Any = None
    options: Any = None
    app: Any = None


@contextlib.contextmanager
def served_by_main(tmp_path: Path, monkeypatch,
                   service: ImageService) -> Iterator[Composed]:
    """Run ``app.main`` with ``service`` (the real service over the fake engine, whose ``start``
    main calls once the UI is built); its app is served here until the block ends."""
    import app
    import ui.app as ui_app

    composed = Composed()
    for name in ("SPACE_ID", "GRADIO_SERVER_NAME", "PORT", "GRADIO_SERVER_PORT", "HF_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", Image.MAX_IMAGE_PIXELS)  # main sets it
    monkeypatch.setattr(app, "configure_logging", lambda verbose: None)
    monkeypatch.setattr(app, "build_service", lambda *args, **kwargs: service)
    real_build_ui = ui_app.build_ui

    def build_ui(service, options, store):
        composed.options = options
        composed.ui = real_build_ui(service, options, store)
        return composed.ui

    def serve(guarded_app, settings) -> int:
        composed.app = guarded_app
        return 0

    monkeypatch.setattr(ui_app, "build_ui", build_ui)
    monkeypatch.setattr(app, "serve", serve)
    port = free_port()
    assert app.main(["--port", str(port), "--data-dir", str(tmp_path / "data"),
                     "--outputs-base", str(tmp_path)]) == 0
    server = build_server(composed.app, "127.0.0.1", port)
    thread = server.start_in_thread()
    composed.url = f"http://127.0.0.1:{port}/"
    try:
        yield composed
    finally:
        server.should_exit = True
        thread.join(10)


@contextlib.contextmanager
def browser_session(url: str):
    from gradio_client import Client

    client = Client(url, verbose=False)
    try:
        yield client
    finally:
        client.close()


def registered_handler(ui: Any, api_name: str) -> Callable:
    """The function Gradio calls for the event named ``api_name``."""
    [block] = [f for f in ui.fns.values() if f.api_name == api_name]
    return block.fn


def png(path: Path) -> str:
    Image.new("RGB", (64, 64), (20, 120, 220)).save(path)
    return str(path)


@pytest.fixture
def zerogpu(monkeypatch) -> FakeSpaces:
    spaces = FakeSpaces()
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    return spaces


@pytest.fixture
def served(tmp_path) -> tuple[ImageService, FakeEngine]:
    return fake_image_service(tmp_path / "fake")


@pytest.fixture
def no_spaces(monkeypatch) -> None:
    monkeypatch.setitem(sys.modules, "spaces", None)  # ``import spaces`` raises ImportError


def test_gpu_decorator_is_spaces_gpu_only_when_spaces_is_installed(monkeypatch):
    import app

    spaces = FakeSpaces()
    monkeypatch.setitem(sys.modules, "spaces", spaces)
    assert app.gpu_decorator() == spaces.GPU
    monkeypatch.setitem(sys.modules, "spaces", None)
    assert app.gpu_decorator() is None


@pytest.mark.servers
def test_main_wraps_every_generation_handler_with_spaces_gpu(tmp_path, monkeypatch, zerogpu,
                                                             served):
    with served_by_main(tmp_path, monkeypatch, served[0]) as composed:
        assert composed.options.gpu == zerogpu.GPU
        assert set(GPU_HANDLERS.values()) <= set(zerogpu.wrapped)
        for api_name, handler in GPU_HANDLERS.items():
            registered = registered_handler(composed.ui, api_name)
            assert registered.__wrapped__.__qualname__ == handler, api_name
        assert not zerogpu.calls  # wrapped once at build time; nothing ran yet


@pytest.mark.servers
def test_a_generation_from_the_page_runs_inside_spaces_gpu(tmp_path, monkeypatch, zerogpu,
                                                          served):
    service, engine = served
    with served_by_main(tmp_path, monkeypatch, service) as composed, \
            browser_session(composed.url) as client:
        call(client, "/txt2img", **by_keys(common__prompt=PROMPT, common__seed=5, **SMALL))
        assert zerogpu.calls == Counter({GPU_HANDLERS["txt2img"]: 1})
        assert [type(r) for r in engine.requests] == [Txt2ImgRequest]

        image = handle_file(png(tmp_path / "init.png"))
        call(client, "/img2img", **by_keys(common__prompt=PROMPT, img2img__init_image=image,
                                           **SMALL))
        call(client, "/controlnet", **by_keys(common__prompt="白色的小鸟",
                                              controlnet__image=image, **SMALL))
    assert [type(r) for r in engine.requests] == [Txt2ImgRequest, Img2ImgRequest,
                                               ControlNetRequest]
    assert zerogpu.calls == Counter({GPU_HANDLERS[name]: 1
                                     for name in ("txt2img", "img2img", "controlnet")})


@pytest.mark.servers
def test_without_spaces_nothing_is_wrapped_and_generation_still_works(tmp_path, monkeypatch,
                                                                      no_spaces, served):
    service, engine = served
    with served_by_main(tmp_path, monkeypatch, service) as composed, \
            browser_session(composed.url) as client:
        assert composed.options.gpu is None
        for api_name, handler in GPU_HANDLERS.items():
            registered = registered_handler(composed.ui, api_name)
            assert registered.__qualname__ == handler and not hasattr(registered,
                                                                      "__wrapped__")
        result = call(client, "/txt2img", **by_keys(common__prompt=PROMPT, **SMALL))
    assert len(result[0]) == 1 and [type(r) for r in engine.requests] == [Txt2ImgRequest]
