"""The routes. Every generation and every model switch goes through the service's one job
queue, like the UI's; a route waits for its job without holding a server thread, so waiting
clients never starve the page, progress or listings.

Who calls: ``api.guard.RequestGuard`` sits in front and leaves the signed-in user in the scope.
Jobs belong to that user: interrupt, skip and progress act on the caller's own job. On a
single-user install (loopback, no accounts) everyone is the same user, as in AUTOMATIC1111.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute

from api.convert import (
    CONTROL_MODULES,
    decode_image,
    encode_png_image,
    local_model_row,
    saved_or_warned,
    to_request,
    to_response,
)
from api.schemas import (
    DetectBody,
    GenerationResponse,
    Img2ImgBody,
    JobBody,
    JobCreated,
    JobStatusResponse,
    OptionsBody,
    PngInfoBody,
    Txt2ImgBody,
)
from engine.errors import EngineError, ErrorCode, ResourceError
from engine.interfaces import ImageServiceLike
from engine.jobs import NO_SHARE, Job, JobState, ModelAction
from engine.limits import Limits
from engine.metadata.reading import read_image_parameters
from engine.requests import PHASE_COMPILING, ControlSpec
from engine.samplers import ALL_SCHEDULES, SAMPLERS, SCHEDULE_LABELS
from engine.store.manifest import ModelKind
from locales import error_text, language_of, translate

logger = logging.getLogger(__name__)

# HTTP status by error code, at a glance. A code not listed is a request the client can fix
# (a value out of range, an unreadable image, a sampler we lack): 400.
STATUS_BY_CODE: dict[ErrorCode, int] = {
    # 403: not for this caller.
    ErrorCode.ADMIN_ONLY: 403, ErrorCode.AUTH_REQUIRED_FOR_MODELS: 403,
    ErrorCode.JOB_NOT_YOURS: 403,
    # 404: what the request names does not exist here.
    ErrorCode.UNKNOWN_MODEL: 404, ErrorCode.UNKNOWN_LORA: 404, ErrorCode.JOB_NOT_FOUND: 404,
    # 409: the model is busy (a download or a deletion holds it); try again once it is done.
    ErrorCode.MODEL_BUSY: 409,
    # 413: an input image too large to decode.
    ErrorCode.IMAGE_TOO_LARGE: 413,
    # 429: the caller's own share of the queue is full; 503: the server is, for now.
    ErrorCode.QUEUE_SHARE_FULL: 429, ErrorCode.QUEUE_FULL: 503, ErrorCode.OUT_OF_MEMORY: 503,
    # 504: the job outlasted the wait (and was cancelled).
    ErrorCode.JOB_TIMEOUT: 504,
    # 500: genuine faults of the server, never of the request.
    ErrorCode.ENGINE_FAILED: 500, ErrorCode.JOB_FAILED: 500,
}
USER_KEY = "huajing.user"  # set by api.guard.RequestGuard
LOCAL_USER = "local"
POLL_S = 0.05
CANCEL_SETTLE_S = 1.0
# Preprocessing and PNG reading are CPU work in the thread pool: a few at a time, the rest
# wait on the event loop, so they never take every thread.
CPU_ROUTE_SLOTS = 2


@dataclass(frozen=True)
class ApiOptions:
    auth: tuple[tuple[str, str], ...] = ()
    # Loopback without accounts: every caller is the one local user (A1111's behaviour).
    single_user: bool = True
    # Accounts that may unload or reload the model for everyone (see ui/access.py).
    admins: frozenset[str] = frozenset()
    wait_timeout_s: float = 3600.0


@dataclass(frozen=True)
class Caller:
    user: str  # "user:NAME", "local", or "" for an anonymous caller, who owns no job
    quota_key: str  # whose share of the queue a job counts against

    def sees(self, job: Job, single_user: bool) -> bool:
        return single_user or bool(self.user) and job.user == self.user


def caller_of(request: Request, options: ApiOptions) -> Caller:
    name = request.scope.get(USER_KEY)
    if name:
        user = f"user:{name}"
    elif options.single_user and not options.auth:
        user = LOCAL_USER
    else:
        user = ""
    if user == LOCAL_USER:
        return Caller(user, NO_SHARE)
    client = request.client.host if request.client else "unknown"
    return Caller(user, user or f"addr:{client}")


def _language(request: Request) -> str:
    return language_of(request.headers.get("accept-language"))


def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 like FastAPI's, but never echoing the input (a NaN cannot even be sent back)."""
    fields = [".".join(str(part) for part in item["loc"][1:]) for item in error.errors()]
    language = _language(request)
    return JSONResponse(status_code=422, content={
        "error": ErrorCode.INVALID_BODY,
        "detail": error_text(language, ErrorCode.INVALID_BODY, {"fields": ", ".join(fields)}),
        "errors": [{"loc": [str(p) for p in item["loc"]], "msg": item["msg"],
                    "type": item["type"]} for item in error.errors()]})


