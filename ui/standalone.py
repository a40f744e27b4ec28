"""One generation tab on its own, for quick work on that tab: ``python -m ui.txt2img_tab`` (or
``ui.img2img_tab``, ``ui.controlnet_tab``) opens just it, under a model picker, over the real
service and the torch-free ``engine.fake_engine`` (solid-colour images; placeholder models in a
temporary folder that goes when it stops). Nothing is downloaded and torch is never imported,
so it opens in seconds; every tab is built from a ``PanelContext`` and nothing else.
"""

from __future__ import annotations

import argparse
import logging
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gradio as gr

from engine.interfaces import ImageServiceLike
from engine.samplers import DEFAULT_SAMPLER
from engine.store.manifest import ModelKind
from locales import LANGUAGES
from ui.generation_panel import PanelContext
from ui.job_runner import JobRunner
from ui.texts import Texts

logger = logging.getLogger(__name__)

TabBuilder = Callable[[PanelContext], Any]


def build_alone(build_tab: TabBuilder, service: ImageServiceLike,
                language: str = "zh-CN") -> tuple[gr.Blocks, Any]:
    """The tab in a page of its own with a model picker; returns the page and the tab."""
    texts = Texts(language)
    with gr.Blocks(title="画境 Huajing", analytics_enabled=False) as page:
        choices = [(entry.name.text(texts.language), entry.id)
                   for entry in service.entries(ModelKind.BASE)]
        model = gr.Dropdown(choices=choices, value=service.active_model,
                            label=texts("app.model"), elem_id="model-picker")
        context = PanelContext(service, texts, JobRunner(service, texts), model,
                               DEFAULT_SAMPLER, gpu=lambda handler: handler)
        tab = build_tab(context)
    return page, tab


def launch_alone(build_tab: TabBuilder, argv: list[str] | None = None) -> None:
    """``if __name__ == "__main__"`` of a tab module: serve it alone on 127.0.0.1 until Ctrl-C."""
    from engine.fake_engine import fake_image_service

    parser = argparse.ArgumentParser(description="One tab over a fake engine (no torch).")
    parser.add_argument("--port", type=int, default=7870)
    parser.add_argument("--lang", choices=LANGUAGES, default="zh-CN")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO)
    with tempfile.TemporaryDirectory(prefix="huajing-tab-") as folder:
        service, _engine = fake_image_service(Path(folder), output_dir=Path(folder) / "outputs")
        page, _tab = build_alone(build_tab, service, args.lang)
        logger.info("%s alone over the fake engine", getattr(build_tab, "__name__", "tab"))
        page.queue().launch(server_name="127.0.0.1", server_port=args.port)
