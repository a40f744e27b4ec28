"""可控生成 (ControlNet): a control image, its preprocessed map shown before generating."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import gradio as gr

from engine.errors import EngineError
from engine.requests import ControlNetRequest, ControlSpec
from engine.samplers import SAMPLERS
from engine.store.manifest import ModelKind, Recommended
from ui.common import (
    GPU_QUEUE, JobRunner, ParameterWidgets, PromptWidgets, ResultWidgets, as_int,
    common_request_fields, on_generate,
    parameter_widgets, prompt_row, result_widgets, show_result, wire_interrupt,
    wire_seed_buttons, wire_token_counter,
)
from engine.interfaces import ImageServiceLike
from ui.texts import Texts


@dataclass(frozen=True)
class ControlNetTab:
    prompts: PromptWidgets
    parameters: ParameterWidgets
    results: ResultWidgets
    control_image: Any
    control_type: Any
    controlnet: Any
    preview: Any
    preview_button: Any
    generate: Any


@dataclass(frozen=True)
class _ControlWidgets:
    image: Any
    control_type: Any
    controlnet: Any
    preprocess: Any
    low: Any
    high: Any
    weight: Any
    start: Any
    end: Any

    def spec(self, values: dict) -> ControlSpec:
        return ControlSpec(
            model=values[self.controlnet] or "", control_type=values[self.control_type],
            image=values[self.image], weight=values[self.weight], start=values[self.start],
            end=values[self.end], low_threshold=as_int(values[self.low]),
            high_threshold=as_int(values[self.high]), preprocess=bool(values[self.preprocess]))

    def inputs(self) -> set[Any]:
        return {self.image, self.control_type, self.controlnet, self.preprocess, self.low,
                self.high, self.weight, self.start, self.end}


def _type_choices(service: ImageServiceLike) -> Callable[[str], list[tuple[str, str]]]:
    def choices(language: str) -> list[tuple[str, str]]:
        from locales import translate

        return [(translate(language, f"controlnet.type_{name}"), name)
                for name in service.control_types()]

    return choices


def controlnet_choices(service: ImageServiceLike, base: str,
                       language: str) -> list[tuple[str, str]]:
    """ControlNets for ``base`` first; the others are marked as made for another model."""
    from locales import translate

    choices = []
    for entry in service.controlnets_for(base):
        name = entry.name.text(language)
        if entry.base != base:
            name = translate(language, "controlnet.other_base", name=name, base=entry.base)
        choices.append((name, entry.id))
    return choices


def recommended_settings(service: ImageServiceLike, controlnet: str | None,
                         base: str) -> Recommended:
    """What the tab starts at: the manifest's recommendation for the ControlNet it offers
    first, each setting it leaves out from the base model's (PAI's ControlNets: Euler a,
    guidance 5), else nothing (the widgets' own defaults)."""
    found = ([entry for entry in service.controlnets_for(base) if entry.id == controlnet]
             + [entry for entry in service.entries(ModelKind.BASE) if base in (entry.id,
                                                                               entry.repo)])
    merged: dict[str, Any] = {}
    for entry in reversed(found):  # the ControlNet's own settings win over the base's
        merged.update(entry.recommended.model_dump(exclude_none=True))
    return Recommended(**merged)


def _control_widgets(service: ImageServiceLike, texts: Texts) -> _ControlWidgets:
    limits = service.limits
    image = texts.make(gr.Image, label="controlnet.image", type="pil", image_mode=None,
                       sources=["upload", "clipboard"], height=300, elem_id="controlnet-image")
    type_choices = _type_choices(service)
    control_type = gr.Dropdown(choices=type_choices(texts.language), value="canny",
                               label=texts("controlnet.control_type"),
                               elem_id="controlnet-type")
    texts.bind(control_type, label="controlnet.control_type", choices=type_choices)
    model_choices = controlnet_choices(service, service.active_model, texts.language)
    controlnet = texts.make(gr.Dropdown, label="controlnet.model", choices=model_choices,
                            value=model_choices[0][1] if model_choices else None,
                            elem_id="controlnet-model")
    texts.bind(controlnet, choices=lambda language: controlnet_choices(
        service, service.active_model, language))
    preprocess = texts.make(gr.Checkbox, label="controlnet.preprocess", value=True)
    with gr.Row():
        low = texts.make(gr.Slider, label="controlnet.low_threshold", minimum=0,
                         maximum=limits.max_canny_threshold, step=1, value=100)
        high = texts.make(gr.Slider, label="controlnet.high_threshold", minimum=0,
                          maximum=limits.max_canny_threshold, step=1, value=200)
    weight = texts.make(gr.Slider, label="controlnet.weight", minimum=limits.min_control_weight,
                        maximum=limits.max_control_weight, step=0.05, value=1.0)
    with gr.Row():
        start = texts.make(gr.Slider, label="controlnet.start", minimum=0, maximum=1,
                           step=0.01, value=0.0)
        end = texts.make(gr.Slider, label="controlnet.end", minimum=0, maximum=1, step=0.01,
                         value=1.0)
    control_type.change(lambda kind: [gr.update(visible=kind == "canny")] * 2,
                        inputs=control_type, outputs=[low, high], queue=False)
    return _ControlWidgets(image, control_type, controlnet, preprocess, low, high, weight,
                           start, end)


def build_controlnet_tab(service: ImageServiceLike, texts: Texts, runner: JobRunner, model: Any,
                         default_sampler: str, gpu) -> ControlNetTab:
    limits = service.limits
    prompts, generate, interrupt = prompt_row(texts, limits, "controlnet", runner)
    with gr.Row():
        with gr.Column(scale=1):
            control = _control_widgets(service, texts)
            recommended = recommended_settings(service, control.controlnet.value,
                                               service.active_model)
            sampler = (recommended.sampler if recommended.sampler in SAMPLERS
                       else default_sampler)
            parameters = parameter_widgets(texts, limits, sampler,
                                           service.default_size(service.active_model),
                                           "controlnet", recommended)
        with gr.Column(scale=1):
            preview_button = texts.make(gr.Button, text="controlnet.preview_button",
                                        elem_id="controlnet-preview-button")
            preview = texts.make(gr.Image, label="controlnet.preview", type="pil",
                                 interactive=False, height=300, format="png",
                                 elem_id="controlnet-preview")
            results = result_widgets(texts, "controlnet")

    def show_preview(values: dict):
        try:
            return service.preprocess(control.spec(values), as_int(values[parameters.width]),
                                      as_int(values[parameters.height]))
        except EngineError as error:
            raise texts.engine_failure(error) from None

    def run(values: dict, request: gr.Request, progress=gr.Progress()):
        fields = common_request_fields(values, prompts, parameters, values[model])
        job = ControlNetRequest(control=control.spec(values), **fields)
        result = runner.run_for(request, job, progress)
        gallery, info, seeds = show_result(result, texts)
        return result.control_map, gallery, info, seeds

    preview_button.click(gpu(show_preview), inputs={*control.inputs(), parameters.width,
                                                    parameters.height},
                         outputs=preview, api_name="controlnet_preview",
                         concurrency_id=GPU_QUEUE, concurrency_limit=1)
    on_generate(generate, runner, gpu(run), results,
                inputs={model, *control.inputs(), prompts.prompt, prompts.negative,
                        *parameters.inputs()},
                outputs=[preview, results.gallery, results.info, results.seeds],
                api_name="controlnet")
    model.change(lambda base: gr.update(choices=controlnet_choices(service, base,
                                                                  texts.language)),
                 inputs=model, outputs=control.controlnet, queue=False)
    wire_interrupt(interrupt, runner)
    wire_seed_buttons(parameters, results)
    wire_token_counter(service, texts, prompts, model)
    return ControlNetTab(prompts, parameters, results, control.image, control.control_type,
                         control.controlnet, preview, preview_button, generate)