def error_response(request: Request, error: EngineError) -> JSONResponse:
    language = _language(request)
    status = STATUS_BY_CODE.get(error.code, 400)
    return JSONResponse(status_code=status, content={
        "error": error.code, "detail": error_text(language, error.code, error.params),
        "params": {k: str(v) for k, v in error.params.items()}})


class _ApiRoute(APIRoute):
    """Turns an engine error into a JSON answer in the client's language, never a 500."""

    def get_route_handler(self) -> Callable:
        original = super().get_route_handler()

        async def handler(request: Request):
            try:
                return await original(request)
            except EngineError as error:
                return error_response(request, error)
            except RequestValidationError as error:
                return invalid_body(request, error)

        return handler


def _auth_dependency(options: ApiOptions) -> Callable:
    """Defence in depth behind the guard: with accounts, no route answers without a user (so
    the API stays closed even where the guard was left out)."""
    def check(request: Request) -> None:
        if options.auth and not request.scope.get(USER_KEY):
            raise HTTPException(status_code=401, headers={"WWW-Authenticate": "Basic"},
                                detail="authentication required / 需要登录")

    return check


def build_router(service: ImageServiceLike, options: ApiOptions = ApiOptions()) -> APIRouter:
    router = APIRouter(route_class=_ApiRoute, dependencies=[Depends(_auth_dependency(options))])
    _generation_routes(router, service, options)
    _job_routes(router, service, options)
    _catalog_routes(router, service, options)
    _utility_routes(router, service, options)
    return router


async def wait_for(job: Job, timeout: float, service: ImageServiceLike) -> None:
    """Wait for ``job`` on the event loop: no server thread is held while it waits in line,
    and the job's end wakes the loop at once (a poll would add up to its period to every
    answer)."""
    loop = asyncio.get_running_loop()
    finished = asyncio.Event()

    def wake() -> None:
        with contextlib.suppress(RuntimeError):  # the loop has closed: nobody waits now
            loop.call_soon_threadsafe(finished.set)

    job.when_finished(wake)
    try:
        await asyncio.wait_for(finished.wait(), timeout)
    except TimeoutError:
        service.cancel(job)
        raise ResourceError(ErrorCode.JOB_TIMEOUT) from None
    if job.error is not None:
        raise job.error
async def _run(service: ImageServiceLike, body: Txt2ImgBody, caller: Caller,
               timeout: float) -> GenerationResponse:
    request = await run_in_threadpool(to_request, body, service.active_model, service.limits)
    job = await run_in_threadpool(service.submit, request, secrets.token_urlsafe(16),
                                  caller.user, caller.quota_key)
    await wait_for(job, timeout, service)
    result = job.result
    assert result is not None  # a generation job that did not fail has its result
    if body.save_images:
        result = await run_in_threadpool(saved_or_warned, service, result)
    return await run_in_threadpool(to_response, result, body)


