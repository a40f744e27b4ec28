"""What the fake download servers (``hub_server``, ``modelscope_server``) share: a threaded HTTP
server on 127.0.0.1 that starts and stops on demand, and whose stop also cuts the connections
still open (idle keep-alives, slow or held bodies), so a stopped server refuses at once.
"""

from __future__ import annotations

import logging
import socket
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

logger = logging.getLogger(__name__)

SHUTDOWN_POLL_S = 0.05  # serve_forever's default 0.5 s makes every stop() that slow


class TrackedServer(ThreadingHTTPServer):
    """Keeps its open connections so ``stop`` can cut them. ``owner`` is the fake server the
    handlers answer for (``self.server.owner``)."""

    daemon_threads = True

    def __init__(self, address, handler, owner) -> None:
        self.owner = owner
        self.connections: set[socket.socket] = set()
        self.connections_lock = threading.Lock()
        super().__init__(address, handler)

    def process_request(self, request, client_address) -> None:
        with self.connections_lock:
            self.connections.add(request)
        super().process_request(request, client_address)

    def shutdown_request(self, request) -> None:
        with self.connections_lock:
            self.connections.discard(request)
        super().shutdown_request(request)

    def cut_connections(self) -> None:
        with self.connections_lock:
            connections = list(self.connections)
        for sock in connections:
            try:
                sock.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass  # already closed by the client


class LocalServer:
    """Start/stop (or ``with``) a fake server whose ``handler`` answers the requests.

    ``stopping`` is set while it stops, so throttled or held bodies end at once; ``endpoint``
    stays what it was after ``stop`` (connections to it are then refused).
    """

    handler: type[BaseHTTPRequestHandler]
    thread_name = "local-server"

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.stopping = threading.Event()
        self._address = (host, port)
        self._endpoint: str | None = None
        self._httpd: TrackedServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def endpoint(self) -> str:
        if self._endpoint is None:
            raise RuntimeError(f"{type(self).__name__} was never started")
        return self._endpoint

    def start(self):
        if self._httpd is not None:
            return self
        self.stopping.clear()
        self._httpd = TrackedServer(self._address, self.handler, self)
        host, port = self._httpd.server_address[:2]
        self._endpoint = f"http://{host}:{port}"
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        args=(SHUTDOWN_POLL_S,), name=self.thread_name,
                                        daemon=True)
        self._thread.start()
        logger.info("%s on %s", type(self).__name__, self._endpoint)
        return self

    def stop(self) -> None:
        if self._httpd is None:
            return
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.cut_connections()
        self._httpd.server_close()
        if self._thread is not None:
            self._thread.join()
        self._httpd = self._thread = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()
