"""Widgets every generation tab shares, and the runner that turns a click into one job."""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.errors import EngineError
from engine.metadata.infotext import format_infotext
from engine.jobs import NO_SHARE, ModelAction
from engine.limits import Limits
from engine.requests import GenerationRequest, GenerationResult
from engine.samplers import ALL_SCHEDULES, SAMPLERS, SCHEDULE_LABELS
from engine.store.manifest import Recommended
from engine.interfaces import ImageServiceLike
from ui.texts import Texts

logger = logging.getLogger(__name__)

GPU_QUEUE = "gpu"  # events that use the model outside the job queue: one at a time
GENERATE_EVENTS = "generate"
MAX_WAITING_EVENTS = 16
POLL_SECONDS = 0.2
PREVIEW_SECONDS = 0.5
RANDOM_SEED = -1


@dataclass(frozen=True)
class PromptWidgets:
    prompt: Any
    negative: Any
    prompt_tokens: Any
    negative_tokens: Any


@dataclass(frozen=True)
class ParameterWidgets:
    sampler: Any
    schedule: Any
    steps: Any
    guidance: Any
    width: Any
    height: Any
    seed: Any
    random_seed: Any
    reuse_seed: Any
    batch_count: Any
    batch_size: Any

    def inputs(self) -> set[Any]:
        return {self.sampler, self.schedule, self.steps, self.guidance, self.width, self.height,
                self.seed, self.batch_count, self.batch_size}


@dataclass(frozen=True)
class ResultWidgets:
    gallery: Any
    info: Any
    seeds: Any  # gr.State: the seeds of the last results, for ♻
    preview: Any  # 实时过程预览: the running job's first image, roughly
    preview_timer: Any


def prompt_widgets(texts: Texts, limits: Limits, elem_prefix: str) -> PromptWidgets:
    with gr.Column(scale=4):
        prompt = texts.make(gr.Textbox, label="common.prompt", placeholder="common.prompt_hint",
                            lines=3, max_length=limits.max_prompt_chars,
                            elem_id=f"{elem_prefix}-prompt")
        prompt_tokens = gr.Markdown("", elem_id=f"{elem_prefix}-prompt-tokens")
        negative = texts.make(gr.Textbox, label="common.negative_prompt", lines=2,
                              max_length=limits.max_prompt_chars,
                              elem_id=f"{elem_prefix}-negative")
        negative_tokens = gr.Markdown("", elem_id=f"{elem_prefix}-negative-tokens")
    return PromptWidgets(prompt, negative, prompt_tokens, negative_tokens)


def prompt_row(texts: Texts, limits: Limits, elem_prefix: str,
               runner: JobRunner) -> tuple[PromptWidgets, Any, Any]:
    """The prompts with 生成, 中止 and 跳过 beside them, as every generation tab starts."""
    with gr.Row():
        prompts = prompt_widgets(texts, limits, elem_prefix)
        with gr.Column(scale=1, min_width=160):
            generate = texts.make(gr.Button, text="common.generate", variant="primary",
                                  size="lg", elem_id=f"{elem_prefix}-generate")
            with gr.Row():
                interrupt = texts.make(gr.Button, text="common.interrupt", variant="stop",
                                       elem_id=f"{elem_prefix}-interrupt")
                skip = texts.make(gr.Button, text="common.skip", elem_id=f"{elem_prefix}-skip")

    def skip_current(request: gr.Request) -> None:
        runner.skip(session_of(request))

    skip.click(skip_current, queue=False, api_name="skip")
    return prompts, generate, interrupt


def _schedule_choices(language: str) -> list[tuple[str, str]]:
    """Schedule names stay as users know them (Karras, ...); only "automatic" is translated."""
    from locales import translate

    return [(translate(language, "common.schedule_automatic") if s == "automatic"
             else SCHEDULE_LABELS[s], s) for s in ALL_SCHEDULES]


