"""The one job queue: FIFO, one at a time, bounded, cancellable whether waiting or running."""

from __future__ import annotations

import threading

import pytest

from engine.errors import EngineError, JobCancelled, ResourceError
from engine.jobs import NO_SHARE, JobQueue, JobState
from engine.requests import ProgressUpdate
from tests.support.helpers import txt2img


class GatedRunner:
    """Runs a job in steps; each job waits at ``gate`` first, so tests decide when it goes."""

    def __init__(self) -> None:
        self.gate = threading.Event()
        self.started = threading.Event()
        self.order: list[int] = []

    def __call__(self, request, on_progress, cancel):
        self.started.set()
        assert self.gate.wait(30)
        for step in range(1, request.steps + 1):
            if cancel.is_set():
                raise JobCancelled()
            on_progress(ProgressUpdate(step, request.steps, 0, 1))
        if request.prompt == "boom":
            raise ResourceError("out_of_memory")
        if request.prompt == "bug":
            raise KeyError("unexpected")
        self.order.append(request.seed)
        return f"result {request.seed}"


@pytest.fixture
def runner():
    return GatedRunner()


def test_jobs_run_in_arrival_order_one_at_a_time(runner):
    queue = JobQueue(runner)
    jobs = [queue.submit(txt2img(seed=seed), owner="a") for seed in (1, 2, 3)]
    assert runner.started.wait(10)
    assert [queue.position(job) for job in jobs] == [0, 1, 2]
    assert jobs[0].state is JobState.RUNNING and queue.running is jobs[0]
    runner.gate.set()
    assert all(job.wait(10) for job in jobs)
    assert runner.order == [1, 2, 3] and jobs[2].result == "result 3"
    assert jobs[0].progress.fraction == 1.0


def test_a_full_queue_says_busy(runner):
    queue = JobQueue(runner, max_waiting=1)
    queue.submit(txt2img(), owner="a")
    assert runner.started.wait(10)  # the first runs; one more may wait
    queue.submit(txt2img(), owner="a")
    with pytest.raises(EngineError) as caught:
        queue.submit(txt2img(), owner="b")
    assert caught.value.code == "queue_full"
    runner.gate.set()


def test_cancel_a_waiting_and_a_running_job(runner):
    queue = JobQueue(runner)
    running = queue.submit(txt2img(steps=5), owner="a")
    waiting = queue.submit(txt2img(seed=9), owner="b")
    assert runner.started.wait(10)
    queue.cancel(waiting)
    assert waiting.wait(1) and waiting.state is JobState.CANCELLED
    queue.cancel(running)
    runner.gate.set()
    assert running.wait(10) and running.state is JobState.CANCELLED
    assert 9 not in runner.order


def test_failures_stay_with_their_job(runner):
    queue = JobQueue(runner)
    runner.gate.set()
    boom, bug, fine = (queue.submit(txt2img(prompt=p), owner="a", keep_result=True)
                       for p in ("boom", "bug", "ok"))
    assert all(job.wait(10) for job in (boom, bug, fine))
    assert (boom.state, boom.error.code) == (JobState.FAILED, "out_of_memory")
    assert (bug.state, bug.error.code) == (JobState.FAILED, "job_failed")
    assert fine.state is JobState.DONE and queue.get(fine.id) is fine


def test_one_submitter_takes_only_a_share_of_the_waiting_places(runner):
    queue = JobQueue(runner, max_waiting=8, max_per_user=2)
    queue.submit(txt2img(), owner="t1", user="user:mallory")
    assert runner.started.wait(10)  # running: no longer waiting
    for index in range(2):
        queue.submit(txt2img(), owner=f"t{index + 2}", user="user:mallory")
    with pytest.raises(EngineError) as caught:
        queue.submit(txt2img(), owner="t9", user="user:mallory")
    assert caught.value.code == "queue_share_full"
    queue.submit(txt2img(), owner="t10", user="user:alice")  # others still get in
    # Anonymous callers count by their address.
    queue.submit(txt2img(), owner="t11", quota_key="addr:10.0.0.9")
    queue.submit(txt2img(), owner="t12", quota_key="addr:10.0.0.9")
    with pytest.raises(EngineError):
        queue.submit(txt2img(), owner="t13", quota_key="addr:10.0.0.9")
    runner.gate.set()


def test_the_single_local_user_may_fill_the_whole_queue(runner):
    queue = JobQueue(runner, max_waiting=6, max_per_user=2)
    jobs = [queue.submit(txt2img(), owner=f"t{i}", user="local", quota_key=NO_SHARE)
            for i in range(6)]
    runner.gate.set()
    assert all(job.wait(10) for job in jobs)


def test_results_kept_for_a_time_and_other_finished_jobs_forgotten(runner):
    runner.gate.set()
    queue = JobQueue(runner, keep_finished_s=3600)
    kept = queue.submit(txt2img(), owner="a", keep_result=True)
    passing = queue.submit(txt2img(), owner="b")
    assert kept.wait(10) and passing.wait(10)
    assert queue.get(kept.id) is kept and queue.get(passing.id) is None
    short = JobQueue(runner, keep_finished_s=0.0)
    gone = short.submit(txt2img(), owner="a", keep_result=True)
    assert gone.wait(10)
    short.submit(txt2img(), owner="a", keep_result=True).wait(10)  # a later job tidies up
    assert short.get(gone.id) is None


def test_kept_results_are_capped(runner):
    runner.gate.set()
    queue = JobQueue(runner, max_kept=3)
    jobs = [queue.submit(txt2img(seed=i), owner="a", keep_result=True) for i in range(5)]
    assert all(job.wait(10) for job in jobs)
    assert [queue.get(job.id) is not None for job in jobs] == [False, False, True, True, True]


def test_a_finish_hook_runs_once_when_the_job_ends_or_at_once_if_it_has(runner):
    queue = JobQueue(runner)
    job = queue.submit(txt2img(), owner="a")
    calls: list[str] = []
    job.when_finished(lambda: calls.append("waiting"))
    assert calls == []
    runner.gate.set()
    assert job.wait(10)
    assert calls == ["waiting"]
    job.when_finished(lambda: calls.append("late"))
    assert calls == ["waiting", "late"]


def test_a_failing_finish_hook_does_not_stop_the_queue(runner):
    queue = JobQueue(runner)
    first = queue.submit(txt2img(seed=1), owner="a")

    def broken() -> None:
        raise RuntimeError("event loop is closed")

    first.when_finished(broken)
    runner.gate.set()
    second = queue.submit(txt2img(seed=2), owner="a")
    assert first.wait(10) and second.wait(10)
    assert first.state is JobState.DONE and runner.order == [1, 2]
