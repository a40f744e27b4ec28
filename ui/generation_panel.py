"""The generation panel every generation tab is: prompts with 生成, 中止 and 跳过, the sampling
parameters, the results with their live preview, the seed buttons and the token counter, built
and wired here once. A tab adds only its own inputs and outputs and the request it builds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Generic, TypeVar

import gradio as gr

from engine.interfaces import ImageServiceLike
from engine.samplers import SAMPLERS
from engine.store.manifest import ModelKind, Recommended
from ui.generation_widgets import (
    RANDOM_SEED,
    ParameterWidgets,
    PromptWidgets,
    ResultWidgets,
    parameter_widgets,
    prompt_widgets,
    result_widgets,
)
from ui.job_runner import JobRunner, session_of
from ui.texts import Texts

logger = logging.getLogger(__name__)

GENERATE_EVENTS = "generate"
MAX_WAITING_EVENTS = 16

Inputs = TypeVar("Inputs")
Outputs = TypeVar("Outputs")


@dataclass(frozen=True)
class PanelContext:
    """What every generation tab is built with."""
    service: ImageServiceLike
    texts: Texts
    runner: JobRunner
    model: Any  # the header's model picker
    default_sampler: str
    gpu: Callable[[Callable], Callable]  # spaces.GPU on ZeroGPU Spaces, else as it is


@dataclass(frozen=True)
class GenerationPanel(Generic[Inputs, Outputs]):
    prompts: PromptWidgets
    parameters: ParameterWidgets
    results: ResultWidgets
    generate: Any
    interrupt: Any
    skip: Any
    model: Any  # the header's model picker: what the request's model is
    own_inputs: Inputs  # what the tab built above the parameters
    own_outputs: Outputs  # what the tab built beside the results

    def request_fields(self, values: dict[Any, Any]) -> dict[str, Any]:
        """The request fields every tab shares, from a handler's ``{component: value}``."""
        return request_fields(values, self.prompts, self.parameters, values[self.model])


@dataclass(frozen=True)
class Generation:
    """What 生成 does in one tab: ``handler(values, request, progress)`` runs the request the tab
    builds and returns ``{component: value}`` for the results and the tab's own outputs."""
    api_name: str
    handler: Callable[..., dict[Any, Any]]
    own_inputs: set[Any]
    own_outputs: Sequence[Any] = ()  # listed before the results, as the API returns them


def _nothing() -> None:
    """A tab with no inputs (or outputs) of its own: its panel's ``own_*`` is None."""
    return None


def build_generation_panel(
        context: PanelContext, elem_prefix: str,
        # mypy cannot tie a default to the type variable; the tab's annotation says None.
        own_inputs: Callable[[], Inputs] = _nothing,  # type: ignore[assignment]
        own_outputs: Callable[[], Outputs] = _nothing,  # type: ignore[assignment]
        outputs_above_results: bool = False,
        recommended: Callable[[Inputs], Recommended] | None = None,
) -> GenerationPanel[Inputs, Outputs]:
    """The panel's widgets with the tab's own in their places; ``recommended`` (from what the
    tab built) sets where the parameters start, by default the active model's manifest entry."""
    service, texts = context.service, context.texts
    prompts, generate, interrupt, skip = _prompt_row(texts, service, elem_prefix)
    with gr.Row():
        with gr.Column(scale=1):
            inputs = own_inputs()
            start = (recommended(inputs) if recommended is not None
                     else recommended_for_base(service, service.active_model))
            sampler = start.sampler if start.sampler in SAMPLERS else context.default_sampler
            parameters = parameter_widgets(texts, service.limits, sampler,
                                           service.default_size(service.active_model),
                                           elem_prefix, start)
        with gr.Column(scale=1):
            results, outputs = _results_column(texts, elem_prefix, own_outputs,
                                               outputs_above_results)
    panel = GenerationPanel(prompts, parameters, results, generate, interrupt, skip,
                            context.model, inputs, outputs)
    _wire_buttons(panel, context)
    return panel


def wire_generation(panel: GenerationPanel, context: PanelContext,
                    generation: Generation) -> None:
    """生成 hands the job to the service's queue at once (FIFO with the HTTP API's jobs, where
    中止 reaches it); Gradio only bounds how many browser events wait on it. While it runs, a
    timer shows this session's live preview."""
    runner, results = context.runner, panel.results

    def preview(request: gr.Request):
        picture = runner.preview(session_of(request))
        return picture if picture is not None else gr.skip()

    inputs = {panel.model, *generation.own_inputs, panel.prompts.prompt, panel.prompts.negative,
              *panel.parameters.inputs()}
    outputs = [*generation.own_outputs, results.gallery, results.info, results.seeds]
    panel.generate.click(lambda: gr.Timer(active=True), outputs=results.preview_timer,
                         queue=False, api_visibility="private")
    panel.generate.click(
        context.gpu(generation.handler), inputs=inputs, outputs=outputs,
        api_name=generation.api_name,
        concurrency_id=GENERATE_EVENTS, concurrency_limit=MAX_WAITING_EVENTS,
    ).then(lambda: gr.Timer(active=False), outputs=results.preview_timer, queue=False,
           api_visibility="private")
    results.preview_timer.tick(preview, outputs=results.preview, queue=False,
                               show_progress="hidden", api_visibility="private")


