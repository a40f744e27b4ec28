"""``api_overhead_ratio`` and ``gradio_overhead_ratio``: one txt2img job through the HTTP API
(``POST /sdapi/v1/txt2img``, PNG as base64 back) and through the WebUI's Gradio queue
(``gradio_client``, as a browser would: the UI also saves the image to its output folder), each
over the engine call that job makes, replayed directly: the same prepared request, with a
progress listener keeping each step's preview as the job queue does, so that the ratio holds
the serving stack's own cost (validation, queueing, HTTP, encoding) and nothing else."""

from __future__ import annotations

import threading
from collections.abc import Callable

from bench.context import NEGATIVE_PROMPT, PROMPT, SEED, BenchContext
from bench.measure import interleaved
from bench.preview_cost import PreviewKeeper
from bench.report import Figure
from bench.serving import ServedApp, served_app

GOAL_AT_MOST = 1.10
HTTP_TIMEOUT_S = 600


def _direct(context: BenchContext, app: ServedApp) -> Callable[[], object]:
    prepared = app.recorder.last_prepared
    if prepared is None:
        raise AssertionError("the served job never reached the engine")
    return lambda: context.engine.generate(prepared, on_progress=PreviewKeeper(),
                                           cancel=threading.Event())


def _through_api(context: BenchContext, app: ServedApp) -> Callable[[], object]:
    import httpx

    body = {"prompt": PROMPT, "negative_prompt": NEGATIVE_PROMPT, "seed": SEED,
            "steps": context.plan.steps, "width": context.plan.side,
            "height": context.plan.side, "sampler_name": "DPM++ 2M"}
    client = httpx.Client(timeout=HTTP_TIMEOUT_S)
    app.clients.append(client)

    def post() -> None:
        answer = client.post(f"{app.url}/sdapi/v1/txt2img", json=body)
        answer.raise_for_status()
        if len(answer.json()["images"]) != 1:
            raise AssertionError("the API returned no image")
    return post


def _through_gradio(context: BenchContext, app: ServedApp) -> Callable[[], object]:
    from gradio_client import Client

    from tests.support.ui_client import by_keys, call

    client = Client(app.url + "/", verbose=False)
    app.clients.append(client)
    values = by_keys(common__prompt=PROMPT, common__negative_prompt=NEGATIVE_PROMPT,
                     common__seed=SEED, common__steps=context.plan.steps,
                     common__width=context.plan.side, common__height=context.plan.side)
    return lambda: call(client, "/txt2img", **values)


def _ratio(context: BenchContext, app: ServedApp, name: str,
           channel: Callable[[BenchContext, ServedApp], Callable[[], object]]) -> Figure:
    served = channel(context, app)
    served()  # warm-up, and the request the engine is then given, recorded
    direct = _direct(context, app)
    timings = interleaved({"served": served, "direct": direct}, context.plan.repeats)
    note = (f"served vs engine call: {timings.describe('served', 'direct')}; "
            f"{context.plan.steps} steps, {context.plan.side}px")
    return Figure(name, timings.ratio("served", "direct"), "ratio", GOAL_AT_MOST, note)


def measure(context: BenchContext) -> list[Figure]:
    with served_app(context) as app:
        return [_ratio(context, app, "api_overhead_ratio", _through_api),
                _ratio(context, app, "gradio_overhead_ratio", _through_gradio)]
