"""One FIFO queue of generation jobs for the UI and the HTTP API alike: one job on the device at
a time, a bounded number waiting (beyond that a clear "busy"), each job with an id, its owner,
its position, its progress, and a cancel that reaches it whether it waits or runs.

Each job records who submitted it (``user``: a login, a browser session, or "" for an
anonymous caller), so interrupt, skip and progress can act on the caller's own job only, and
each submitter (``quota_key``: the user, else the client's address) may hold only a share of
the waiting places. Model switches go through the same queue (``ModelAction``), so a request
to switch never blocks a server thread on the lock a running job holds.
"""

from __future__ import annotations

import dataclasses
import enum
import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from PIL import Image

from engine.errors import EngineError, JobCancelled, ResourceError, SkipImage
from engine.requests import GenerationRequest, GenerationResult, PreparedRequest, ProgressUpdate

logger = logging.getLogger(__name__)



class ModelActionTarget(Protocol):
    def activate(self, model: str) -> None: ...

    def unload_models(self) -> None: ...


@dataclass(frozen=True)
class ModelAction:
    """A queued change of the loaded model: "load" makes ``model`` active, "unload" frees the
    device. Runs in turn with generation jobs, which hold the pipeline lock while they run."""

    action: str  # "load" or "unload"
    model: str = ""

    def apply(self, service: ModelActionTarget) -> None:
        """Carry it out on ``service`` (the image service)."""
        if self.action == "unload":
            service.unload_models()
        else:
            service.activate(self.model)


# A generation job waits prepared (``engine.validation.prepare_request``): what runs is what waited.
QueuedRequest = PreparedRequest | ModelAction
Runner = Callable[[QueuedRequest, Callable[[ProgressUpdate], None], threading.Event],
                  GenerationResult | None]
NO_SHARE = "*"  # quota key of the one user of a single-user install: the whole queue is theirs
KEEP_FINISHED_S = 3600.0  # finished jobs that keep their result (v2) stay readable this long
MAX_KEPT_FINISHED = 256  # and at most this many of them, so memory stays bounded


class JobState(str, enum.Enum):
    QUEUED = "queued"
    RUNNING = "running"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


@dataclass(frozen=True)
class JobProgress:
    step: int = 0
    total_steps: int = 0
    batch_index: int = 0
    batch_count: int = 0
    phase: str = ""  # ProgressUpdate.phase: "compiling" while torch.compile works

    @property
    def fraction(self) -> float:
        total = self.total_steps * self.batch_count
        return (self.batch_index * self.total_steps + self.step) / total if total else 0.0


