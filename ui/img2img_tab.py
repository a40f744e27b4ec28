"""图生图 and 局部重绘: an init image repainted, wholly or inside a mask painted or uploaded."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr
import numpy as np
from PIL import Image

from engine.images import fit_to_limits
from engine.requests import Img2ImgRequest, InpaintRequest, ResizeMode
from ui.common import (
    JobRunner, on_generate, ParameterWidgets, PromptWidgets, ResultWidgets, common_request_fields,
    parameter_widgets, prompt_row, result_widgets, show_result, wire_interrupt,
    wire_seed_buttons, wire_token_counter,
)
from engine.interfaces import ImageServiceLike
from ui.texts import Texts

IMG2IMG, INPAINT = "img2img", "inpaint"


@dataclass(frozen=True)
class Img2ImgTab:
    prompts: PromptWidgets
    parameters: ParameterWidgets
    results: ResultWidgets
    init_image: Any
    editor: Any
    mask_upload: Any
    mode: Any
    sub_tabs: Any
    generate: Any


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


def _inputs_widgets(texts: Texts, limits) -> tuple[Any, Any, Any, Any, Any]:
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


def build_img2img_tab(service: ImageServiceLike, texts: Texts, runner: JobRunner, model: Any,
                      default_sampler: str, gpu) -> Img2ImgTab:
    limits = service.limits
    prompts, generate, interrupt = prompt_row(texts, limits, "img2img", runner)
    with gr.Row():
        with gr.Column(scale=1):
            sub_tabs, init_image, editor, mask_upload, mode = _inputs_widgets(texts, limits)
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
            parameters = parameter_widgets(texts, limits, default_sampler,
                                           service.default_size(service.active_model), "img2img")
        with gr.Column(scale=1):
            results = result_widgets(texts, "img2img")

    def size_of(image: Image.Image | None, batch_size: float):
        # The size the engine would fit the image to, for the batch size set now.
        if image is None:
            return gr.skip(), gr.skip()
        return fit_to_limits(*image.size, limits, int(batch_size))

    sizes = [parameters.width, parameters.height]
    # .change also follows 发送到图生图; the editor's own .change fires on every stroke.
    init_image.change(size_of, inputs=[init_image, parameters.batch_size], outputs=sizes,
                      queue=False)
    editor.upload(lambda value, batch_size: size_of((value or {}).get("background"), batch_size),
                  inputs=[editor, parameters.batch_size], outputs=sizes, queue=False)

    def run(values: dict, request: gr.Request, progress=gr.Progress()):
        fields = common_request_fields(values, prompts, parameters, values[model])
        fields.update(strength=values[strength], resize_mode=ResizeMode(values[resize_mode]))
        job: Img2ImgRequest  # an InpaintRequest is one too
        if values[mode] == INPAINT:
            background = (values[editor] or {}).get("background")
            mask = values[mask_upload] or mask_from_editor(values[editor])
            job = InpaintRequest(init_image=background, mask=mask,
                                 mask_blur=int(values[mask_blur]),
                                 invert_mask=bool(values[invert_mask]), **fields)
        else:
            job = Img2ImgRequest(init_image=values[init_image], **fields)
        result = runner.run_for(request, job, progress)
        return show_result(result, texts)

    on_generate(generate, runner, gpu(run), results,
                inputs={model, mode, init_image, editor, mask_upload, strength, resize_mode,
                        mask_blur, invert_mask, prompts.prompt, prompts.negative,
                        *parameters.inputs()},
                outputs=[results.gallery, results.info, results.seeds], api_name="img2img")
    wire_interrupt(interrupt, runner)
    wire_seed_buttons(parameters, results)
    wire_token_counter(service, texts, prompts, model)
    return Img2ImgTab(prompts, parameters, results, init_image, editor, mask_upload, mode,
                      sub_tabs, generate)
