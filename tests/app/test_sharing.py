"""The app as it is shared: the real composition (``app.build_http_app``: the API, the WebUI and
the request guard on one port, served by our uvicorn) over a fake engine, probed the way the
adversarial review did — two users interrupting each other, a forged Host, a crowd of model
switches and waiting clients during a long job. Bounded in count and time; loopback only.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest

from api.server import build_server
from app import build_http_app
from app_settings import AppSettings, Preferences, PreferencesStore
from engine.fake_engine import FakeEngine, fake_image_service
from engine.service import ImageService
from engine.store.manifest import ModelKind
from tests.support.helpers import send_chunked_until_answered
from tests.support.ui_client import free_port
from ui.app import UiOptions, build_ui

SMALL = {"steps": 3, "width": 64, "height": 64}
ALICE, BOB = ("alice", "s3cret"), ("bob", "hunter2")
# Answers that must come while a job runs: far longer than they take, far shorter than the
# gated job, which waits until the test opens its gate.
ANSWER_TIMEOUT_S = 10


@contextlib.contextmanager
def shared_app(tmp_path: Path, served: tuple[ImageService, FakeEngine],
               **settings_changes) -> Iterator[tuple[str, Path]]:
    service, engine = served
    store = PreferencesStore(tmp_path / "settings.json")
    store.save(Preferences(output_dir=str(tmp_path / "outputs")))
    ui = build_ui(service, UiOptions(store.load()), store)
    ui.queue(max_size=32, default_concurrency_limit=1)
    port = free_port()
    settings = AppSettings(port=port, **settings_changes)
    server = build_server(build_http_app(ui, service, settings), "127.0.0.1", port)
    thread = server.start_in_thread()
    try:
        yield f"http://127.0.0.1:{port}", store.path
    finally:
        if engine.gate is not None:
            engine.gate.set()
        server.should_exit = True
        thread.join(10)


@pytest.fixture
def served(tmp_path) -> tuple[ImageService, FakeEngine]:
    """The real service over the fake engine, every manifest model on disk."""
    return fake_image_service(tmp_path / "data")


@pytest.fixture
def gated(served):
    """``served`` whose jobs wait at the engine's gate until the test opens it."""
    _service, engine = served
    engine.gate = threading.Event()
    yield served
    engine.gate.set()


def start_job(url: str, auth=None, prompt: str = "山") -> dict:
    answer = httpx.post(f"{url}/sdapi/v2/jobs", auth=auth, json={"prompt": prompt, **SMALL})
    assert answer.status_code == 202, answer.text
    return answer.json()


def job_state(url: str, job: dict, auth=None) -> str:
    answer = httpx.get(f"{url}/sdapi/v2/jobs/{job['id']}", auth=auth,
                       headers={"x-job-token": job["token"]})
    return answer.json()["state"]


@pytest.mark.servers
def test_two_users_neither_interrupt_nor_watch_each_other(tmp_path, gated):
    with shared_app(tmp_path, gated, auth=(ALICE, BOB)) as (url, _settings):
        job = start_job(url, ALICE, prompt="爱丽丝的画")
        assert gated[1].started.wait(30)
        bobs_view = httpx.get(f"{url}/sdapi/v1/progress", auth=BOB).json()
        assert bobs_view["state"]["job"] == "" and bobs_view["current_image"] is None
        assert httpx.post(f"{url}/sdapi/v1/interrupt", auth=BOB).status_code == 200
        assert httpx.post(f"{url}/sdapi/v1/skip", auth=BOB).status_code == 200
        alices_view = httpx.get(f"{url}/sdapi/v1/progress", auth=ALICE).json()
        assert alices_view["state"]["job"] == job["id"]
        assert not alices_view["state"]["interrupted"]  # Bob's interrupt did not reach it
        # Alice reads her job as its owner, without the token; Bob may not.
        mine = httpx.get(f"{url}/sdapi/v2/jobs/{job['id']}", auth=ALICE)
        assert mine.status_code == 200
        assert httpx.get(f"{url}/sdapi/v2/jobs/{job['id']}", auth=BOB).status_code == 403
        assert httpx.post(f"{url}/sdapi/v1/interrupt", auth=ALICE).status_code == 200
        gated[1].gate.set()
        states = {job_state(url, job, ALICE) for _ in range(1)}
        deadline_reads = 0
        while states != {"cancelled"} and deadline_reads < 300:
            states = {job_state(url, job, ALICE)}
            deadline_reads += 1
        assert states == {"cancelled"}


@pytest.mark.servers
def test_a_single_user_install_interrupts_whatever_runs(tmp_path, gated):
    """Loopback, no accounts: everyone is the one local user, as in AUTOMATIC1111."""
    with shared_app(tmp_path, gated) as (url, _settings):
        job = start_job(url)
        assert gated[1].started.wait(30)
        assert httpx.get(f"{url}/sdapi/v1/progress").json()["state"]["job"] == job["id"]
        assert httpx.post(f"{url}/sdapi/v1/interrupt").json() is None
        gated[1].gate.set()
        assert httpx.delete(f"{url}/sdapi/v2/jobs/{job['id']}",
                            headers={"x-job-token": job["token"]}).json()["state"] == "cancelled"