def _generation_routes(router: APIRouter, service: ImageServiceLike, options: ApiOptions) -> None:
    @router.post("/sdapi/v1/txt2img", response_model=GenerationResponse)
    async def txt2img(body: Txt2ImgBody, request: Request) -> GenerationResponse:
        return await _run(service, body, caller_of(request, options), options.wait_timeout_s)

    @router.post("/sdapi/v1/img2img", response_model=GenerationResponse)
    async def img2img(body: Img2ImgBody, request: Request) -> GenerationResponse:
        return await _run(service, body, caller_of(request, options), options.wait_timeout_s)


def _job_status(service: ImageServiceLike, job: Job, language: str) -> JobStatusResponse:
    body = job.context  # the body a v2 job echoes (set by create below)
    result = (to_response(job.result, body) if job.state is JobState.DONE
              and isinstance(body, Txt2ImgBody) and job.result is not None else None)
    return JobStatusResponse(
        id=job.id, state=job.state.value, position=service.queue_position(job),
        progress=1.0 if job.state is JobState.DONE else job.progress.fraction,
        eta_relative=job.eta_s, result=result,
        preview=encode_png_image(job.preview) if job.state is JobState.RUNNING and
        job.preview is not None else None,
        error=job.error.code if job.error else None,
        detail=error_text(language, job.error.code, job.error.params) if job.error else None)


def _job_routes(router: APIRouter, service: ImageServiceLike, options: ApiOptions) -> None:
    @router.post("/sdapi/v2/jobs", response_model=JobCreated, status_code=202)
    def create(body: JobBody, request: Request) -> JobCreated:
        """Queue a job and answer at once with its id and the token that may cancel it."""
        token, caller = secrets.token_urlsafe(16), caller_of(request, options)
        dump = body.model_dump(exclude={"type"}, exclude_unset=True)
        typed = Img2ImgBody(**dump) if body.type == "img2img" else Txt2ImgBody(**dump)
        job = service.submit(to_request(typed, service.active_model, service.limits),
                             owner=token, user=caller.user, quota_key=caller.quota_key,
                             keep_result=True)
        # What the result echoes; the input images (possibly megabytes) are not kept.
        job.context = typed.model_copy(update={"init_images": [], "mask": None}) \
            if isinstance(typed, Img2ImgBody) else typed
        return JobCreated(id=job.id, token=token)

    def find(job_id: str, request: Request) -> Job:
        """The client holding the job's token (``X-Job-Token``) may see or cancel it, and so
        may the signed-in user who submitted it."""
        job = service.jobs.get(job_id)
        if job is None:
            raise EngineError(ErrorCode.JOB_NOT_FOUND, id=job_id)
        token = request.headers.get("x-job-token", "")
        caller = caller_of(request, options)
        own_token = secrets.compare_digest(token.encode(), job.owner.encode())
        if not own_token and not (caller.user.startswith("user:") and job.user == caller.user):
            raise EngineError(ErrorCode.JOB_NOT_YOURS, id=job_id)
        return job

    @router.get("/sdapi/v2/jobs/{job_id}", response_model=JobStatusResponse)
    def status(job_id: str, request: Request) -> JobStatusResponse:
        return _job_status(service, find(job_id, request), _language(request))

    @router.delete("/sdapi/v2/jobs/{job_id}", response_model=JobStatusResponse)
    async def cancel(job_id: str, request: Request) -> JobStatusResponse:
        """Cancel and answer with the job's state once it has stopped, or after a second
        (a running job stops within a step; a model load finishes first)."""
        job = find(job_id, request)
        service.cancel(job)
        loop = asyncio.get_running_loop()
        settle_by = loop.time() + CANCEL_SETTLE_S
        while not job.finished.is_set() and loop.time() < settle_by:
            await asyncio.sleep(POLL_S)
        return _job_status(service, job, _language(request))


