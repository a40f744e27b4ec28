"""The routes. Every generation goes through the service's one job queue, like the UI's."""

from __future__ import annotations

import logging
import secrets
from dataclasses import dataclass
from typing import Any, Callable

from fastapi import APIRouter, Depends, HTTPException, Request
from fastapi.exceptions import RequestValidationError
from fastapi.openapi.docs import get_swagger_ui_html
from fastapi.responses import HTMLResponse, JSONResponse
from fastapi.routing import APIRoute
from fastapi.security import HTTPBasic, HTTPBasicCredentials

from api.convert import (
    CONTROL_MODULES, decode_image, encode_png_image, local_model_row, saved_or_warned,
    to_request, to_response,
)
from api.schemas import (
    DetectBody, GenerationResponse, Img2ImgBody, JobBody, JobCreated, JobStatusResponse,
    OptionsBody, PngInfoBody, Txt2ImgBody,
)
from engine.errors import EngineError, ResourceError
from engine.image_metadata import read_image_parameters
from engine.jobs import Job, JobState
from engine.manifest import ModelKind
from engine.requests import ControlSpec
from engine.samplers import ALL_SCHEDULES, SAMPLERS, SCHEDULE_LABELS
from locales import error_text

logger = logging.getLogger(__name__)

BUSY_CODES = {"queue_full"}


@dataclass(frozen=True)
class ApiOptions:
    auth: tuple[tuple[str, str], ...] = ()
    wait_timeout_s: float = 3600.0
    max_body_bytes: int = 80 * 1024 * 1024  # a few base64 images; Starlette reads it whole


def _language(request: Request) -> str:
    return "en" if request.headers.get("accept-language", "").startswith("en") else "zh-CN"


def invalid_body(request: Request, error: RequestValidationError) -> JSONResponse:
    """422 like FastAPI's, but never echoing the input (a NaN cannot even be sent back)."""
    fields = [".".join(str(part) for part in item["loc"][1:]) for item in error.errors()]
    language = _language(request)
    return JSONResponse(status_code=422, content={
        "error": "invalid_body", "detail": error_text(language, "invalid_body",
                                                      {"fields": ", ".join(fields)}),
        "errors": [{"loc": [str(p) for p in item["loc"]], "msg": item["msg"],
                    "type": item["type"]} for item in error.errors()]})


def error_response(request: Request, error: EngineError) -> JSONResponse:
    language = _language(request)
    status = 503 if error.code in BUSY_CODES else 404 if error.code == "job_not_found" else 400
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
    basic = HTTPBasic(auto_error=False)

    def check(credentials: HTTPBasicCredentials | None = Depends(basic)) -> str:
        if not options.auth:
            return ""
        for user, password in options.auth:
            if credentials is not None and secrets.compare_digest(
                    credentials.username.encode(), user.encode()) and secrets.compare_digest(
                    credentials.password.encode(), password.encode()):
                return user
        raise HTTPException(status_code=401, headers={"WWW-Authenticate": "Basic"},
                            detail="authentication required / 需要登录")

    return check


def _size_limit(options: ApiOptions) -> Callable:
    def check(request: Request) -> None:
        length = request.headers.get("content-length")
        if length and length.isdigit() and int(length) > options.max_body_bytes:
            raise HTTPException(status_code=413, detail="request too large / 请求过大")

    return check


def build_router(service: Any, options: ApiOptions = ApiOptions()) -> APIRouter:
    router = APIRouter(route_class=_ApiRoute, dependencies=[
        Depends(_auth_dependency(options)), Depends(_size_limit(options))])
    _generation_routes(router, service, options)
    _job_routes(router, service)
    _catalog_routes(router, service)
    _utility_routes(router, service)
    return router


def _run(service: Any, body: Txt2ImgBody, owner: str, timeout: float) -> GenerationResponse:
    request = to_request(body, service.active_model, service.limits)
    job = service.submit(request, owner=owner)
    if not job.wait(timeout):
        service.cancel(job)
        raise ResourceError("job_timeout")
    if job.error is not None:
        raise job.error
    result = saved_or_warned(service, job.result) if body.save_images else job.result
    return to_response(result, body)


def _generation_routes(router: APIRouter, service: Any, options: ApiOptions) -> None:
    @router.post("/sdapi/v1/txt2img", response_model=GenerationResponse)
    def txt2img(body: Txt2ImgBody) -> GenerationResponse:
        return _run(service, body, secrets.token_urlsafe(16), options.wait_timeout_s)

    @router.post("/sdapi/v1/img2img", response_model=GenerationResponse)
    def img2img(body: Img2ImgBody) -> GenerationResponse:
        return _run(service, body, secrets.token_urlsafe(16), options.wait_timeout_s)


def _job_status(service: Any, job: Job) -> JobStatusResponse:
    done = job.state is JobState.DONE and job.context is not None
    result = to_response(job.result, job.context) if done else None
    return JobStatusResponse(
        id=job.id, state=job.state.value, position=service.queue_position(job),
        progress=1.0 if job.state is JobState.DONE else job.progress.fraction,
        eta_relative=job.eta_s, result=result,
        preview=encode_png_image(job.preview) if job.state is JobState.RUNNING and
        job.preview is not None else None,
        error=job.error.code if job.error else None,
        detail=error_text("zh-CN", job.error.code, job.error.params) if job.error else None)