@pytest.mark.servers
def test_a_forged_host_neither_generates_nor_rewrites_the_settings(tmp_path, served):
    _service, engine = served
    with shared_app(tmp_path, served) as (url, settings_path):
        before = settings_path.read_bytes()
        forged = {"host": "rebound.attacker.example"}
        generate = httpx.post(f"{url}/sdapi/v1/txt2img", headers=forged,
                              json={"prompt": "山", **SMALL})
        assert generate.status_code == 403
        save = httpx.post(f"{url}/gradio_api/call/save_settings", headers=forged,
                          json={"data": ["en", "/tmp", "low", "Euler", "", ""]})
        assert save.status_code == 403
        page = httpx.get(f"{url}/", headers=forged)
        assert page.status_code == 403
        assert engine.requests == [] and settings_path.read_bytes() == before
        assert httpx.get(f"{url}/").status_code == 200  # its own address still works


@pytest.mark.servers
def test_a_foreign_page_cannot_interrupt_or_unload(tmp_path, gated):
    with shared_app(tmp_path, gated) as (url, _settings):
        job = start_job(url)
        assert gated[1].started.wait(30)
        foreign = {"origin": "https://attacker.example"}
        for path in ("/sdapi/v1/interrupt", "/sdapi/v1/skip", "/sdapi/v1/unload-checkpoint"):
            assert httpx.post(f"{url}{path}", headers=foreign).status_code == 403, path
        assert not job_cancelled(gated[1], url, job)


def job_cancelled(engine: FakeEngine, url: str, job: dict) -> bool:
    progress = httpx.get(f"{url}/sdapi/v1/progress").json()
    return bool(progress["state"]["interrupted"]) or bool(engine.cancelled)


@pytest.mark.servers
def test_model_switches_and_waiting_clients_do_not_starve_the_server(tmp_path, gated):
    """45 model switches and 40 generations wait on a long job; the page, its config, the
    progress and the listings still answer, and every switch is done once the job ends."""
    other = [e.id for e in gated[0].entries(ModelKind.BASE)][1]
    with shared_app(tmp_path, gated) as (url, _settings):
        job = start_job(url)
        assert gated[1].started.wait(30)
        crowd = ThreadPoolExecutor(max_workers=85)
        long_wait = httpx.Timeout(120)
        switches = [crowd.submit(httpx.post, f"{url}/sdapi/v1/options", timeout=long_wait,
                                 json={"sd_model_checkpoint": other}) for _ in range(45)]
        waiting = [crowd.submit(httpx.post, f"{url}/sdapi/v1/txt2img", timeout=long_wait,
                                json={"prompt": "等", **SMALL}) for _ in range(40)]
        try:
            wait_until_queued(url, at_least=30)
            for path in ("/", "/config", "/sdapi/v1/progress", "/sdapi/v1/sd-models",
                         "/sdapi/v1/samplers", "/sdapi/v1/options"):
                answer = httpx.get(f"{url}{path}", timeout=ANSWER_TIMEOUT_S)
                assert answer.status_code == 200, path
            assert job_state(url, job) == "running"  # all of that while the job still ran
        finally:
            gated[1].gate.set()
            answers = [future.result(timeout=120) for future in switches + waiting]
            crowd.shutdown()
        codes = {answer.status_code for answer in answers}
        assert codes <= {200, 503}, codes  # each one done, or refused at once as queue_full
        assert json.loads(answers[0].text).get("sd_model_checkpoint", other) == other
        assert httpx.get(f"{url}/sdapi/v1/options").json()["sd_model_checkpoint"] == other


def wait_until_queued(url: str, at_least: int) -> None:
    for _ in range(600):
        if httpx.get(f"{url}/sdapi/v1/progress", timeout=ANSWER_TIMEOUT_S).json()[
                "state"]["job_count"] >= at_least:
            return
        threading.Event().wait(0.05)
    raise AssertionError("the crowd never queued")


@pytest.mark.servers
def test_an_anonymous_body_to_gradio_routes_meets_401_first(tmp_path, served):
    with shared_app(tmp_path, served, auth=(ALICE,)) as (url, _settings):
        for path in ("/gradio_api/queue/join", "/gradio_api/cancel", "/gradio_api/upload",
                     "/sdapi/v1/txt2img"):
            answer = httpx.post(f"{url}{path}", content=b"x" * 1024)
            assert answer.status_code == 401, path


