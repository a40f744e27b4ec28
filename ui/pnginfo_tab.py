"""图片信息 (PNG Info): read the parameters a PNG carries and send them to a generation tab."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
from PIL import Image

from engine.metadata.reading import read_image_parameters
from ui.generation_widgets import ParameterWidgets, PromptWidgets
from ui.texts import Texts


@dataclass(frozen=True)
class PngInfoTab:
    image: Any
    raw: Any
    parsed: Any
    send_to_txt2img: Any
    send_to_img2img: Any


def read_parameters(image: Image.Image | None) -> tuple[str, dict]:
    """Ours (exact), A1111's or ComfyUI's parameters; nothing when the image has none."""
    found = read_image_parameters(image) if image is not None else None
    if found is None:
        return "", {}
    return found.text, found.parameters


def build_pnginfo_tab(texts: Texts) -> PngInfoTab:
    with gr.Row():
        with gr.Column():
            image = texts.make(gr.Image, label="pnginfo.image", type="pil", image_mode=None,
                               sources=["upload", "clipboard"], height=400,
                               elem_id="pnginfo-image")
        with gr.Column():
            raw = texts.make(gr.Textbox, label="pnginfo.raw", lines=8, interactive=False,
                             elem_id="pnginfo-raw")
            parsed = gr.State({})
            with gr.Row():
                send_to_txt2img = texts.make(gr.Button, text="pnginfo.send_to_txt2img",
                                             elem_id="pnginfo-send-txt2img")
                send_to_img2img = texts.make(gr.Button, text="pnginfo.send_to_img2img",
                                             elem_id="pnginfo-send-img2img")

    def show(picture: Image.Image | None) -> dict[Any, Any]:
        text, values = read_parameters(picture)
        if picture is not None and not text:
            gr.Info(texts("pnginfo.nothing"))
        return {raw: text, parsed: values}

    image.change(show, inputs=image, outputs=[raw, parsed], api_name="png_info")
    return PngInfoTab(image, raw, parsed, send_to_txt2img, send_to_img2img)


def wire_send_parameters(button: Any, parsed: Any, prompts: PromptWidgets,
                         parameters: ParameterWidgets, tabs: Any, target_tab: str) -> None:
    """Fill a tab's fields from parsed parameters; fields the text lacks are left alone."""
    fields = [(prompts.prompt, "prompt"), (prompts.negative, "negative_prompt"),
              (parameters.sampler, "sampler"), (parameters.schedule, "schedule"),
              (parameters.steps, "steps"), (parameters.guidance, "guidance"),
              (parameters.seed, "seed"), (parameters.width, "width"),
              (parameters.height, "height")]

    def send(values: dict) -> dict[Any, Any]:
        return {**{widget: values.get(key, gr.skip()) for widget, key in fields},
                tabs: gr.Tabs(selected=target_tab)}

    button.click(send, inputs=parsed, outputs=[c for c, _ in fields] + [tabs], queue=False)
