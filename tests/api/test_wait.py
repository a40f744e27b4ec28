"""A route waiting for its job: woken by the job's end, not by a poll; cancelled past its time."""

from __future__ import annotations

import asyncio
import threading

import pytest

from api import routes
from engine.errors import ErrorCode, ResourceError
from engine.jobs import Job
from tests.support.helpers import txt2img


class CancelRecorder:
    def __init__(self) -> None:
        self.cancelled: list[Job] = []

    def cancel(self, job: Job) -> None:
        self.cancelled.append(job)


def test_a_waiting_route_wakes_when_its_job_ends_without_polling(monkeypatch):
    async def no_polling(_delay: float) -> None:
        raise AssertionError("wait_for polled instead of being woken")

    monkeypatch.setattr(routes.asyncio, "sleep", no_polling)
    job, service = Job(txt2img(), owner="a"), CancelRecorder()

    async def scenario() -> None:
        threading.Timer(0.05, job.mark_finished).start()  # the queue's worker, elsewhere
        await routes.wait_for(job, 30, service)

    asyncio.run(scenario())
    assert service.cancelled == []


def test_a_job_past_the_wait_is_cancelled_and_answered_with_a_timeout():
    job, service = Job(txt2img(), owner="a"), CancelRecorder()
    with pytest.raises(ResourceError) as caught:
        asyncio.run(routes.wait_for(job, 0.05, service))
    assert caught.value.code == ErrorCode.JOB_TIMEOUT and service.cancelled == [job]