class Job:
    def __init__(self, request: QueuedRequest, owner: str, user: str = "",
                 quota_key: str = "", keep_result: bool = False) -> None:
        self.id = uuid.uuid4().hex
        self.owner = owner  # the secret that may read and cancel it (a token or a session)
        self.user = user  # who submitted it; "" for an anonymous caller, who owns nothing
        self.quota_key = quota_key or user or owner
        self.keep_result = keep_result  # kept for later reads (v2 jobs); others go at once
        self.request = request
        self.created = time.time()
        self.ended: float | None = None
        self.started: float | None = None
        self.state = JobState.QUEUED
        self.progress = JobProgress()
        self.result: GenerationResult | None = None
        self.error: EngineError | None = None
        self.cancel_event = threading.Event()
        self.skip_event = threading.Event()  # drop the current batch, go on with the next
        self.finished = threading.Event()
        self.context: object = None  # what the submitter keeps with the job (an API body)
        # The latest rough picture of the first image, while running.
        self.preview: Image.Image | None = None
        self._on_finish: list[Callable[[], None]] = []
        self._on_finish_lock = threading.Lock()

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

    def when_finished(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once the job has finished (now, if it has). It runs in the thread
        that finishes the job, so it must be quick: the HTTP API wakes its event loop with it
        instead of polling, which cost each answer up to a poll period."""
        with self._on_finish_lock:
            if not self.finished.is_set():
                self._on_finish.append(callback)
                return
        callback()

    def mark_finished(self) -> None:
        with self._on_finish_lock:
            self.finished.set()
            callbacks, self._on_finish = self._on_finish, []
        for callback in callbacks:
            try:
                callback()
            except Exception:  # a waiter's hook must not stop the queue's worker
                logger.exception("a hook waiting for job %s failed", self.id)

    @property
    def eta_s(self) -> float | None:
        done = self.progress.fraction
        if self.started is None or done <= 0:
            return None
        elapsed = time.time() - self.started
        return elapsed / done * (1 - done)


def _without_images(request: QueuedRequest) -> QueuedRequest:
    """The request as a record: its (possibly large) input images dropped."""
    if isinstance(request, PreparedRequest):
        return dataclasses.replace(request, request=_images_dropped(request.request))
    return request


def _images_dropped(request: GenerationRequest) -> GenerationRequest:
    from engine.requests import ControlNetRequest, Img2ImgRequest, InpaintRequest

    changes: dict = {}
    if isinstance(request, Img2ImgRequest):
        changes["init_image"] = None
    if isinstance(request, InpaintRequest):
        changes["mask"] = None
    if isinstance(request, ControlNetRequest):
        changes["control"] = dataclasses.replace(request.control, image=None)
    return dataclasses.replace(request, **changes) if changes else request


class JobQueue:
    def __init__(self, run: Runner, max_waiting: int = 32, max_per_user: int | None = None,
                 keep_finished_s: float = KEEP_FINISHED_S,
                 max_kept: int = MAX_KEPT_FINISHED) -> None:
        self._run = run
        self.max_waiting = max_waiting
        # One submitter may take a quarter of the places (at least 2): others still get in.
        self.max_per_user = max_per_user or max(2, max_waiting // 4)
        self._keep_finished_s = keep_finished_s
        self._max_kept = max_kept
        self._waiting: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._finished_order: deque[Job] = deque()
        self._running: Job | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._worker = threading.Thread(target=self._work, name="job-queue", daemon=True)
        self._worker.start()

    def submit(self, request: QueuedRequest, owner: str, user: str = "", quota_key: str = "",
               keep_result: bool = False) -> Job:
        job = Job(request, owner, user, quota_key, keep_result)
        with self._lock:
            if len(self._waiting) >= self.max_waiting:
                raise ResourceError("queue_full", size=self.max_waiting)
            mine = sum(1 for queued in self._waiting if queued.quota_key == job.quota_key)
            if job.quota_key != NO_SHARE and mine >= self.max_per_user:
                raise ResourceError("queue_share_full", size=self.max_per_user)
            self._drop_expired()
            self._waiting.append(job)
            self._jobs[job.id] = job
            self._wake.notify()
        return job

    def get(self, job_id: str) -> Job | None:
        with self._lock:
            return self._jobs.get(job_id)

    def position(self, job: Job) -> int:
        """0 while running; 1 for the next to run; and so on."""
        with self._lock:
            if job.state is not JobState.QUEUED:
                return 0
            return next((i + 1 for i, queued in enumerate(self._waiting) if queued is job), 0)

    @property
    def running(self) -> Job | None:
        return self._running

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._waiting)

    def waiting_for(self, user: str) -> int:
        """How many of ``user``'s jobs wait; 0 for an anonymous caller, who owns none."""
        if not user:
            return 0
        with self._lock:
            return sum(1 for job in self._waiting if job.user == user)

    def cancel(self, job: Job) -> None:
        """Stops a running job within one step; removes a waiting one at once."""
        job.cancel_event.set()
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
                self._finish(job, JobState.CANCELLED, error=JobCancelled())

    def _finish(self, job: Job, state: JobState, error: EngineError | None = None) -> None:
        job.state, job.error, job.ended = state, error, time.time()
        job.preview = None  # the result is what is kept; input images are not needed now
        job.request = _without_images(job.request)
        if job.keep_result:
            self._finished_order.append(job)
            self._drop_expired()
        else:  # its submitter holds the job itself and reads the result from it
            self._jobs.pop(job.id, None)
        job.mark_finished()

    def _drop_expired(self) -> None:
        """Forget kept jobs older than the keep time, and the oldest beyond the cap."""
        now = time.time()
        order = self._finished_order
        while order and (len(order) > self._max_kept or
                         now - (order[0].ended or now) > self._keep_finished_s):
            self._jobs.pop(order.popleft().id, None)

    def _work(self) -> None:
        while True:
            with self._lock:
                while not self._waiting:
                    self._wake.wait()
                job = self._waiting.popleft()
                job.state, job.started = JobState.RUNNING, time.time()
                self._running = job
            self._execute(job)

    def _execute(self, job: Job) -> None:
        def on_progress(update: ProgressUpdate) -> None:
            if job.skip_event.is_set():
                job.skip_event.clear()
                raise SkipImage()
            job.progress = JobProgress(update.step, update.total_steps, update.batch_index,
                                       update.batch_count, update.phase)
            if update.preview is not None:
                job.preview = update.preview

        error: EngineError | None  # JobCancelled, a failure, or none
        state, error = JobState.DONE, None
        try:
            job.result = self._run(job.request, on_progress, job.cancel_event)
        except JobCancelled as cancelled:
            state, error = JobState.CANCELLED, cancelled
        except EngineError as failure:
            state, error = JobState.FAILED, failure
        except Exception:  # the queue must outlive any one job
            logger.exception("job %s failed", job.id)
            state, error = JobState.FAILED, ResourceError("job_failed")
        with self._lock:
            self._running = None
            self._finish(job, state, error)