def _results_column(texts: Texts, elem_prefix: str, own_outputs: Callable[[], Outputs],
                    above: bool) -> tuple[ResultWidgets, Outputs]:
    if above:
        outputs = own_outputs()
        return result_widgets(texts, elem_prefix), outputs
    results = result_widgets(texts, elem_prefix)
    return results, own_outputs()


def _prompt_row(texts: Texts, service: ImageServiceLike,
                elem_prefix: str) -> tuple[PromptWidgets, Any, Any, Any]:
    with gr.Row():
        prompts = prompt_widgets(texts, service.limits, elem_prefix)
        with gr.Column(scale=1, min_width=160):
            generate = texts.make(gr.Button, text="common.generate", variant="primary",
                                  size="lg", elem_id=f"{elem_prefix}-generate")
            with gr.Row():
                interrupt = texts.make(gr.Button, text="common.interrupt", variant="stop",
                                       elem_id=f"{elem_prefix}-interrupt")
                skip = texts.make(gr.Button, text="common.skip", elem_id=f"{elem_prefix}-skip")
    return prompts, generate, interrupt, skip


def _wire_buttons(panel: GenerationPanel, context: PanelContext) -> None:
    """跳过, 中止, 🎲, ♻ and the token counters."""
    runner = context.runner

    def skip_current(request: gr.Request) -> None:
        runner.skip(session_of(request))

    def interrupt(request: gr.Request) -> None:
        runner.interrupt(session_of(request))

    panel.skip.click(skip_current, queue=False, api_name="skip")
    panel.interrupt.click(interrupt, queue=False, api_name="interrupt")
    parameters, seeds = panel.parameters, panel.results.seeds
    parameters.random_seed.click(lambda: RANDOM_SEED, outputs=parameters.seed, queue=False)
    parameters.reuse_seed.click(lambda last: last[0] if last else RANDOM_SEED,
                                inputs=seeds, outputs=parameters.seed, queue=False)
    _wire_token_counter(context, panel.prompts)


def _wire_token_counter(context: PanelContext, prompts: PromptWidgets) -> None:
    service, texts = context.service, context.texts

    def count(model_id: str, text: str) -> str:
        info = service.prompt_info(model_id, text or "")
        if info is None:
            return ""
        key = "common.tokens_over" if info.chunks > 1 else "common.tokens"
        return texts(key, tokens=info.tokens, context=info.context_length - 2,
                     chunks=info.chunks)

    for box, counter in ((prompts.prompt, prompts.prompt_tokens),
                         (prompts.negative, prompts.negative_tokens)):
        box.change(count, inputs=[context.model, box], outputs=counter, queue=False,
                   show_progress="hidden", trigger_mode="always_last")


def recommended_for_base(service: ImageServiceLike, base: str) -> Recommended:
    """The manifest's recommended settings for the base model ``base`` (an id, or a repo as a
    local name may be); nothing for a model the manifest does not list."""
    merged: dict[str, Any] = {}
    found = [entry for entry in service.entries(ModelKind.BASE) if base in (entry.id, entry.repo)]
    for entry in reversed(found):  # the first entry listed wins
        merged.update(entry.recommended.model_dump(exclude_none=True))
    return Recommended(**merged)


def request_fields(values: dict, prompts: PromptWidgets, parameters: ParameterWidgets,
                   model: str) -> dict[str, Any]:
    """Request fields from a handler's ``{component: value}`` input, named, never positional."""
    return dict(
        model=model, prompt=values[prompts.prompt] or "",
        negative_prompt=values[prompts.negative] or "", sampler=values[parameters.sampler],
        schedule=values[parameters.schedule], steps=as_int(values[parameters.steps]),
        guidance=values[parameters.guidance], seed=as_int(values[parameters.seed]),
        width=as_int(values[parameters.width]), height=as_int(values[parameters.height]),
        batch_count=as_int(values[parameters.batch_count]),
        batch_size=as_int(values[parameters.batch_size]))


def as_int(value: Any) -> Any:
    """Sliders and number boxes send floats; whole floats become ints, the rest stay for the
    validator to reject with a clear message."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value
