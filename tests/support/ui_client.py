"""Run the WebUI on a free local port and talk to it with ``gradio_client``, as a browser would.

Generation events take their inputs as a *set* of components, so the positional order of an
endpoint's parameters is whatever Gradio made of that set: ``call`` reads it from the API
description and maps locale labels to positions, filling the rest with their defaults.
"""

from __future__ import annotations

import contextlib
import socket
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from app_settings import Preferences, PreferencesStore
from locales import translate

LANGUAGE = "zh-CN"


def label(key: str, language: str = LANGUAGE) -> str:
    """The label a component shows for a locale key."""
    return translate(language, key)


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@dataclass
class RunningUi:
    """A launched UI: ``client`` is one browser session; ``connect()`` opens another."""

    demo: Any
    client: Any
    url: str
    store: PreferencesStore
    service: Any
    _clients: list

    def connect(self, auth: tuple[str, str] | None = None):
        """Another browser session; with ``auth``, logged in as that user."""
        from gradio_client import Client

        client = Client(self.url, verbose=False, auth=auth)
        self._clients.append(client)
        return client

    def api_name_of(self, component: Any, event: str) -> str:
        """The api name Gradio gave the ``event`` listener of ``component`` (auto-named ones
        included), e.g. a sub-tab's ``select``."""
        for function in self.demo.fns.values():
            if (component._id, event) in function.targets and function.api_name:
                return "/" + function.api_name
        raise LookupError(f"no {event} listener on {component!r}")

    def component_with_elem_id(self, elem_id: str) -> Any:
        found = [block for block in self.demo.blocks.values()
                 if getattr(block, "elem_id", None) == elem_id]
        if len(found) != 1:
            raise LookupError(f"{len(found)} components with elem_id {elem_id!r}")
        return found[0]

    def component_with_label(self, text: str, kind: type | None = None) -> Any:
        found = [block for block in self.demo.blocks.values()
                 if getattr(block, "label", None) == text
                 and (kind is None or isinstance(block, kind))]
        if len(found) != 1:
            raise LookupError(f"{len(found)} components labelled {text!r}")
        return found[0]


@contextlib.contextmanager
def running_ui(service: Any, tmp_path: Path, preferences: Preferences | None = None,
               demo_mode: bool = False, auth: list[tuple[str, str]] | None = None,
               **options: Any) -> Iterator[RunningUi]:
    """Build, queue and launch the UI for ``service``; yields a ``RunningUi``; closes after.
    ``options`` go to ``UiOptions`` (``access=``, ...); the output folder's base is
    ``tmp_path`` unless ``outputs_base=`` says otherwise."""
    from gradio_client import Client

    from ui.app import UiOptions, build_ui

    store = PreferencesStore(Path(tmp_path) / "settings.json")
    options.setdefault("outputs_base", Path(tmp_path))
    demo = build_ui(service, UiOptions(preferences or Preferences(), demo=demo_mode, **options),
                    store)
    demo.queue(default_concurrency_limit=1)
    port = free_port()
    demo.launch(prevent_thread_lock=True, server_name="127.0.0.1", server_port=port,
                quiet=True, show_error=False, auth=auth)
    clients: list = []
    try:
        url = f"http://127.0.0.1:{port}/"
        client = Client(url, verbose=False, auth=auth[0] if auth else None)
        clients.append(client)
        yield RunningUi(demo, client, url, store, service, clients)
    finally:
        _close_all(clients)
        demo.close()


def _close_all(clients: list) -> None:
    """Close clients side by side: each waits up to a second for its heartbeat thread."""
    def close(client) -> None:
        with contextlib.suppress(Exception):
            client.close()

    closers = [threading.Thread(target=close, args=(client,)) for client in clients]
    for closer in closers:
        closer.start()
    for closer in closers:
        closer.join()


def parameters(client: Any, api_name: str) -> list[dict]:
    api = client.view_api(return_format="dict", print_info=False)
    return api["named_endpoints"][api_name]["parameters"]


def arguments(client: Any, api_name: str, values_by_label: dict[str, Any]) -> list[Any]:
    """Positional arguments for ``api_name``: labelled values where given, defaults elsewhere."""
    params = parameters(client, api_name)
    labels = [param["label"] for param in params]
    unknown = set(values_by_label) - set(labels)
    if unknown:
        raise KeyError(f"{api_name} has no parameter labelled {sorted(unknown)}; "
                       f"it has {labels}")
    for text in values_by_label:
        if labels.count(text) > 1:
            raise KeyError(f"{api_name} has {labels.count(text)} parameters labelled {text!r}")
    return [values_by_label[param["label"]] if param["label"] in values_by_label
            else (param["parameter_default"] if param["parameter_has_default"] else None)
            for param in params]


def call(client: Any, api_name: str, **values_by_label: Any) -> Any:
    """``client.predict`` with arguments named by their (locale) labels."""
    return client.predict(*arguments(client, api_name, values_by_label), api_name=api_name)


def submit(client: Any, api_name: str, **values_by_label: Any) -> Any:
    """``client.submit`` with arguments named by their labels; returns the job."""
    return client.submit(*arguments(client, api_name, values_by_label), api_name=api_name)


def by_keys(**values_by_key: Any) -> dict[str, Any]:
    """``{label: value}`` from ``{locale key with "." written as "__": value}``."""
    return {label(key.replace("__", ".")): value for key, value in values_by_key.items()}
