"""图生图 and 局部重绘: an init image repainted, wholly or inside a mask painted or uploaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from engine.images import fit_to_limits
from engine.limits import Limits
from engine.requests import Img2ImgRequest, InpaintRequest, ResizeMode
from ui.generation_panel import (
    Generation,
    GenerationPanel,
    PanelContext,
    build_generation_panel,
    wire_generation,
)
from ui.texts import Texts

IMG2IMG, INPAINT = "img2img", "inpaint"


@dataclass(frozen=True)
class Img2ImgInputs:
    """The tab's own inputs: the picture (or canvas and mask) and how it is repainted."""
    sub_tabs: Any
    init_image: Any
    editor: Any
    mask_upload: Any
    mode: Any  # gr.State: IMG2IMG or INPAINT, the sub-tab selected
    strength: Any
    resize_mode: Any
    mask_blur: Any
    invert_mask: Any

    def all(self) -> set[Any]:
        return {self.init_image, self.editor, self.mask_upload, self.mode, self.strength,
                self.resize_mode, self.mask_blur, self.invert_mask}


@dataclass(frozen=True)
class Img2ImgTab:
    panel: GenerationPanel[Img2ImgInputs, None]
    inputs: Img2ImgInputs


def _resize_choices(language: str) -> list[tuple[str, str]]:
    from locales import translate

    return [(translate(language, f"img2img.resize_{mode.value}"), mode.value)
            for mode in ResizeMode]


def mask_from_editor(editor_value: dict | None) -> Image.Image | None:
    """The painted strokes (any layer's alpha) as a white-on-black mask, or None if unpainted."""
    layers = [layer for layer in (editor_value or {}).get("layers") or [] if layer is not None]
    if not layers:
        return None
    alphas = [np.asarray(layer.convert("RGBA").getchannel("A")) for layer in layers]
    painted = np.maximum.reduce(alphas) > 0
    if not painted.any():
        return None
    return Image.fromarray((painted * 255).astype(np.uint8))


def _picture_widgets(texts: Texts) -> tuple[Any, Any, Any, Any, Any]:
    with gr.Tabs() as sub_tabs:
        with gr.Tab(texts("img2img.mode_img2img"), id=IMG2IMG) as img2img_tab:
            texts.bind(img2img_tab, label="img2img.mode_img2img")
            init_image = texts.make(gr.Image, label="img2img.init_image", type="pil",
                                    image_mode=None, sources=["upload", "clipboard"],
                                    height=360, elem_id="img2img-init")
        with gr.Tab(texts("img2img.mode_inpaint"), id=INPAINT) as inpaint_tab:
            texts.bind(inpaint_tab, label="img2img.mode_inpaint")
            editor = texts.make(
                gr.ImageEditor, label="img2img.inpaint_canvas", type="pil", image_mode="RGBA",
                sources=["upload", "clipboard"], layers=False, transforms=(),
                brush=gr.Brush(colors=["#ffffff"], color_mode="fixed", default_size=24),
                eraser=gr.Eraser(default_size=24), height=420, elem_id="inpaint-editor")
            mask_upload = texts.make(gr.Image, label="img2img.mask_upload", type="pil",
                                     image_mode=None, sources=["upload"], height=200,
                                     elem_id="inpaint-mask-upload")
    mode = gr.State(IMG2IMG)
    img2img_tab.select(lambda: IMG2IMG, outputs=mode, queue=False)
    inpaint_tab.select(lambda: INPAINT, outputs=mode, queue=False)
    return sub_tabs, init_image, editor, mask_upload, mode


def _inputs_widgets(texts: Texts, limits: Limits) -> Img2ImgInputs:
    sub_tabs, init_image, editor, mask_upload, mode = _picture_widgets(texts)
    strength = texts.make(gr.Slider, label="img2img.strength", minimum=0.0, maximum=1.0,
                          step=0.01, value=0.75, elem_id="img2img-strength")
    resize_mode = gr.Radio(choices=_resize_choices(texts.language),
                           value=ResizeMode.JUST_RESIZE.value,
                           label=texts("img2img.resize_mode"))
    texts.bind(resize_mode, label="img2img.resize_mode", choices=_resize_choices)
    with gr.Row():
        mask_blur = texts.make(gr.Slider, label="img2img.mask_blur", minimum=0,
                               maximum=limits.max_mask_blur, step=1, value=4)
        invert_mask = texts.make(gr.Checkbox, label="img2img.invert_mask", value=False)
    return Img2ImgInputs(sub_tabs, init_image, editor, mask_upload, mode, strength,
                         resize_mode, mask_blur, invert_mask)


def _request(own: Img2ImgInputs, values: dict, fields: dict[str, Any]) -> Img2ImgRequest:
    fields.update(strength=values[own.strength], resize_mode=ResizeMode(values[own.resize_mode]))
    if values[own.mode] == INPAINT:
        editor, mask_upload = own.editor, own.mask_upload
        background = (values[editor] or {}).get("background")
        mask = values[mask_upload] or mask_from_editor(values[editor])
        return InpaintRequest(init_image=background, mask=mask,
                              mask_blur=int(values[own.mask_blur]),
                              invert_mask=bool(values[own.invert_mask]), **fields)
    return Img2ImgRequest(init_image=values[own.init_image], **fields)


def _wire_size_from_picture(own: Img2ImgInputs, panel: GenerationPanel, limits: Limits) -> None:
    """An uploaded picture sets width and height to the size the engine would fit it to."""
    width, height, batch_size = (panel.parameters.width, panel.parameters.height,
                                 panel.parameters.batch_size)

    def size_of(image: Image.Image | None, batch: float) -> dict[Any, Any]:
        # The size the engine would fit the image to, for the batch size set now.
        if image is None:
            return {width: gr.skip(), height: gr.skip()}
        fitted_width, fitted_height = fit_to_limits(*image.size, limits, int(batch))
        return {width: fitted_width, height: fitted_height}

    # .change also follows 发送到图生图; the editor's own .change fires on every stroke.
    own.init_image.change(size_of, inputs=[own.init_image, batch_size],
                          outputs=[width, height], queue=False)
    own.editor.upload(lambda value, batch: size_of((value or {}).get("background"), batch),
                      inputs=[own.editor, batch_size], outputs=[width, height], queue=False)


def build_img2img_tab(context: PanelContext) -> Img2ImgTab:
    limits = context.service.limits
    panel: GenerationPanel[Img2ImgInputs, None] = build_generation_panel(
        context, "img2img", own_inputs=lambda: _inputs_widgets(context.texts, limits))
    own = panel.own_inputs
    _wire_size_from_picture(own, panel, limits)

    def run(values: dict, request: gr.Request, progress=gr.Progress()):
        job = _request(own, values, panel.request_fields(values))
        return panel.results.showing(context.runner.run_for(request, job, progress),
                                     context.texts)

    wire_generation(panel, context, Generation("img2img", run, own_inputs=own.all()))
    return Img2ImgTab(panel, own)


if __name__ == "__main__":  # python -m ui.img2img_tab: this tab alone, over a fake engine
    from ui.standalone import launch_alone

    launch_alone(build_img2img_tab)
