"""One FIFO queue of generation jobs for the UI and the HTTP API alike: one job on the device at
a time, a bounded number waiting (beyond that a clear "busy"), each job with an id, its owner,
its position, its progress, and a cancel that reaches it whether it waits or runs.
"""

from __future__ import annotations

import enum
import logging
import threading
import time
import uuid
from collections import deque
from dataclasses import dataclass
from typing import Callable

from engine.errors import EngineError, JobCancelled, ResourceError, SkipImage
from engine.requests import GenerationRequest, GenerationResult, ProgressUpdate

logger = logging.getLogger(__name__)

Runner = Callable[[GenerationRequest, Callable[[ProgressUpdate], None], threading.Event],
                  GenerationResult]


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

    @property
    def fraction(self) -> float:
        total = self.total_steps * self.batch_count
        return (self.batch_index * self.total_steps + self.step) / total if total else 0.0


class Job:
    def __init__(self, request: GenerationRequest, owner: str) -> None:
        self.id = uuid.uuid4().hex
        self.owner = owner
        self.request = request
        self.created = time.time()
        self.started: float | None = None
        self.state = JobState.QUEUED
        self.progress = JobProgress()
        self.result: GenerationResult | None = None
        self.error: EngineError | None = None
        self.cancel_event = threading.Event()
        self.skip_event = threading.Event()  # drop the current batch, go on with the next
        self.finished = threading.Event()
        self.context: object = None  # what the submitter keeps with the job (an API body)
        self.preview = None  # the latest rough picture of the first image, while running

    def wait(self, timeout: float | None = None) -> bool:
        return self.finished.wait(timeout)

    @property
    def eta_s(self) -> float | None:
        done = self.progress.fraction
        if self.started is None or done <= 0:
            return None
        elapsed = time.time() - self.started
        return elapsed / done * (1 - done)


def _without_images(request: GenerationRequest) -> GenerationRequest:
    """The request as a record: its (possibly large) input images dropped."""
    import dataclasses

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
    def __init__(self, run: Runner, max_waiting: int = 32, keep_finished: int = 32) -> None:
        self._run = run
        self.max_waiting = max_waiting
        self._keep_finished = keep_finished
        self._waiting: deque[Job] = deque()
        self._jobs: dict[str, Job] = {}
        self._finished_order: deque[str] = deque()
        self._running: Job | None = None
        self._lock = threading.Lock()
        self._wake = threading.Condition(self._lock)
        self._worker = threading.Thread(target=self._work, name="job-queue", daemon=True)
        self._worker.start()

    def submit(self, request: GenerationRequest, owner: str) -> Job:
        job = Job(request, owner)
        with self._lock:
            if len(self._waiting) >= self.max_waiting:
                raise ResourceError("queue_full", size=self.max_waiting)
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

    def cancel(self, job: Job) -> None:
        """Stops a running job within one step; removes a waiting one at once."""
        job.cancel_event.set()
        with self._lock:
            if job in self._waiting:
                self._waiting.remove(job)
                self._finish(job, JobState.CANCELLED, error=JobCancelled())

    def _finish(self, job: Job, state: JobState, error: EngineError | None = None) -> None:
        job.state, job.error = state, error
        job.preview = None  # the result is what is kept; input images are not needed now
        job.request = _without_images(job.request)
        self._finished_order.append(job.id)
        while len(self._finished_order) > self._keep_finished:
            self._jobs.pop(self._finished_order.popleft(), None)
        job.finished.set()

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
                                       update.batch_count)
            if update.preview is not None:
                job.preview = update.preview

        state, error = JobState.DONE, None
        try:
            job.result = self._run(job.request, on_progress, job.cancel_event)
        except JobCancelled as cancelled:
            state, error = JobState.CANCELLED, cancelled
        except EngineError as failure:
            state, error = JobState.FAILED, failure
        except Exception:  # noqa: BLE001 - the queue must outlive any one job
            logger.exception("job %s failed", job.id)
            state, error = JobState.FAILED, ResourceError("job_failed")
        with self._lock:
            self._running = None
            self._finish(job, state, error)

