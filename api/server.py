"""The HTTP server: uvicorn, configured by us rather than by Gradio's ``launch``, so that the
limits a shared server needs are ours to set:

- a header read timeout: a connection that has not sent a whole request line and headers in
  ``header_timeout_s`` is closed (thousands of half-open sockets cannot pile up);
- a connection cap below the process's file-descriptor limit: past it, new connections are
  closed at once instead of the accept loop failing for want of descriptors;
- log lines that a flood repeats (accept errors, malformed requests) are written once per
  interval with a count, not once per event.
"""

from __future__ import annotations

import asyncio
import logging
import resource
import socket
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any

import h11
import uvicorn
from uvicorn.protocols.http.h11_impl import H11Protocol

from api.guard import AllowedHosts

logger = logging.getLogger(__name__)

HEADER_TIMEOUT_S = 10.0
LOG_INTERVAL_S = 30.0
WILDCARD_HOSTS = ("0.0.0.0", "::", "")


def connection_cap(reserve: int = 256, ceiling: int = 1024) -> int:
    """Connections we accept at once: the descriptor limit less a reserve for model files,
    logs and the queue's own work."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY:
        return ceiling
    return max(8, min(ceiling, soft - reserve if soft > 2 * reserve else soft // 2))


class RepeatFilter(logging.Filter):
    """Lets the first record of a kind through, then one per ``interval_s`` saying how many
    were held back; a kind is the logger and the first line of the message."""

    def __init__(self, interval_s: float = LOG_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        super().__init__()
        self.interval_s = interval_s
        self._clock = clock
        self._seen: dict[tuple[str, str], tuple[float, int]] = {}
        self._lock = threading.Lock()

    def filter(self, record: logging.LogRecord) -> bool:
        # The template, not the formatted text: a flood of forged hosts is one kind.
        key = (record.name, str(record.msg).split("\n", 1)[0][:200])
        now = self._clock()
        with self._lock:
            last, held = self._seen.get(key, (float("-inf"), 0))
            if now - last < self.interval_s:
                self._seen[key] = (last, held + 1)
                return False
            if len(self._seen) > 1000:
                self._seen.clear()
            self._seen[key] = (now, 0)
        if held:
            record.msg = f"{record.msg} ({held} more like this in the last {self.interval_s:.0f}s)"
        record.exc_info = record.exc_info if not held else None
        return True


# asyncio: accept errors when descriptors run out; uvicorn.error: malformed requests;
# engine.store.catalog: a skipped user model, found again on every lookup of a model name.
# api.guard: each refused request (forged hosts, foreign origins, wrong passwords).
REPEATING_LOGGERS = ("asyncio", "uvicorn.error", "engine.store.catalog", "api.guard")


def install_repeat_filter(names: Iterable[str] = REPEATING_LOGGERS) -> RepeatFilter:
    repeat = RepeatFilter()
    for name in names:
        logging.getLogger(name).addFilter(repeat)
    return repeat


def _client_address(protocol: object) -> str | None:
    """A connection's client address; not every protocol type uvicorn tracks names one."""
    client = getattr(protocol, "client", None)
    return client[0] if client else None


def guarded_protocol(header_timeout_s: float, max_connections: int,
                     max_per_address: int | None = None) -> type[H11Protocol]:
    """uvicorn's h11 protocol with a header read timeout, a connection cap, and a cap per
    client address (so one client holding streams open cannot take every place)."""
    per_address = max_per_address or max(4, max_connections // 4)

    class GuardedH11Protocol(H11Protocol):
        _header_deadline: asyncio.TimerHandle | None = None

        def connection_made(self, transport: Any) -> None:
            super().connection_made(transport)
            self._header_deadline = None
            address = self.client[0] if self.client else None
            from_there = sum(1 for other in self.connections
                             if address is not None and _client_address(other) == address)
            if len(self.connections) > max_connections or from_there > per_address:
                logger.warning("connection limit reached (%d in all, %d per address); "
                               "closing new connections", max_connections, per_address)
                transport.close()
                return
            self._arm_header_timer()

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            if self.conn.their_state is h11.IDLE:
                self._arm_header_timer()  # a request has begun (or will): its headers are due
            else:
                self._disarm_header_timer()

        def connection_lost(self, exc: Exception | None) -> None:
            self._disarm_header_timer()
            super().connection_lost(exc)

        def _arm_header_timer(self) -> None:
            if self._header_deadline is None:
                self._header_deadline = self.loop.call_later(header_timeout_s,
                                                             self._headers_too_slow)

        def _disarm_header_timer(self) -> None:
            if self._header_deadline is not None:
                self._header_deadline.cancel()
                self._header_deadline = None

        def _headers_too_slow(self) -> None:
            self._header_deadline = None
            if self.conn.their_state is h11.IDLE:  # still no whole request line and headers
                self.transport.close()

    return GuardedH11Protocol


def allowed_hosts_for(bound_host: str, extra: Iterable[str] = (),
                      environ: dict[str, str] | None = None) -> AllowedHosts:
    """The names this server answers to: the address it is bound to, loopback names, the
    ``--allowed-host`` names, the Space's own host; bound to every interface, each interface's
    address and the machine's name too."""
    hosts = {bound_host, "localhost", "127.0.0.1", "::1"}
    named = {*extra, (environ or {}).get("SPACE_HOST", "")}
    if bound_host in WILDCARD_HOSTS:
        hosts |= _interface_addresses()
        hosts.add(socket.gethostname())
    return AllowedHosts(hosts, named)


def _interface_addresses() -> set[str]:
    import psutil

    return {address.address.split("%", 1)[0]
            for addresses in psutil.net_if_addrs().values() for address in addresses
            if address.family in (socket.AF_INET, socket.AF_INET6)}


class Server(uvicorn.Server):
    """uvicorn's server run in a thread of ours (the main thread keeps Ctrl-C)."""

    def install_signal_handlers(self) -> None:
        pass

    def start_in_thread(self, timeout_s: float = 30.0) -> threading.Thread:
        thread = threading.Thread(target=self.run, name="http-server", daemon=True)
        thread.start()
        deadline = time.monotonic() + timeout_s
        while not self.started:
            if not thread.is_alive() or time.monotonic() > deadline:
                raise OSError(f"the server could not start on port {self.config.port}")
            time.sleep(0.01)
        return thread


def build_server(app: Any, host: str, port: int, header_timeout_s: float = HEADER_TIMEOUT_S,
                 max_connections: int | None = None,
                 max_per_address: int | None = None) -> Server:
    config = uvicorn.Config(
        app, host=host.strip("[]"), port=port, log_level="warning", lifespan="on",
        http=guarded_protocol(header_timeout_s, max_connections or connection_cap(),
                              max_per_address),
        timeout_keep_alive=5, server_header=False)
    return Server(config)
