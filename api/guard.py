"""The one gate in front of every route, the API's and Gradio's alike: a pure ASGI layer.

It decides from the request line and headers alone, before any route (or FastAPI's body
parsing) runs, so an anonymous or oversized body costs nothing:

1. ``Host`` must name this server (the bound address, localhost, an ``--allowed-host``, the
   share link or the Space): a page on another site that rebinds its DNS name to 127.0.0.1
   reaches nothing.
2. A state-changing request (any method but GET/HEAD/OPTIONS) or a websocket with a foreign
   ``Origin`` is refused: a page on another site cannot drive this one through the browser.
3. With accounts, a request that carries a body, and every API route, needs a user: HTTP Basic
   or Gradio's login cookie. Only ``/login`` takes a (small) body anonymously. Wrong passwords
   back off per user and per address.
4. Body bytes are counted as they arrive; past the route's limit the request is answered 413
   and the rest is never read.

The user found is left in ``scope["huajing.user"]`` for the routes (jobs belong to their user).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import enum
import json
import logging
import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Iterable, Mapping, MutableMapping
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlsplit

from engine.errors import registered
from locales import error_text, language_of

logger = logging.getLogger(__name__)

# As the ASGI spec (and Starlette's types) have them: servers may pass any mapping.
Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
AsgiApp = Callable[[Scope, Receive, Send], Awaitable[None]]

USER_KEY = "huajing.user"
SAFE_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
API_PREFIXES = ("/sdapi/", "/controlnet/", "/openapi.json", "/docs")
# With accounts, these need a user even to read: Gradio's event streams, heartbeats and files
# (an anonymous stream would hold a connection for ever); the page and its assets do not, so
# the login page can show.
USER_ONLY_PREFIXES = (*API_PREFIXES, "/gradio_api/")
# A signed-in name tried from many addresses is slowed down this much at most, never refused:
# refusing would let anyone lock a real user out.
MAX_USER_DELAY_S = 3.0
LOGIN_PATHS = frozenset({"/login", "/login/"})
LOGOUT_PATHS = frozenset({"/logout", "/logout/"})
DEFAULT_PORTS = {"http": 80, "https": 443, "ws": 80, "wss": 443}
MiB = 1024 * 1024


class GuardCode(enum.StrEnum):
    """Every refusal of the guard; the text is ``errors.guard_<value>`` in each locale."""

    AUTH_REQUIRED = "auth_required"
    BODY_TOO_LARGE = "body_too_large"
    BODY_TOO_SLOW = "body_too_slow"
    HOST_NOT_ALLOWED = "host_not_allowed"
    ORIGIN_NOT_ALLOWED = "origin_not_allowed"
    TOO_MANY_ATTEMPTS = "too_many_attempts"


def normalise_host(value: str) -> str:
    """``Example.COM:7860`` -> ``example.com``; ``[::1]:80`` -> ``::1``; a trailing dot goes."""
    value = value.strip().lower()
    if value.startswith("["):
        return value[1:].split("]", 1)[0]
    if value.count(":") == 1:
        value = value.split(":", 1)[0]
    return value.rstrip(".")


def _port_of(host_header: str, scheme: str) -> int | None:
    """The port a Host header or URL netloc names, else the scheme's default."""
    try:
        port = urlsplit(f"//{host_header}").port
    except ValueError:
        return None
    return port or DEFAULT_PORTS.get(scheme)


class AllowedHosts:
    """The host names this server answers to: its own addresses (loopback, the bound address),
    and names given for it (``--allowed-host``, the share link once known, the Space), which a
    proxy in front may serve on any port."""

    def __init__(self, hosts: Iterable[str], named: Iterable[str] = ()) -> None:
        self._hosts = {normalise_host(host) for host in hosts if host}
        self._named = {normalise_host(host) for host in named if host}
        self._lock = threading.Lock()

    def add(self, host: str) -> None:
        with self._lock:
            self._named.add(normalise_host(host))

    def __contains__(self, host: str) -> bool:
        name = normalise_host(host)
        return name in self._hosts or name in self._named

    def is_named(self, host: str) -> bool:
        return normalise_host(host) in self._named

    def __iter__(self):
        return iter(sorted(self._hosts))


