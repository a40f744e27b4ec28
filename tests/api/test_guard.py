"""The request guard and the server's limits, over a real socket on 127.0.0.1, the way a
hostile client or web page would try them: bodies sent before credentials, oversized chunked
bodies, forged Host and Origin headers, password guessing, and half-open connections.
Every loop here is bounded in count and time.
"""

from __future__ import annotations

import base64
import contextlib
import logging
import select
import socket
import time
from collections.abc import Iterator

import httpx
import pytest

from api.guard import AllowedHosts, GuardPolicy, LoginThrottle, RequestGuard
from api.server import RepeatFilter, build_server
from tests.support.helpers import send_chunked_until_answered
from tests.support.ui_client import free_port

USERS = {"alice": "s3cret", "bob": "hunter2"}


class RecordingApp:
    """An ASGI app that reads the whole body and says how much it got and from whom."""

    def __init__(self) -> None:
        self.received: list[int] = []
        self.users: list[str | None] = []

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] == "lifespan":
            while (await receive())["type"] != "lifespan.shutdown":
                await send({"type": "lifespan.startup.complete"})
            await send({"type": "lifespan.shutdown.complete"})
            return
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise ConnectionError("cut off")  # what Starlette raises, roughly
            size += len(message.get("body", b""))
            if not message.get("more_body"):
                break
        self.received.append(size)
        self.users.append(scope.get("huajing.user"))
        await send({"type": "http.response.start", "status": 200,
                    "headers": [(b"content-type", b"text/plain")]})
        await send({"type": "http.response.body", "body": str(size).encode()})


@contextlib.contextmanager
def serving(policy: GuardPolicy, inner=None, **server_options) -> Iterator[tuple[str, object]]:
    inner = inner or RecordingApp()
    port = free_port()
    server = build_server(RequestGuard(inner, policy), "127.0.0.1", port, **server_options)
    thread = server.start_in_thread()
    try:
        yield f"http://127.0.0.1:{port}", inner
    finally:
        server.should_exit = True
        thread.join(10)


def policy(**changes) -> GuardPolicy:
    values = dict(allowed_hosts=AllowedHosts(["127.0.0.1", "localhost"]), users=USERS,
                  max_body_bytes=64 * 1024, max_large_body_bytes=256 * 1024)
    values.update(changes)
    return GuardPolicy(**values)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def raw_request(url: str, head: str, body_bytes: int = 0) -> tuple[bytes, int]:
    """Send ``head`` (and a chunked body of up to ``body_bytes``) until the server answers."""
    host, port = url.split("//", 1)[1].split(":")
    return send_chunked_until_answered(host, int(port), head, body_bytes)


def chunked_head(path: str, extra: str = "") -> str:
    return (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1\r\nTransfer-Encoding: chunked\r\n"
            f"Content-Type: application/json\r\n{extra}\r\n")


@pytest.mark.servers
def test_an_anonymous_body_is_refused_before_a_byte_of_it_is_read():
    with serving(policy()) as (url, inner):
        # The server answers 401 to the headers alone: the body is never waited for.
        answer, _ = raw_request(url, chunked_head("/sdapi/v1/txt2img"))
        assert answer.startswith(b"HTTP/1.1 401")
        for path in ("/gradio_api/queue/join", "/gradio_api/cancel", "/gradio_api/run/x"):
            answer, _ = raw_request(url, chunked_head(path))
            assert answer.startswith(b"HTTP/1.1 401"), path
        assert inner.received == []


@pytest.mark.servers
def test_a_chunked_body_past_the_limit_is_cut_off_with_413():
    with serving(policy()) as (url, inner):
        head = chunked_head("/sdapi/v1/txt2img", f"Authorization: {basic('alice', 's3cret')}\r\n")
        answer, sent = raw_request(url, head, 64 * 1024 * 1024)
        assert answer.startswith(b"HTTP/1.1 413"), answer[:100]
        assert sent < 64 * 1024 * 1024  # refused while the client was still sending
        assert inner.received == []  # the app never got a whole (oversized) body


