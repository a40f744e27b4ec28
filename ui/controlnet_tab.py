"""可控生成 (ControlNet): a control image, its preprocessed map shown before generating."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.errors import EngineError
from engine.interfaces import ImageServiceLike
from engine.requests import ControlNetRequest, ControlSpec
from engine.store.manifest import Recommended
from ui.generation_panel import (
    Generation,
    GenerationPanel,
    PanelContext,
    as_int,
    build_generation_panel,
    recommended_for_base,
    wire_generation,
)
from ui.job_runner import GPU_QUEUE
from ui.texts import Texts


@dataclass(frozen=True)
class ControlPreview:
    """Above the results: the control map, shown on request and after each generation."""
    button: Any
    image: Any


@dataclass(frozen=True)
class ControlNetTab:
    panel: GenerationPanel[ControlWidgets, ControlPreview]
    control: ControlWidgets
    preview: ControlPreview


@dataclass(frozen=True)
class ControlWidgets:
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
    merged = recommended_for_base(service, base).model_dump(exclude_none=True)
    for entry in service.controlnets_for(base):
        if entry.id == controlnet:  # the ControlNet's own settings win over the base's
            merged.update(entry.recommended.model_dump(exclude_none=True))
            break
    return Recommended(**merged)


def _control_widgets(service: ImageServiceLike, texts: Texts) -> ControlWidgets:
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
    control_type.change(lambda kind: {threshold: gr.update(visible=kind == "canny")
                                      for threshold in (low, high)},
                        inputs=control_type, outputs=[low, high], queue=False)
    return ControlWidgets(image, control_type, controlnet, preprocess, low, high, weight,
                           start, end)


def _preview_widgets(texts: Texts) -> ControlPreview:
    button = texts.make(gr.Button, text="controlnet.preview_button",
                        elem_id="controlnet-preview-button")
    image = texts.make(gr.Image, label="controlnet.preview", type="pil", interactive=False,
                       height=300, format="png", elem_id="controlnet-preview")
    return ControlPreview(button, image)


def build_controlnet_tab(context: PanelContext) -> ControlNetTab:
    service, texts = context.service, context.texts
    panel: GenerationPanel[ControlWidgets, ControlPreview] = build_generation_panel(
        context, "controlnet", own_inputs=lambda: _control_widgets(service, texts),
        own_outputs=lambda: _preview_widgets(texts), outputs_above_results=True,
        recommended=lambda control: recommended_settings(service, control.controlnet.value,
                                                         service.active_model))
    control, preview = panel.own_inputs, panel.own_outputs
    width, height = panel.parameters.width, panel.parameters.height

    def show_preview(values: dict):
        try:
            return service.preprocess(control.spec(values), as_int(values[width]),
                                      as_int(values[height]))
        except EngineError as error:
            raise texts.engine_failure(error) from None

    def run(values: dict, request: gr.Request, progress=gr.Progress()):
        job = ControlNetRequest(control=control.spec(values), **panel.request_fields(values))
        result = context.runner.run_for(request, job, progress)
        return {preview.image: result.control_map, **panel.results.showing(result, texts)}

    preview.button.click(context.gpu(show_preview), inputs={*control.inputs(), width, height},
                         outputs=preview.image, api_name="controlnet_preview",
                         concurrency_id=GPU_QUEUE, concurrency_limit=1)
    wire_generation(panel, context, Generation("controlnet", run, own_inputs=control.inputs(),
                                               own_outputs=[preview.image]))
    context.model.change(
        lambda base: gr.update(choices=controlnet_choices(service, base, texts.language)),
        inputs=context.model, outputs=control.controlnet, queue=False)
    return ControlNetTab(panel, control, preview)


if __name__ == "__main__":  # python -m ui.controlnet_tab: this tab alone, over a fake engine
    from ui.standalone import launch_alone

    launch_alone(build_controlnet_tab)
