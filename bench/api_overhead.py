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
from bench.serving import EMPTY_EVENT, ServedApp, served_app

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


def _gradio_client(app: ServedApp):
    """A gradio_client session on the served app. ``ssl_verify=False``: the app is plain HTTP on
    127.0.0.1, so nothing is ever verified, but with the default gradio_client has httpx load
    the CA bundle into a new SSL context for each of its requests (sending the job, opening the
    event stream, downloading the image): about 28 ms of CPU each on this machine, a cost of
    that client alone (a browser builds nothing per request) that the ratio would count as the
    app's."""
    from gradio_client import Client

    client = Client(app.url + "/", verbose=False, ssl_verify=False)
    app.clients.append(client)
    return client


def _through_gradio(context: BenchContext, app: ServedApp) -> Callable[[], object]:
    from tests.support.ui_client import by_keys, call

    client = _gradio_client(app)
    values = by_keys(common__prompt=PROMPT, common__negative_prompt=NEGATIVE_PROMPT,
                     common__seed=SEED, common__steps=context.plan.steps,
                     common__width=context.plan.side, common__height=context.plan.side)
    return lambda: call(client, "/txt2img", **values)


def _empty_gradio_event_ms(context: BenchContext, app: ServedApp) -> float:
    """The median time of an event that does nothing, through the same queue and client: the
    part of the Gradio path's overhead that any job pays, whatever the app does."""
    client = _gradio_client(app)

    def empty() -> object:
        return client.predict(api_name="/" + EMPTY_EVENT)

    empty()
    return interleaved({"empty": empty}, context.plan.repeats).median("empty") * 1000


def _ratio(context: BenchContext, app: ServedApp, name: str,
           channel: Callable[[BenchContext, ServedApp], Callable[[], object]],
           also: str = "") -> Figure:
    served = channel(context, app)
    served()  # warm-up, and the request the engine is then given, recorded
    direct = _direct(context, app)
    timings = interleaved({"served": served, "direct": direct}, context.plan.repeats)
    note = (f"served vs engine call: {timings.describe('served', 'direct')}; "
            f"{context.plan.steps} steps, {context.plan.side}px{also}")
    return Figure(name, timings.ratio("served", "direct"), "ratio", GOAL_AT_MOST, note)


def measure(context: BenchContext) -> list[Figure]:
    with served_app(context) as app:
        api = _ratio(context, app, "api_overhead_ratio", _through_api)
        empty_ms = _empty_gradio_event_ms(context, app)
        gradio = _ratio(context, app, "gradio_overhead_ratio", _through_gradio,
                        also=f"; an empty event through the same queue and client: "
                             f"{empty_ms:.0f} ms (the client reads its messages every 50 ms)")
        return [api, gradio]