@pytest.mark.servers
def test_a_declared_length_past_the_limit_is_refused_at_once():
    with serving(policy()) as (url, inner):
        head = (f"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                f"Authorization: {basic('alice', 's3cret')}\r\nContent-Length: 900000000\r\n\r\n")
        answer, _ = raw_request(url, head)
        assert answer.startswith(b"HTTP/1.1 413")
        assert inner.received == []


@pytest.mark.servers
def test_bodies_within_the_limit_reach_the_app_with_the_user():
    with serving(policy()) as (url, inner):
        answer = httpx.post(f"{url}/sdapi/v1/txt2img", content=b"y" * 200_000,
                            headers={"authorization": basic("bob", "hunter2")})
        assert answer.status_code == 200 and answer.text == "200000"
        small_route = httpx.post(f"{url}/gradio_api/queue/join", content=b"y" * 100_000,
                                 headers={"authorization": basic("bob", "hunter2")})
        assert small_route.status_code == 413  # other routes take far smaller bodies
        assert inner.users == ["bob"]


@pytest.mark.servers
def test_gets_of_the_page_pass_to_its_own_login_but_api_gets_need_a_user():
    with serving(policy()) as (url, inner):
        assert httpx.get(f"{url}/").status_code == 200  # Gradio shows its login page
        api = httpx.get(f"{url}/sdapi/v1/progress")
        assert api.status_code == 401 and api.headers["www-authenticate"].startswith("Basic")
        assert api.json()["error"] == "auth_required"
        assert inner.users == [None]


@pytest.mark.servers
def test_a_login_cookie_is_a_user():
    sessions = {"good-token": "alice"}
    cookie_policy = policy(session_user=lambda cookies: sessions.get(cookies.get("access-token")))
    with serving(cookie_policy) as (url, inner):
        answer = httpx.post(f"{url}/gradio_api/queue/join", content=b"{}",
                            headers={"cookie": "other=1; access-token=good-token"})
        assert answer.status_code == 200 and inner.users == ["alice"]
        forged = httpx.post(f"{url}/gradio_api/queue/join", content=b"{}",
                            headers={"cookie": "access-token=made-up"})
        assert forged.status_code == 401


@pytest.mark.servers
@pytest.mark.parametrize("host", ["evil.example", "evil.example:7860", "127.0.0.1.nip.io",
                                  "", "localhost.evil.example"])
def test_a_forged_host_is_refused(host):
    open_policy = policy(users={})
    with serving(open_policy) as (url, inner):
        answer = httpx.post(f"{url}/sdapi/v1/txt2img", content=b"{}", headers={"host": host})
        assert answer.status_code == 403 and answer.json()["error"] == "host_not_allowed"
        assert httpx.get(f"{url}/", headers={"host": host}).status_code == 403
        assert inner.received == []
        ours = httpx.get(f"{url}/", headers={"host": "localhost:7860"})
        assert ours.status_code == 200


@pytest.mark.servers
def test_an_allowed_host_name_is_served():
    named = policy(users={}, allowed_hosts=AllowedHosts(["127.0.0.1", "studio.lan"]))
    with serving(named) as (url, _inner):
        assert httpx.get(f"{url}/", headers={"host": "studio.lan:7860"}).status_code == 200
        assert httpx.get(f"{url}/", headers={"host": "STUDIO.LAN."}).status_code == 200


@pytest.mark.servers
@pytest.mark.parametrize("path", ["/sdapi/v1/interrupt", "/sdapi/v1/skip",
                                  "/sdapi/v1/unload-checkpoint", "/gradio_api/run/save"])
def test_a_foreign_origin_cannot_change_anything_even_without_a_body(path):
    with serving(policy(users={})) as (url, inner):
        for origin in ("http://evil.example", "null", "http://127.0.0.1.evil.example"):
            answer = httpx.post(f"{url}{path}", headers={"origin": origin})
            assert answer.status_code == 403, origin
            assert answer.json()["error"] == "origin_not_allowed"
        assert inner.received == []
        same = httpx.post(f"{url}{path}", headers={"origin": url})
        assert same.status_code == 200
        read = httpx.get(f"{url}{path}", headers={"origin": "http://evil.example"})
        assert read.status_code == 200  # reading is not changing; CORS keeps answers private


@pytest.mark.servers
def test_refusals_are_translated():
    with serving(policy()) as (url, _inner):
        english = httpx.get(f"{url}/sdapi/v1/progress", headers={"accept-language": "en-GB"})
        chinese = httpx.get(f"{url}/sdapi/v1/progress")
        assert "Sign-in required" in english.json()["detail"]
        assert "需要登录" in chinese.json()["detail"]


@pytest.mark.servers
def test_wrong_passwords_back_off_per_user_and_per_address():
    throttle = LoginThrottle(free_tries=3, max_wait_s=60)
    with serving(policy(throttle=throttle)) as (url, _inner):
        for _ in range(3):
            wrong = httpx.get(f"{url}/sdapi/v1/progress",
                              headers={"authorization": basic("alice", "guess")})
            assert wrong.status_code == 401
        # Now even the right password waits: a guesser cannot tell a hit from a miss.
        locked = httpx.get(f"{url}/sdapi/v1/progress",
                           headers={"authorization": basic("alice", "s3cret")})
        assert locked.status_code == 429 and int(locked.headers["retry-after"]) >= 1
        # The address is held back too, whichever name it tries next.
        other = httpx.get(f"{url}/sdapi/v1/progress",
                          headers={"authorization": basic("bob", "hunter2")})
        assert other.status_code == 429


def test_throttle_doubles_the_wait_and_forgets_after_success_or_the_window():
    now = [1000.0]
    throttle = LoginThrottle(free_tries=2, window_s=100, max_wait_s=8, clock=lambda: now[0])
    keys = ("user:alice",)
    throttle.failed(keys)
    throttle.failed(keys)
    assert throttle.retry_after(keys) == 1.0
    throttle.failed(keys)
    assert throttle.retry_after(keys) == 2.0
    for _ in range(10):
        throttle.failed(keys)
    assert throttle.retry_after(keys) == 8.0  # capped
    now[0] += 101
    assert throttle.retry_after(keys) == 0.0  # the window has passed
    throttle.failed(keys)
    throttle.failed(keys)
    throttle.succeeded(keys)
    assert throttle.retry_after(keys) == 0.0


def test_throttle_memory_is_bounded():
    throttle = LoginThrottle(max_keys=100)
    for index in range(1000):
        throttle.failed((f"user:{index}",))
    assert len(throttle._failures) == 100


@pytest.mark.servers
def test_half_open_connections_are_closed_and_the_server_keeps_answering():
    with serving(policy(users={}), header_timeout_s=0.5, max_connections=40) as (url, _inner):
        host, port = url.split("//", 1)[1].split(":")
        idle = []
        for index in range(60):  # more than the cap
            sock = socket.create_connection((host, int(port)), timeout=10)
            if index % 2:
                sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n")  # headers never end
            idle.append(sock)
        try:
            # Each is closed by the server: at once over the cap, else when its headers are late.
            assert all(closed_by_server(sock) for sock in idle)
        finally:
            for sock in idle:
                sock.close()
        assert httpx.get(f"{url}/", timeout=10).status_code == 200


def closed_by_server(sock: socket.socket) -> bool:
    try:
        return sock.recv(1024) == b""
    except ConnectionResetError:
        return True


@pytest.mark.servers
def test_a_slow_second_request_on_a_kept_alive_connection_is_closed_too():
    with serving(policy(users={}), header_timeout_s=0.5) as (url, _inner):
        host, port = url.split("//", 1)[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
            first = sock.recv(65536)
            assert first.startswith(b"HTTP/1.1 200")
            sock.sendall(b"GET / HTTP/1.1\r\nHost: 127.")  # and then nothing more
            deadline = time.monotonic() + 10
            closed = False
            while time.monotonic() < deadline and not closed:
                closed = sock.recv(65536) == b""
            assert closed


def test_repeated_log_lines_are_written_once_per_interval():
    now = [0.0]
    repeat = RepeatFilter(interval_s=30, clock=lambda: now[0])
    logger = logging.getLogger("test.flood")
    records = []

    class Keep(logging.Handler):
        def emit(self, record):
            records.append(record.getMessage())

    handler = Keep()
    logger.addHandler(handler)
    logger.addFilter(repeat)
    logger.propagate = False
    try:
        for _ in range(10_000):
            logger.error("socket.accept() out of system resource\nsocket: <fd 7>")
            now[0] += 0.004  # 10,000 errors in 40 s
        logger.error("another kind")
    finally:
        logger.removeHandler(handler)
        logger.removeFilter(repeat)
    accept_lines = [line for line in records if line.startswith("socket.accept()")]
    assert len(accept_lines) == 2  # at 0 s and at 30 s
    assert "more like this" in accept_lines[1]
    assert records[-1] == "another kind"


@pytest.mark.servers
def test_connections_over_the_cap_are_closed_at_once():
    with serving(policy(users={}), header_timeout_s=60, max_connections=10,
                 max_per_address=10) as (url, _inner):
        host, port = url.split("//", 1)[1].split(":")
        sockets = [socket.create_connection((host, int(port)), timeout=3) for _ in range(20)]
        try:
            # Closed ones turn readable (EOF) at once; those within the cap wait for headers.
            deadline = time.monotonic() + 10
            readable: list = []
            while len(readable) < 10 and time.monotonic() < deadline:
                readable, _, _ = select.select(sockets, [], [], 1.0)
            time.sleep(0.5)  # none more closes: the other ten stay open
            readable, _, _ = select.select(sockets, [], [], 0)
            assert len(readable) == 10 and all(closed_by_server(sock) for sock in readable)
        finally:
            for sock in sockets:
                sock.close()
        assert httpx.get(f"{url}/", timeout=10).status_code == 200


def test_the_names_a_server_answers_to():
    import socket as sockets

    from api.server import allowed_hosts_for
    from app_settings import parse_settings

    loopback = allowed_hosts_for("127.0.0.1", ["studio.lan"], {"SPACE_HOST": "me-app.hf.space"})
    assert all(name in loopback for name in ("127.0.0.1", "localhost", "[::1]", "studio.lan",
                                             "me-app.hf.space:443"))
    assert "192.168.1.20" not in loopback and "evil.example" not in loopback
    everywhere = allowed_hosts_for("0.0.0.0")
    assert sockets.gethostname() in everywhere and "127.0.0.1" in everywhere
    assert "evil.example" not in everywhere
    settings = parse_settings(["--allowed-host", "studio.lan", "--allowed-host", "a.b"], {})
    assert settings.allowed_hosts == ("studio.lan", "a.b")


@pytest.mark.servers
def test_another_port_on_this_machine_is_another_site():
    named = AllowedHosts(["127.0.0.1", "localhost"], named=["studio.example"])
    with serving(policy(users={}, allowed_hosts=named)) as (url, inner):
        port = int(url.rsplit(":", 1)[1])
        for origin in (f"http://127.0.0.1:{port + 1}", "http://localhost:3000",
                       f"http://localhost:{port}"):
            answer = httpx.post(f"{url}/sdapi/v1/interrupt", headers={"origin": origin})
            assert answer.status_code == 403, origin
        assert inner.received == []
        for origin in (f"http://127.0.0.1:{port}", "https://studio.example"):
            host = "studio.example" if "studio" in origin else f"127.0.0.1:{port}"
            answer = httpx.post(f"{url}/sdapi/v1/interrupt",
                                headers={"origin": origin, "host": host})
            assert answer.status_code == 200, origin


@pytest.mark.servers
def test_one_address_cannot_take_every_connection():
    with serving(policy(users={}), header_timeout_s=60, max_connections=20,
                 max_per_address=5) as (url, _inner):
        host, port = url.split("//", 1)[1].split(":")
        hoarded = [socket.create_connection((host, int(port)), timeout=3,
                                            source_address=("127.0.0.2", 0)) for _ in range(8)]
        try:
            deadline = time.monotonic() + 10
            readable: list = []
            while len(readable) < 3 and time.monotonic() < deadline:
                readable, _, _ = select.select(hoarded, [], [], 1.0)
            assert len(readable) == 3  # the hoarder keeps 5
            # Another address still gets in while the hoarder holds its share.
            assert httpx.get(f"{url}/", timeout=10).status_code == 200
        finally:
            for sock in hoarded:
                sock.close()


@pytest.mark.servers
def test_a_stalled_body_gives_its_place_back():
    quick = policy(users={}, body_idle_timeout_s=0.5)
    with serving(quick) as (url, inner):
        host, port = url.split("//", 1)[1].split(":")
        with socket.create_connection((host, int(port)), timeout=10) as sock:
            sock.sendall(b"POST /sdapi/v1/txt2img HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                         b"Content-Length: 1000\r\n\r\n" + b"x" * 10)  # and no more
            answer = sock.recv(65536)
        assert answer.startswith(b"HTTP/1.1 408")
        assert inner.received == []


@pytest.mark.servers
def test_a_link_on_another_site_signs_no_one_out():
    with serving(policy(users={})) as (url, inner):
        cross = httpx.get(f"{url}/logout", headers={"sec-fetch-site": "cross-site"})
        assert cross.status_code == 403
        assert httpx.get(f"{url}/logout", headers={"sec-fetch-site": "same-origin"}).status_code \
            == 200


@pytest.mark.servers
def test_a_name_guessed_from_elsewhere_does_not_lock_its_user_out():
    throttle = LoginThrottle(free_tries=2, max_wait_s=60)
    guesser = httpx.Client(transport=httpx.HTTPTransport(local_address="127.0.0.2"))
    with serving(policy(throttle=throttle)) as (url, _inner):
        for _ in range(4):
            wrong = guesser.get(f"{url}/sdapi/v1/progress",
                                headers={"authorization": basic("alice", "guess")})
            assert wrong.status_code in (401, 429)
        assert guesser.get(f"{url}/sdapi/v1/progress",
                           headers={"authorization": basic("alice", "s3cret")}).status_code == 429
        # Alice, from her own address, still signs in (at most a little slowed down).
        mine = httpx.get(f"{url}/sdapi/v1/progress", timeout=30,
                         headers={"authorization": basic("alice", "s3cret")})
        assert mine.status_code == 200
    guesser.close()
