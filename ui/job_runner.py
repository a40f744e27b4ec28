"""The runner that turns a click into one job in the service's queue, and who a click is from."""

from __future__ import annotations

import logging
import secrets
import threading
from typing import Any

import gradio as gr

from engine.errors import EngineError
from engine.interfaces import ImageServiceLike
from engine.jobs import NO_SHARE, ModelAction
from engine.metadata.outputs import with_png
from engine.requests import PHASE_COMPILING, GenerationRequest, GenerationResult
from ui.texts import Texts

logger = logging.getLogger(__name__)

GPU_QUEUE = "gpu"  # events that use the model outside the job queue: one at a time
POLL_SECONDS = 0.2


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
        assert job.result is not None  # a generation job that did not fail has its result
        # One PNG per image, saved and then shown from the same bytes (see ResultWidgets).
        result = with_png(job.result)
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
        if state.phase == PHASE_COMPILING:
            progress(0, desc=self.texts("common.compiling"))
            return
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


def session_of(request: gr.Request | None) -> str:
    """The browser session. A REST caller without one gets an id of its own: callers without a
    session never share one (and so never interrupt each other's jobs)."""
    return getattr(request, "session_hash", None) or f"no-session-{secrets.token_hex(8)}"


def user_of(request: gr.Request | None) -> str:
    """Who submits: the Gradio login when there is one (the API's Basic user of the same
    name), else the browser session."""
    name = getattr(request, "username", None)
    return f"user:{name}" if name else f"session:{session_of(request)}"