async def _queue_model_action(service: ImageServiceLike, action: ModelAction, request: Request,
                               options: ApiOptions, admins_only: bool = False) -> None:
    """Switch, reload or unload through the job queue and wait for it on the event loop.

    On a shared install an anonymous caller may do none of it (it changes the model for
    everyone), and unloading or reloading is for admins (the next job of every user pays)."""
    caller = caller_of(request, options)
    if not options.single_user:
        name = request.scope.get(USER_KEY)
        if not name or admins_only and name not in options.admins:
            raise EngineError(ErrorCode.ADMIN_ONLY if name else
                              ErrorCode.AUTH_REQUIRED_FOR_MODELS)
    job = service.submit_model_action(action, secrets.token_urlsafe(16), caller.user,
                                      caller.quota_key)
    await wait_for(job, options.wait_timeout_s, service)


def _catalog_routes(router: APIRouter, service: ImageServiceLike, options: ApiOptions) -> None:
    @router.get("/sdapi/v1/sd-models")
    def sd_models() -> list[dict]:
        models = []
        for entry in service.entries(ModelKind.BASE):
            sha256 = service.weights_sha256(entry.id)  # known once downloaded and verified
            models.append({"title": entry.id, "model_name": entry.id,
                           "hash": sha256[:10] if sha256 else None, "sha256": sha256,
                           "filename": entry.repo, "config": None})
        return models + [local_model_row(name) for name in service.local_model_names()]

    @router.get("/sdapi/v1/samplers")
    def samplers() -> list[dict]:
        return [{"name": s.name, "aliases": list(s.aliases), "options": {}}
                for s in SAMPLERS.values()]

    @router.get("/sdapi/v1/schedulers")
    def schedulers() -> list[dict]:
        return [{"name": name, "label": SCHEDULE_LABELS[name], "aliases": None,
                 "default_rho": -1, "need_inner_model": False} for name in ALL_SCHEDULES]

    @router.get("/sdapi/v1/loras")
    def loras() -> list[dict]:
        return [{"name": c.name, "alias": c.title_en, "path": c.name,
                 "metadata": {"title_zh": c.title_zh, "base": c.base,
                              "preferred_weight": c.weight,
                              "trigger_words": list(c.trigger_words)}}
                for c in service.lora_choices()]

    @router.post("/sdapi/v1/refresh-checkpoints")
    @router.post("/sdapi/v1/refresh-loras")
    def refresh() -> None:
        return None  # the lists above are read from disk on every call

    @router.get("/sdapi/v1/options")
    def get_options() -> dict:
        return {"sd_model_checkpoint": service.active_model}

    @router.post("/sdapi/v1/options")
    async def set_options(body: OptionsBody, request: Request) -> dict:
        wanted = body.sd_model_checkpoint
        if wanted and wanted != service.active_model:
            await _queue_model_action(service, ModelAction("load", wanted), request, options)
        return {"sd_model_checkpoint": service.active_model}

    @router.get("/controlnet/model_list")
    def controlnet_models() -> dict:
        return {"model_list": [e.id for e in service.entries(ModelKind.CONTROLNET)]}

    @router.get("/controlnet/module_list")
    def controlnet_modules() -> dict:
        return {"module_list": ["none", *service.control_types()]}


def _own_running_job(service: ImageServiceLike, caller: Caller, options: ApiOptions) -> Job | None:
    job = service.jobs.running
    return job if job is not None and caller.sees(job, options.single_user) else None


def _progress(service: ImageServiceLike, caller: Caller, options: ApiOptions,
              skip_current_image: bool, language: str) -> dict:
    """A1111's progress, of the caller's own running job only (on a single-user install, of
    whatever runs): another user's prompt, preview and progress are theirs. ``textinfo`` says
    when the job is compiling (its first step, after a load with compiling on)."""
    job = _own_running_job(service, caller, options)
    waiting = service.jobs.waiting if options.single_user else \
        service.jobs.waiting_for(caller.user)
    state = {"skipped": False, "interrupted": False, "job": "", "job_count": waiting,
             "job_timestamp": "", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
    if job is None:
        return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None,
                "textinfo": None}
    state.update(job=job.id, job_count=waiting + 1,
                 sampling_step=job.progress.step, sampling_steps=job.progress.total_steps,
                 interrupted=job.cancel_event.is_set())
    preview = None if skip_current_image or job.preview is None else \
        encode_png_image(job.preview)
    textinfo = translate(language, "common.compiling") \
        if job.progress.phase == PHASE_COMPILING else None
    return {"progress": job.progress.fraction, "eta_relative": job.eta_s or 0.0,
            "state": state, "current_image": preview, "textinfo": textinfo}