class LoginThrottle:
    """Back-off after wrong passwords, per user and per address: a few free tries, then each
    further try waits twice as long as the last (capped), until a success or the window ends."""

    def __init__(self, free_tries: int = 5, window_s: float = 900.0, max_wait_s: float = 300.0,
                 max_keys: int = 10_000, clock: Callable[[], float] = time.monotonic) -> None:
        self.free_tries = free_tries
        self.window_s = window_s
        self.max_wait_s = max_wait_s
        self.max_keys = max_keys  # bounded: a flood of made-up names cannot grow it forever
        self._clock = clock
        self._failures: OrderedDict[str, tuple[int, float]] = OrderedDict()
        self._lock = threading.Lock()

    def retry_after(self, keys: Iterable[str]) -> float:
        """Seconds to wait before the next try is even checked; 0 when it may go ahead."""
        now = self._clock()
        with self._lock:
            return max((self._wait(now, key) for key in keys), default=0.0)

    def _wait(self, now: float, key: str) -> float:
        count, last = self._failures.get(key, (0, 0.0))
        if count < self.free_tries or now - last > self.window_s:
            return 0.0
        delay = min(self.max_wait_s, 2.0 ** (count - self.free_tries))
        return max(0.0, last + delay - now)

    def failed(self, keys: Iterable[str]) -> None:
        now = self._clock()
        with self._lock:
            for key in keys:
                count, last = self._failures.pop(key, (0, 0.0))
                count = 1 if now - last > self.window_s else count + 1
                self._failures[key] = (count, now)
            while len(self._failures) > self.max_keys:
                self._failures.popitem(last=False)

    def succeeded(self, keys: Iterable[str]) -> None:
        with self._lock:
            for key in keys:
                self._failures.pop(key, None)


@dataclass(frozen=True)
class GuardPolicy:
    allowed_hosts: AllowedHosts
    users: Mapping[str, str] = field(default_factory=dict)  # name -> password; {}: no accounts
    # The user a Gradio login cookie belongs to (from the request's cookies), or None.
    session_user: Callable[[Mapping[str, str]], str | None] = lambda cookies: None
    max_body_bytes: int = 16 * MiB
    large_body_prefixes: tuple[str, ...] = ("/sdapi/", "/controlnet/", "/gradio_api/upload")
    max_large_body_bytes: int = 80 * MiB
    max_login_body_bytes: int = 64 * 1024
    body_idle_timeout_s: float = 30.0  # a body that stops arriving gives its slot back
    throttle: LoginThrottle = field(default_factory=LoginThrottle)

    def body_limit(self, path: str) -> int:
        if path in LOGIN_PATHS:
            return self.max_login_body_bytes
        if path.startswith(self.large_body_prefixes):
            return self.max_large_body_bytes
        return self.max_body_bytes


def _headers(scope: Scope) -> dict[str, str]:
    found: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name, value = raw_name.decode("latin-1").lower(), raw_value.decode("latin-1")
        found[name] = f"{found[name]}; {value}" if name == "cookie" and name in found else value
    return found


def _cookies(header: str) -> dict[str, str]:
    cookies = {}
    for part in header.split(";"):
        name, sep, value = part.strip().partition("=")
        if sep:
            cookies[name] = value
    return cookies


def _client_address(scope: Scope) -> str:
    client = scope.get("client")
    return str(client[0]) if client else "unknown"


def _local_keys(scope: Scope, name: str) -> tuple[str, str]:
    address = _client_address(scope)
    return f"addr:{address}", f"user:{name}@{address}"


async def send_error(send: Send, status: int, code: GuardCode, headers: Mapping[str, str],
                     extra_headers: Iterable[tuple[str, str]] = (), **params: Any) -> None:
    """A short JSON refusal in the client's language; the connection closes after it."""
    code = registered(GuardCode, code)
    language = language_of(headers.get("accept-language"))
    body = json.dumps({"error": code, "detail": error_text(language, f"guard_{code}", params)},
                      ensure_ascii=False).encode("utf-8")
    raw_headers = [(b"content-type", b"application/json; charset=utf-8"),
                   (b"content-length", str(len(body)).encode()), (b"connection", b"close")]
    raw_headers += [(name.encode("latin-1"), value.encode("latin-1"))
                    for name, value in extra_headers]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": body})


