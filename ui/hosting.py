"""The WebUI inside our own HTTP app: Gradio's app mounted behind the API's routes and the
request guard, served by our uvicorn (``api/server.py`` says why), instead of ``launch``.
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

import gradio as gr
from gradio.routes import App as GradioApp

logger = logging.getLogger(__name__)


def mount_ui(app: Any, ui: gr.Blocks, auth: list[tuple[str, str]] | None, max_file_size: str,
             server_name: str, server_port: int) -> GradioApp:
    """Mount ``ui`` at the root of ``app`` (routes added before it keep priority)."""
    gr.mount_gradio_app(app, ui, path="/", auth=auth, show_error=False,
                        max_file_size=max_file_size, footer_links=["api", "gradio"],
                        server_name=server_name, server_port=server_port)
    return _mounted_gradio_app(app)


def _mounted_gradio_app(app: Any) -> GradioApp:
    for route in reversed(app.routes):
        if isinstance(getattr(route, "app", None), GradioApp):
            return route.app
    raise RuntimeError("the Gradio app was not mounted")


def login_cookie_user(gradio_app: GradioApp) -> Callable[[Mapping[str, str]], str | None]:
    """The user a request's Gradio login cookie belongs to, for the guard: the same tokens and
    cookie names Gradio's own ``login_check`` reads."""
    names = (f"access-token-{gradio_app.cookie_id}",
             f"access-token-unsecure-{gradio_app.cookie_id}")

    def user(cookies: Mapping[str, str]) -> str | None:
        for name in names:
            token = cookies.get(name)
            if token and token in gradio_app.tokens:
                return gradio_app.tokens[token]
        return None

    return user


def open_share_link(local_host: str, local_port: int) -> str:
    """A public gradio.live address that forwards to this server (Gradio's own tunnel)."""
    from gradio import networking

    url = networking.setup_tunnel(local_host=local_host, local_port=local_port,
                                  share_token=secrets.token_urlsafe(32),
                                  share_server_address=None, share_server_tls_certificate=None)
    public = "https://" + (urlsplit(url).netloc or url)
    logger.info("public share link: %s", public)
    return public