def parameter_widgets(texts: Texts, limits: Limits, default_sampler: str,
                      size: tuple[int, int], elem_prefix: str,
                      recommended: Recommended | None = None) -> ParameterWidgets:
    """The sampling widgets; ``recommended`` (a manifest entry's) sets the schedule, steps and
    guidance they start at, where it names them."""
    recommended = recommended or Recommended()
    with gr.Row():
        sampler = texts.make(gr.Dropdown, label="common.sampler", choices=list(SAMPLERS),
                             value=default_sampler, elem_id=f"{elem_prefix}-sampler")
        schedule = texts.make(gr.Dropdown, label="common.schedule",
                              choices=_schedule_choices(texts.language),
                              value=(recommended.schedule
                                     if recommended.schedule in ALL_SCHEDULES else "automatic"),
                              elem_id=f"{elem_prefix}-schedule")
        texts.bind(schedule, choices=_schedule_choices)
    steps = texts.make(gr.Slider, label="common.steps", minimum=limits.min_steps,
                       maximum=limits.max_steps, step=1, value=recommended.steps or 20,
                       elem_id=f"{elem_prefix}-steps")
    guidance = texts.make(gr.Slider, label="common.guidance", minimum=limits.min_guidance,
                          maximum=limits.max_guidance, step=0.5,
                          value=7.0 if recommended.guidance is None else recommended.guidance,
                          elem_id=f"{elem_prefix}-guidance")
    with gr.Row():
        width = texts.make(gr.Slider, label="common.width", minimum=limits.min_size,
                           maximum=limits.max_size, step=limits.size_step, value=size[0],
                           elem_id=f"{elem_prefix}-width")
        height = texts.make(gr.Slider, label="common.height", minimum=limits.min_size,
                            maximum=limits.max_size, step=limits.size_step, value=size[1],
                            elem_id=f"{elem_prefix}-height")
    with gr.Row(equal_height=True):
        seed = texts.make(gr.Number, label="common.seed", value=RANDOM_SEED, precision=0,
                          minimum=RANDOM_SEED, maximum=limits.max_seed, scale=4,
                          elem_id=f"{elem_prefix}-seed")
        random_seed = gr.Button("🎲", scale=0, min_width=48, elem_id=f"{elem_prefix}-random")
        reuse_seed = gr.Button("♻", scale=0, min_width=48, elem_id=f"{elem_prefix}-reuse")
    with gr.Row():
        batch_count = texts.make(gr.Slider, label="common.batch_count", minimum=1,
                                 maximum=limits.max_batch_count, step=1, value=1)
        batch_size = texts.make(gr.Slider, label="common.batch_size", minimum=1,
                                maximum=limits.max_batch_size, step=1, value=1)
    return ParameterWidgets(sampler, schedule, steps, guidance, width, height, seed,
                            random_seed, reuse_seed, batch_count, batch_size)


def result_widgets(texts: Texts, elem_prefix: str) -> ResultWidgets:
    gallery = texts.make(gr.Gallery, label="common.results", columns=2, height=480,
                         format="png", type="pil", object_fit="contain", interactive=False,
                         elem_id=f"{elem_prefix}-gallery")
    info = texts.make(gr.Textbox, label="common.generation_info", lines=4, interactive=False,
                      elem_id=f"{elem_prefix}-info")
    preview = texts.make(gr.Image, label="common.live_preview", interactive=False, height=160,
                         format="png", elem_id=f"{elem_prefix}-live-preview")
    return ResultWidgets(gallery, info, gr.State([]), preview,
                         gr.Timer(PREVIEW_SECONDS, active=False))


def wire_seed_buttons(parameters: ParameterWidgets, results: ResultWidgets) -> None:
    parameters.random_seed.click(lambda: RANDOM_SEED, outputs=parameters.seed, queue=False)
    parameters.reuse_seed.click(lambda seeds: seeds[0] if seeds else RANDOM_SEED,
                                inputs=results.seeds, outputs=parameters.seed, queue=False)


def wire_token_counter(service: ImageServiceLike, texts: Texts, prompts: PromptWidgets,
                       model: Any) -> None:
    def count(model_id: str, text: str) -> str:
        info = service.prompt_info(model_id, text or "")
        if info is None:
            return ""
        key = "common.tokens_over" if info.chunks > 1 else "common.tokens"
        return texts(key, tokens=info.tokens, context=info.context_length - 2,
                     chunks=info.chunks)

    for box, counter in ((prompts.prompt, prompts.prompt_tokens),
                         (prompts.negative, prompts.negative_tokens)):
        box.change(count, inputs=[model, box], outputs=counter, queue=False,
                   show_progress="hidden", trigger_mode="always_last")