def _job_routes(router: APIRouter, service: Any) -> None:
    @router.post("/sdapi/v2/jobs", response_model=JobCreated, status_code=202)
    def create(body: JobBody) -> JobCreated:
        """Queue a job and answer at once with its id and the token that may cancel it."""
        token = secrets.token_urlsafe(16)
        dump = body.model_dump(exclude={"type"}, exclude_unset=True)
        typed = Img2ImgBody(**dump) if body.type == "img2img" else Txt2ImgBody(**dump)
        job = service.submit(to_request(typed, service.active_model, service.limits),
                             owner=token)
        job.context = typed
        return JobCreated(id=job.id, token=token)

    def find(job_id: str, request: Request) -> Job:
        """Only the client holding the job's token (``X-Job-Token``) may see or cancel it."""
        job = service.jobs.get(job_id)
        if job is None:
            raise EngineError("job_not_found", id=job_id)
        token = request.headers.get("x-job-token", "")
        if not secrets.compare_digest(token.encode(), job.owner.encode()):
            raise HTTPException(status_code=403, detail="not your job / 不是你的任务")
        return job

    @router.get("/sdapi/v2/jobs/{job_id}", response_model=JobStatusResponse)
    def status(job_id: str, request: Request) -> JobStatusResponse:
        return _job_status(service, find(job_id, request))

    @router.delete("/sdapi/v2/jobs/{job_id}", response_model=JobStatusResponse)
    def cancel(job_id: str, request: Request) -> JobStatusResponse:
        job = find(job_id, request)
        service.cancel(job)
        job.wait(30)
        return _job_status(service, job)


def _catalog_routes(router: APIRouter, service: Any) -> None:
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
    def set_options(body: OptionsBody) -> dict:
        if body.sd_model_checkpoint:
            service.activate(body.sd_model_checkpoint)
        return {"sd_model_checkpoint": service.active_model}

    @router.get("/controlnet/model_list")
    def controlnet_models() -> dict:
        return {"model_list": [e.id for e in service.entries(ModelKind.CONTROLNET)]}

    @router.get("/controlnet/module_list")
    def controlnet_modules() -> dict:
        return {"module_list": ["none", *service.control_types()]}


def _progress(service: Any, skip_current_image: bool) -> dict:
    job = service.jobs.running
    state = {"skipped": False, "interrupted": False, "job": "", "job_count": service.jobs.waiting,
             "job_timestamp": "", "job_no": 0, "sampling_step": 0, "sampling_steps": 0}
    if job is None:
        return {"progress": 0.0, "eta_relative": 0.0, "state": state, "current_image": None,
                "textinfo": None}
    state.update(job=job.id, job_count=service.jobs.waiting + 1,
                 sampling_step=job.progress.step, sampling_steps=job.progress.total_steps,
                 interrupted=job.cancel_event.is_set())
    preview = None if skip_current_image or job.preview is None else \
        encode_png_image(job.preview)
    return {"progress": job.progress.fraction, "eta_relative": job.eta_s or 0.0,
            "state": state, "current_image": preview, "textinfo": None}


def _utility_routes(router: APIRouter, service: Any) -> None:
    @router.get("/sdapi/v1/progress")
    def progress(skip_current_image: bool = False) -> dict:
        return _progress(service, skip_current_image)

    @router.post("/sdapi/v1/interrupt")
    def interrupt() -> None:
        job = service.jobs.running
        if job is not None:
            service.cancel(job)

    @router.post("/sdapi/v1/skip")
    def skip() -> None:
        """Drop the running job's current image (batch) and go on with the next one."""
        job = service.jobs.running
        if job is not None:
            job.skip_event.set()

    @router.post("/sdapi/v1/png-info")
    def png_info(body: PngInfoBody) -> dict:
        image = decode_image(body.image, "image", service.limits)
        found = read_image_parameters(image)
        return {"info": found.text if found else "",
                "items": {k: v for k, v in image.info.items() if isinstance(v, str)},
                "parameters": found.parameters if found else {},
                "source": found.source if found else None}

    @router.post("/sdapi/v1/unload-checkpoint")
    def unload_checkpoint() -> None:
        service.unload_models()

    @router.post("/sdapi/v1/reload-checkpoint")
    def reload_checkpoint() -> None:
        service.activate(service.active_model)

    @router.get("/sdapi/v1/memory")
    def memory() -> dict:
        return service.memory()

    @router.post("/controlnet/detect")
    def detect(body: DetectBody) -> dict:
        module = CONTROL_MODULES.get(body.controlnet_module, body.controlnet_module)
        images = []
        for index, data in enumerate(body.controlnet_input_images):
            spec = ControlSpec(model="-", control_type=module,
                               image=decode_image(data, "control_image", service.limits),
                               low_threshold=int(body.controlnet_threshold_a),
                               high_threshold=int(body.controlnet_threshold_b))
            images.append(encode_png_image(service.preprocess(spec)))
        return {"images": images, "info": "Success"}

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


def install(app, service: Any, options: ApiOptions) -> None:
    """Add the API's routes to a FastAPI app (Gradio's own), ahead of its catch-all mount."""
    router = build_router(service, options)

    @router.get("/openapi.json", include_in_schema=False)
    def schema() -> dict:
        """The schema behind the same password as the routes it describes."""
        return app.openapi()

    app.router.routes[0:0] = router.routes