class _BodyCounter:
    """Wraps receive/send: counts body bytes, answers 413 once past ``limit`` (408 when the
    body stalls) and from then on hands the app a disconnect and drops what it tries to send.
    Once the body is whole, receive is passed through untimed (a stream waits on it for the
    client to leave)."""

    def __init__(self, receive: Receive, send: Send, limit: int, headers: Mapping[str, str],
                 idle_timeout_s: float) -> None:
        self._receive, self._send, self._limit, self._headers = receive, send, limit, headers
        self._idle_timeout_s = idle_timeout_s
        self.received = 0
        self.refused = False
        self.started = False
        self.body_done = False

    async def receive(self) -> Message:
        if self.refused:
            return {"type": "http.disconnect"}
        if self.body_done:
            return await self._receive()
        try:
            message = await asyncio.wait_for(self._receive(), self._idle_timeout_s)
        except TimeoutError:
            return await self._cut_off(408, GuardCode.BODY_TOO_SLOW,
                                       seconds=int(self._idle_timeout_s))
        if message["type"] == "http.request":
            self.received += len(message.get("body", b""))
            self.body_done = not message.get("more_body", False)
            if self.received > self._limit:
                return await self._cut_off(413, GuardCode.BODY_TOO_LARGE,
                                           limit_mb=max(1, self._limit // MiB))
        return message

    async def _cut_off(self, status: int, code: GuardCode, **params: Any) -> Message:
        self.refused = True
        if not self.started:
            self.started = True
            await send_error(self._send, status, code, self._headers, **params)
        return {"type": "http.disconnect"}

    async def send(self, message: Message) -> None:
        if self.refused:
            return
        if message["type"] == "http.response.start":
            self.started = True
        await self._send(message)


class RequestGuard:
    def __init__(self, app: AsgiApp, policy: GuardPolicy) -> None:
        self.app = app
        self.policy = policy

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)  # lifespan
            return
        headers = _headers(scope)
        refusal = self._refusal(scope, headers)
        if refusal is not None:
            await self._refuse(scope, send, headers, *refusal)
            return
        method = scope.get("method", "GET")
        if method == "POST" and scope["path"] in LOGIN_PATHS and self.policy.users:
            await self._login(scope, receive, send, headers)
            return
        user, failure = await self._user(scope, headers)
        if failure is not None:
            await self._refuse(scope, send, headers, *failure)
            return
        scope[USER_KEY] = user
        if scope["type"] == "websocket":
            await self.app(scope, receive, send)
            return
        await self._with_body_limit(scope, receive, send, headers)

    def _refusal(self, scope: Scope, headers: Mapping[str, str]) -> tuple | None:
        host = headers.get("host", "")
        if host not in self.policy.allowed_hosts:
            logger.warning("refused a request for host %r from %s", host[:100],
                           _client_address(scope))
            name = normalise_host(host)[:100]
            return 403, GuardCode.HOST_NOT_ALLOWED, (), {"host": name,
                                                         "flag": f"--allowed-host {name}"}
        changes_state = scope["type"] == "websocket" or scope.get("method") not in SAFE_METHODS
        if scope["path"] in LOGOUT_PATHS and headers.get("sec-fetch-site") == "cross-site":
            # A link on another site signs no one out.
            return 403, GuardCode.ORIGIN_NOT_ALLOWED, (), {}
        origin = headers.get("origin")
        if changes_state and origin is not None and not self._same_site(origin, host, scope):
            logger.warning("refused a %s from origin %r", scope.get("method", "websocket"),
                           origin[:100])
            return 403, GuardCode.ORIGIN_NOT_ALLOWED, (), {}
        return None

    def _same_site(self, origin: str, host_header: str, scope: Scope) -> bool:
        """The page that sent it is this server's own: the same host and port as the request
        names (another port on localhost is another site), or a name given for a proxy."""
        try:
            parts = urlsplit(origin)
            origin_port = parts.port or DEFAULT_PORTS.get(parts.scheme)
        except ValueError:
            return False
        if not parts.hostname:
            return False
        if self.policy.allowed_hosts.is_named(parts.hostname):
            return True
        same_host = normalise_host(parts.hostname) == normalise_host(host_header)
        return same_host and origin_port == _port_of(host_header, scope.get("scheme", "http"))

    async def _user(self, scope: Scope,
                    headers: Mapping[str, str]) -> tuple[str | None, tuple | None]:
        """(the user, None), or (None, a refusal) when a user is needed and not shown."""
        if not self.policy.users:
            return None, None
        authorization = headers.get("authorization", "")
        if authorization[:6].lower() == "basic ":
            return await self._basic_user(scope, authorization[6:])
        user = self.policy.session_user(_cookies(headers.get("cookie", "")))
        path, method = scope["path"], scope.get("method", "GET")
        needs_user = (scope["type"] == "websocket" or method not in SAFE_METHODS
                      or path.startswith(USER_ONLY_PREFIXES))
        if user is None and needs_user:
            return None, (401, GuardCode.AUTH_REQUIRED,
                          (("www-authenticate", 'Basic realm="huajing"'),), {})
        return user, None

    async def _basic_user(self, scope: Scope,
                          encoded: str) -> tuple[str | None, tuple | None]:
        try:
            name, _, password = base64.b64decode(encoded, validate=True).decode().partition(":")
        except (binascii.Error, UnicodeDecodeError, ValueError):
            name, password = "", ""
        refusal = await self._before_password(scope, name)
        if refusal is not None:
            return None, refusal
        matched = self._password_matches(name, password)
        self._after_password(scope, name, matched)
        if matched:
            return name, None
        return None, (401, GuardCode.AUTH_REQUIRED,
                      (("www-authenticate", 'Basic realm="huajing"'),), {})

    async def _before_password(self, scope: Scope, name: str) -> tuple | None:
        """Back-off: this address (and this name from it) waits after wrong passwords; the
        name alone, tried from everywhere, is only slowed down."""
        throttle = self.policy.throttle
        wait = throttle.retry_after(_local_keys(scope, name))
        if wait > 0:
            return 429, GuardCode.TOO_MANY_ATTEMPTS, (("retry-after", str(int(wait) + 1)),), {
                "seconds": int(wait) + 1}
        user_wait = throttle.retry_after((f"user:{name}",))
        if user_wait > 0:
            await asyncio.sleep(min(user_wait, MAX_USER_DELAY_S))
        return None

    def _after_password(self, scope: Scope, name: str, matched: bool) -> None:
        keys = _local_keys(scope, name)
        if matched:
            self.policy.throttle.succeeded((keys[1], f"user:{name}"))
            return
        self.policy.throttle.failed((*keys, f"user:{name}"))
        logger.warning("wrong password for %r from %s", name[:64], _client_address(scope))

    def _password_matches(self, name: str, password: str) -> bool:
        # Compare against every account, so the time taken does not say which names exist.
        matched = False
        for user, expected in self.policy.users.items():
            same_user = secrets.compare_digest(name.encode(), user.encode())
            same_password = secrets.compare_digest(password.encode(), expected.encode())
            matched |= same_user and same_password
        return matched

    async def _refuse(self, scope: Scope, send: Send, headers: Mapping[str, str], status: int,
                      code: GuardCode, extra_headers: Iterable[tuple[str, str]],
                      params: Mapping[str, Any]) -> None:
        if scope["type"] == "websocket":
            await send({"type": "websocket.close", "code": 1008})
            return
        await send_error(send, status, code, headers, extra_headers, **params)

    async def _with_body_limit(self, scope: Scope, receive: Receive, send: Send,
                               headers: Mapping[str, str]) -> None:
        limit = self.policy.body_limit(scope["path"])
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > limit:
            await send_error(send, 413, GuardCode.BODY_TOO_LARGE, headers,
                             limit_mb=max(1, limit // MiB))
            return
        counter = _BodyCounter(receive, send, limit, headers, self.policy.body_idle_timeout_s)
        try:
            await self.app(scope, counter.receive, counter.send)
        except Exception:
            if not counter.refused:
                raise
            # The app failed on the cut-off body; the client already has its 413.

    async def _login(self, scope: Scope, receive: Receive, send: Send,
                     headers: Mapping[str, str]) -> None:
        """Gradio's login form: read it (small), back off repeated failures, pass it on."""
        limit = self.policy.max_login_body_bytes
        body = b""
        while True:
            try:
                message = await asyncio.wait_for(receive(), self.policy.body_idle_timeout_s)
            except TimeoutError:
                await send_error(send, 408, GuardCode.BODY_TOO_SLOW, headers,
                                 seconds=int(self.policy.body_idle_timeout_s))
                return
            if message["type"] != "http.request":
                return
            body += message.get("body", b"")
            if len(body) > limit:
                await send_error(send, 413, GuardCode.BODY_TOO_LARGE, headers, limit_mb=1)
                return
            if not message.get("more_body"):
                break
        fields = parse_qs(body.decode("utf-8", "replace"))
        name = (fields.get("username") or [""])[0].strip()
        refusal = await self._before_password(scope, name)
        if refusal is not None:
            await self._refuse(scope, send, headers, *refusal)
            return
        replayed, status = [False], [0]

        async def replay() -> Message:
            if replayed[0]:
                return {"type": "http.disconnect"}
            replayed[0] = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def watch(message: Message) -> None:
            if message["type"] == "http.response.start":
                status[0] = message["status"]
            await send(message)

        await self.app(scope, replay, watch)
        self._after_password(scope, name, 200 <= status[0] < 400)
