"""文生图: prompt to images."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.requests import Txt2ImgRequest
from ui.common import (
    JobRunner, on_generate, ParameterWidgets, PromptWidgets, ResultWidgets, common_request_fields,
    parameter_widgets, prompt_row, result_widgets, show_result,
    wire_interrupt, wire_seed_buttons, wire_token_counter,
)
from engine.interfaces import ImageServiceLike
from ui.texts import Texts


@dataclass(frozen=True)
class Txt2ImgTab:
    prompts: PromptWidgets
    parameters: ParameterWidgets
    results: ResultWidgets
    generate: Any
    interrupt: Any
    send_to_img2img: Any
    send_to_controlnet: Any


def build_txt2img_tab(service: ImageServiceLike, texts: Texts, runner: JobRunner, model: Any,
                      default_sampler: str, gpu) -> Txt2ImgTab:
    limits = service.limits
    prompts, generate, interrupt = prompt_row(texts, limits, "txt2img", runner)
    with gr.Row():
        with gr.Column(scale=1):
            parameters = parameter_widgets(texts, limits, default_sampler,
                                           service.default_size(service.active_model), "txt2img")
        with gr.Column(scale=1):
            results = result_widgets(texts, "txt2img")
            with gr.Row():
                send_to_img2img = texts.make(gr.Button, text="common.send_to_img2img",
                                             size="sm")
                send_to_controlnet = texts.make(gr.Button, text="common.send_to_controlnet",
                                                size="sm")

    def run(values: dict, request: gr.Request, progress=gr.Progress()):
        fields = common_request_fields(values, prompts, parameters, values[model])
        result = runner.run_for(request, Txt2ImgRequest(**fields), progress)
        return show_result(result, texts)

    on_generate(generate, runner, gpu(run), results,
                inputs={model, prompts.prompt, prompts.negative, *parameters.inputs()},
                outputs=[results.gallery, results.info, results.seeds], api_name="txt2img")
    wire_interrupt(interrupt, runner)
    wire_seed_buttons(parameters, results)
    wire_token_counter(service, texts, prompts, model)
    return Txt2ImgTab(prompts, parameters, results, generate, interrupt, send_to_img2img,
                      send_to_controlnet)