@pytest.mark.servers
def test_gradio_login_backs_off_after_wrong_passwords(tmp_path, served):
    with shared_app(tmp_path, served, auth=(ALICE,)) as (url, _settings):
        for _ in range(5):
            wrong = httpx.post(f"{url}/login", data={"username": "alice", "password": "x"})
            assert wrong.status_code in (400, 401)
        locked = httpx.post(f"{url}/login", data={"username": "alice", "password": "s3cret"})
        assert locked.status_code == 429


@pytest.mark.servers
def test_oversized_bodies_leave_memory_flat(tmp_path, served):
    """The review's probe: 300 MB chunked bodies, without and with credentials. The anonymous
    one meets 401 before its body is read; the signed-in one is cut off at the API's 80 MB
    limit. The server's memory never grows with the body (it grew by 1.8 GB before)."""
    import base64

    import psutil

    process = psutil.Process()
    peak = [process.memory_info().rss]
    sampling = threading.Event()

    def sample() -> None:
        while not sampling.wait(0.01):
            peak[0] = max(peak[0], process.memory_info().rss)

    _service, engine = served
    with shared_app(tmp_path, served, auth=(ALICE,)) as (url, _settings):
        host, port = url.split("//", 1)[1].split(":")
        credentials = base64.b64encode(b"alice:s3cret").decode()
        before = process.memory_info().rss
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        answers = []
        for headers in ("", f"Authorization: Basic {credentials}\r\n"):
            head = (f"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\n{headers}"
                    "Transfer-Encoding: chunked\r\nContent-Type: application/json\r\n\r\n")
            answers.append(send_chunked_until_answered(host, int(port), head,
                                                       300 * 1024 * 1024))
        sampling.set()
        sampler.join(5)
    (anonymous, anonymous_sent), (signed_in, signed_in_sent) = answers
    assert anonymous.startswith(b"HTTP/1.1 401") and anonymous_sent < 10 * 1024 * 1024
    assert signed_in.startswith(b"HTTP/1.1 413") and signed_in_sent < 300 * 1024 * 1024
    assert peak[0] - before < 400 * 1024 * 1024, (peak[0] - before) / 1024**2
    assert engine.requests == []



@pytest.mark.servers
def test_on_a_shared_install_only_signed_in_users_switch_and_only_admins_unload(
        tmp_path, served):
    service, engine = served
    before = service.active_model
    other = [e.id for e in service.entries(ModelKind.BASE)][1]
    with shared_app(tmp_path, served, on_space=True) as (url, _settings):
        for path, body in (("/sdapi/v1/unload-checkpoint", None),
                           ("/sdapi/v1/reload-checkpoint", None),
                           ("/sdapi/v1/options", {"sd_model_checkpoint": other})):
            answer = httpx.post(f"{url}{path}", json=body)
            assert answer.status_code == 403, path
        assert service.active_model == before and "(unloaded)" not in engine.loaded
    with shared_app(tmp_path, served, auth=(ALICE, BOB), admins=("alice",)) as (url, _settings):
        assert httpx.post(f"{url}/sdapi/v1/unload-checkpoint", auth=BOB).status_code == 403
        assert httpx.post(f"{url}/sdapi/v1/unload-checkpoint", auth=ALICE).status_code == 200
        switched = httpx.post(f"{url}/sdapi/v1/options", auth=BOB,
                              json={"sd_model_checkpoint": other})
        assert switched.json() == {"sd_model_checkpoint": other}


@pytest.mark.servers
def test_with_accounts_gradio_streams_need_a_user(tmp_path, served):
    with shared_app(tmp_path, served, auth=(ALICE,)) as (url, _settings):
        for path in ("/gradio_api/heartbeat/x", "/gradio_api/queue/data?session_hash=x",
                     "/gradio_api/info"):
            assert httpx.get(f"{url}{path}", timeout=10).status_code == 401, path
        assert httpx.get(f"{url}/").status_code == 200  # the login page itself shows


def test_ui_visitors_share_the_queue_by_address_without_accounts(served):
    """On a Space a visitor can open any number of browser sessions, not of addresses."""
    service, _engine = served
    from types import SimpleNamespace

    from ui.job_runner import JobRunner
    from ui.texts import Texts

    runner = JobRunner(service, Texts(), shared=True)
    visitor = SimpleNamespace(username=None, session_hash="s1",
                              client=SimpleNamespace(host="10.0.0.7"))
    another_tab = SimpleNamespace(username=None, session_hash="s2",
                                  client=SimpleNamespace(host="10.0.0.7"))
    signed_in = SimpleNamespace(username="alice", session_hash="s3",
                                client=SimpleNamespace(host="10.0.0.7"))
    assert runner.quota_of(visitor) == runner.quota_of(another_tab) == "addr:10.0.0.7"
    assert runner.quota_of(signed_in) == "user:alice"
    from engine.jobs import NO_SHARE

    assert JobRunner(service, Texts()).quota_of(visitor) == NO_SHARE