def _png_info(body: PngInfoBody, limits: Limits) -> dict:
    image = decode_image(body.image, "image", limits)
    found = read_image_parameters(image)
    return {"info": found.text if found else "",
            "items": {k: v for k, v in image.info.items() if isinstance(v, str)},
            "parameters": found.parameters if found else {},
            "source": found.source if found else None}


def _detect(service: ImageServiceLike, body: DetectBody) -> dict:
    module = CONTROL_MODULES.get(body.controlnet_module, body.controlnet_module)
    images = []
    for data in body.controlnet_input_images:
        spec = ControlSpec(model="-", control_type=module,
                           image=decode_image(data, "control_image", service.limits),
                           low_threshold=int(body.controlnet_threshold_a),
                           high_threshold=int(body.controlnet_threshold_b))
        images.append(encode_png_image(service.preprocess(spec)))
    return {"images": images, "info": "Success"}


def _utility_routes(router: APIRouter, service: ImageServiceLike, options: ApiOptions) -> None:
    cpu_slots = asyncio.Semaphore(CPU_ROUTE_SLOTS)

    @router.get("/sdapi/v1/progress")
    def progress(request: Request, skip_current_image: bool = False) -> dict:
        return _progress(service, caller_of(request, options), options, skip_current_image,
                         _language(request))

    @router.post("/sdapi/v1/interrupt")
    def interrupt(request: Request) -> None:
        job = _own_running_job(service, caller_of(request, options), options)
        if job is not None:
            service.cancel(job)

    @router.post("/sdapi/v1/skip")
    def skip(request: Request) -> None:
        """Drop the caller's running job's current image (batch) and go on with the next."""
        job = _own_running_job(service, caller_of(request, options), options)
        if job is not None:
            job.skip_event.set()

    @router.post("/sdapi/v1/png-info")
    async def png_info(body: PngInfoBody) -> dict:
        async with cpu_slots:
            return await run_in_threadpool(_png_info, body, service.limits)

    @router.post("/sdapi/v1/unload-checkpoint")
    async def unload_checkpoint(request: Request) -> None:
        await _queue_model_action(service, ModelAction("unload"), request, options,
                                  admins_only=True)

    @router.post("/sdapi/v1/reload-checkpoint")
    async def reload_checkpoint(request: Request) -> None:
        await _queue_model_action(service, ModelAction("load", service.active_model), request,
                                  options, admins_only=True)

    @router.get("/sdapi/v1/memory")
    def memory() -> dict:
        return service.memory()

    @router.post("/controlnet/detect")
    async def detect(body: DetectBody) -> dict:
        async with cpu_slots:
            return await run_in_threadpool(_detect, service, body)

    @router.get("/sdapi/v1/prompt-styles")
    def prompt_styles() -> list[dict]:
        return []

    @router.get("/sdapi/v1/cmd-flags")
    def cmd_flags() -> dict:
        return {}  # never the password or paths

    @router.get("/docs", include_in_schema=False)
    def docs() -> HTMLResponse:
        """Swagger UI over /openapi.json (its script comes from a CDN; the schema is local)."""
        return get_swagger_ui_html(openapi_url="/openapi.json", title="画境 Huajing API")


def install(app, service: ImageServiceLike, options: ApiOptions) -> None:
    """Add the API's routes to a FastAPI app (Gradio's own), ahead of its catch-all mount."""
    router = build_router(service, options)

    @router.get("/openapi.json", include_in_schema=False)
    def schema() -> dict:
        """The schema behind the same password as the routes it describes."""
        return app.openapi()

    app.router.routes[0:0] = router.routes