def common_request_fields(values: dict, prompts: PromptWidgets, parameters: ParameterWidgets,
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


class JobRunner:
    """Puts jobs in the service's one queue and reports their place, progress and ETA;
    中止 cancels the job of the same browser session only, waiting or running."""

    def __init__(self, service: ImageServiceLike, texts: Texts, shared: bool = False) -> None:
        self.service = service
        self.texts = texts
        self.shared = shared  # several people use this app: each gets a share of the queue
        self._jobs: dict[str, list[Any]] = {}  # a session may run jobs in several tabs
        self._lock = threading.Lock()

    def run_for(self, caller: gr.Request, request: GenerationRequest,
                progress: Any) -> GenerationResult:
        """``run`` for the browser (or REST client) behind a Gradio event."""
        return self.run(request, session_of(caller), progress, user_of(caller),
                        self.quota_of(caller))

    def quota_of(self, caller: gr.Request | None) -> str:
        """Whose share of the queue a job counts against: nobody's on a single-user install;
        else the login, or the client's address (anyone can open more sessions)."""
        if not self.shared:
            return NO_SHARE
        name = getattr(caller, "username", None)
        client = getattr(caller, "client", None)
        return f"user:{name}" if name else f"addr:{getattr(client, 'host', None) or 'unknown'}"

    def run(self, request: GenerationRequest, session: str, progress: Any,
            user: str = "", quota_key: str = "") -> GenerationResult:
        """Queue ``request`` for ``session`` (中止 reaches it from there) on behalf of ``user``
        (the login, else the session: the API's interrupt and progress act on it)."""
        try:
            job = self.service.submit(request, owner=session, user=user or f"session:{session}",
                                      quota_key=quota_key or NO_SHARE)
        except EngineError as error:
            raise self.texts.engine_failure(error) from None
        with self._lock:
            self._jobs.setdefault(session, []).append(job)
        try:
            while not job.wait(POLL_SECONDS):
                self._report(job, progress)
        finally:
            with self._lock:
                self._jobs[session].remove(job)
        if job.error is not None:
            raise self.texts.engine_failure(job.error)
        result = job.result
        assert result is not None  # a generation job that did not fail has its result
        self._save(result)
        for warning in result.warnings:
            gr.Warning(self.texts.warning(warning.code, warning.params))
        return result

    def switch_model(self, model_id: str, caller: gr.Request | None,
                     progress: Any = None) -> None:
        """Make ``model_id`` active through the job queue: the switch waits its turn behind
        running jobs (which hold the engine's lock) without taking a server thread from them.
        Raises the switch's EngineError (the caller offers a download for some)."""
        job = self.service.submit_model_action(
            ModelAction("load", model_id), owner=session_of(caller), user=user_of(caller),
            quota_key=self.quota_of(caller))
        while not job.wait(POLL_SECONDS):
            if progress is not None:
                self._report(job, progress)
        if job.error is not None:
            raise job.error

    def _report(self, job: Any, progress: Any) -> None:
        state = job.progress
        total = state.total_steps * state.batch_count
        if not total:
            ahead = self.service.queue_position(job)
            progress(0, desc=self.texts("common.queued", ahead=max(0, ahead - 1)))
            return
        done = state.batch_index * state.total_steps + state.step
        eta = job.eta_s
        progress((done, total), unit=self.texts("common.steps_unit"),
                 desc=self.texts("common.progress", done=done, total=total,
                                 eta="?" if eta is None else f"{eta:.0f}"))

    def _save(self, result: GenerationResult) -> None:
        try:
            self.service.save(result)
        except EngineError as error:
            gr.Warning(self.texts.error(error.code, error.params))

    def _session_jobs(self, session: str) -> list[Any]:
        with self._lock:
            return list(self._jobs.get(session, ()))

    def interrupt(self, session: str) -> None:
        for job in self._session_jobs(session):
            self.service.cancel(job)

    def preview(self, session: str):
        previews = [job.preview for job in self._session_jobs(session) if job.preview]
        return previews[0] if previews else None

    def skip(self, session: str) -> None:
        """Drop the current image (batch) of this session's running job; the next goes on."""
        for job in self._session_jobs(session):
            if job.state.value == "running":
                job.skip_event.set()


def show_result(result: GenerationResult, texts: Texts) -> tuple[list, str, list[int]]:
    """Gallery items captioned with their seeds, the first image's infotext, and the seeds."""
    gallery = [(item.image, texts("common.seed_caption", seed=item.seed))
               for item in result.images]
    info = format_infotext(result.images[0].parameters) if result.images else ""
    return gallery, info, [item.seed for item in result.images]


def on_generate(button: Any, runner: JobRunner, run: Any, results: ResultWidgets,
                **event: Any) -> None:
    """生成 hands the job to the service's queue at once (FIFO with the HTTP API's jobs, where
    中止 reaches it); Gradio only bounds how many browser events wait on it. While it runs, a
    timer shows this session's live preview."""
    def preview(request: gr.Request):
        picture = runner.preview(session_of(request))
        return picture if picture is not None else gr.skip()

    button.click(lambda: gr.Timer(active=True), outputs=results.preview_timer, queue=False,
                 api_visibility="private")
    button.click(run, concurrency_id=GENERATE_EVENTS, concurrency_limit=MAX_WAITING_EVENTS,
                 **event).then(lambda: gr.Timer(active=False), outputs=results.preview_timer,
                               queue=False, api_visibility="private")
    results.preview_timer.tick(preview, outputs=results.preview, queue=False,
                               show_progress="hidden", api_visibility="private")


def wire_interrupt(button: Any, runner: JobRunner) -> None:
    def interrupt(request: gr.Request) -> None:
        runner.interrupt(session_of(request))

    button.click(interrupt, queue=False, api_name="interrupt")


def session_of(request: gr.Request | None) -> str:
    """The browser session. A REST caller without one gets an id of its own: callers without a
    session never share one (and so never interrupt each other's jobs)."""
    return getattr(request, "session_hash", None) or f"no-session-{secrets.token_hex(8)}"


def user_of(request: gr.Request | None) -> str:
    """Who submits: the Gradio login when there is one (the API's Basic user of the same
    name), else the browser session."""
    name = getattr(request, "username", None)
    return f"user:{name}" if name else f"session:{session_of(request)}"
