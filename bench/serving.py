"""The real serving stack (``app.build_http_app``: the HTTP API and the WebUI on one port, our
uvicorn, the real service and job queue) over the benchmark's engine, on 127.0.0.1; the engine
is wrapped only to record the prepared request each job hands it."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from bench.context import BenchContext

# A queued Gradio event that does nothing, added to the served UI: what any job through the
# Gradio queue costs a gradio_client caller before the job's own work (queue join, SSE stream,
# the client's message loop), measured beside the txt2img job so the figure's note can say so.
EMPTY_EVENT = "bench_empty"


class RecordingEngine:
    """The engine, remembering the last prepared request it was asked to run."""

    def __init__(self, engine: Any) -> None:
        self._engine = engine
        self.last_prepared: Any = None

    def generate(self, prepared: Any, *, on_progress: Any = None,
                 cancel: threading.Event | None = None) -> Any:
        self.last_prepared = prepared
        return self._engine.generate(prepared, on_progress=on_progress, cancel=cancel)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._engine, name)


@dataclass
class ServedApp:
    url: str
    recorder: RecordingEngine
    service: Any
    # Clients opened against the app (gradio_client's keep a heartbeat thread): closed at exit.
    clients: list[Any] = field(default_factory=list)


@contextmanager
def served_app(context: BenchContext) -> Iterator[ServedApp]:
    from api.server import build_server
    from app import build_http_app
    from app_settings import AppSettings, Preferences, PreferencesStore
    from bench.startup import free_port
    from engine.demo.build import demo_manifest_yaml
    from engine.service import ImageService
    from engine.store.manifest import parse_manifest
    from ui.app import UiOptions, build_ui

    recorder = RecordingEngine(context.engine)
    outputs = context.root / "outputs"
    service = ImageService(context.engine.settings, parse_manifest(demo_manifest_yaml()),
                           output_dir=outputs, active_model=context.base_id,
                           engine_factory=lambda _settings, _manifest: recorder)
    service.start(preload=False)
    store = PreferencesStore(context.root / "settings.json")
    ui = build_ui(service, UiOptions(Preferences(output_dir=str(outputs)),
                                     outputs_base=context.root), store)
    _add_empty_event(ui)
    ui.queue(max_size=32, default_concurrency_limit=1)
    port = free_port()
    server = build_server(build_http_app(ui, service, AppSettings(port=port)), "127.0.0.1", port)
    thread = server.start_in_thread()
    app = ServedApp(f"http://127.0.0.1:{port}", recorder, service)
    try:
        yield app
    finally:
        for client in app.clients:
            client.close()
        server.should_exit = True
        thread.join(10)


def _add_empty_event(ui: Any) -> None:
    import gradio as gr

    with ui:
        gr.Button(visible=False).click(lambda: None, api_name=EMPTY_EVENT)
