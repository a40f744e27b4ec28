"""文生图: prompt to images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.requests import Txt2ImgRequest
from ui.generation_panel import (
    Generation,
    GenerationPanel,
    PanelContext,
    build_generation_panel,
    wire_generation,
)
from ui.texts import Texts


@dataclass(frozen=True)
class SendButtons:
    """Under the results: the selected image to another tab."""
    to_img2img: Any
    to_controlnet: Any


@dataclass(frozen=True)
class Txt2ImgTab:
    panel: GenerationPanel[None, SendButtons]
    send: SendButtons


def _send_buttons(texts: Texts) -> SendButtons:
    with gr.Row():
        to_img2img = texts.make(gr.Button, text="common.send_to_img2img", size="sm")
        to_controlnet = texts.make(gr.Button, text="common.send_to_controlnet", size="sm")
    return SendButtons(to_img2img, to_controlnet)


def build_txt2img_tab(context: PanelContext) -> Txt2ImgTab:
    panel: GenerationPanel[None, SendButtons] = build_generation_panel(
        context, "txt2img", own_outputs=lambda: _send_buttons(context.texts))

    def run(values: dict, request: gr.Request, progress=gr.Progress()):
        job = Txt2ImgRequest(**panel.request_fields(values))
        return panel.results.showing(context.runner.run_for(request, job, progress),
                                     context.texts)

    wire_generation(panel, context, Generation("txt2img", run, own_inputs=set()))
    return Txt2ImgTab(panel, panel.own_outputs)


if __name__ == "__main__":  # python -m ui.txt2img_tab: this tab alone, over a fake engine
    from ui.standalone import launch_alone

    launch_alone(build_txt2img_tab)
