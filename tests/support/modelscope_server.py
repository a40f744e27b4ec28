"""A small ModelScope Hub look-alike for download tests, served from local folders.

``ModelScopeServer`` answers the HTTP calls that the real ``modelscope_hub`` SDK (0.5.1) makes
for ``HubApi.list_repo_files`` and ``HubApi.download_repo(file_list=...)``, so tests can drive
the real SDK against ``server.endpoint`` on 127.0.0.1 without the network:

* ``GET /api/v1/models/{owner}/{name}/repo/files?Revision=master&Recursive=True[&Root=dir]``:
  ``{"Code": 200, "Success": true, "Data": {"Files": [entry, ...]}}`` with one entry per file
  and folder: ``Path``, ``Name``, ``Type`` (``blob`` / ``tree``), ``Size``, ``Sha256``, ``Id``
  (git blob id), ``Revision`` (the commit), ``IsLFS``, ``Mode``, ``CommittedDate``.
* ``GET|HEAD /api/v1/models/{owner}/{name}/repo?Revision=master&FilePath={path}``: the file's
  bytes; ``Range: bytes=N-`` (or ``N-M``) is answered with ``206`` and ``Content-Range``.
* ``GET /api/v1/repos/internalAccelerationInfo``: the SDK's intra-cloud probe before each
  download; answered without an ``InternalRegionQueryAddress``, so the SDK asks nothing more.

Errors are an HTTP status with ``{"Code", "Message", "RequestId", "Success": false}``; the SDK
maps the status to its exceptions (401 AuthenticationError, 403 PermissionDeniedError,
404 NotExistError, 5xx ServerError). Faults for tests: ``status_for[key] = status`` (forced,
always; a repo key is ``"owner/name"``, a file key ``"owner/name/path"``), ``corrupt`` (file
keys served with other bytes of the same size), ``drop_after[file key] = n`` (the next answer
for that file is cut after n body bytes, once) and ``hold_after[file key] = n`` (the next answer
stalls after n body bytes until ``stop()``, once: a download caught mid-file).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.local_server import LocalServer, TrackedServer

logger = logging.getLogger(__name__)

API = "/api/v1/"
ACCELERATION_PROBE = "/api/v1/repos/internalAccelerationInfo"
LFS_SUFFIXES = (".bin", ".safetensors", ".pt", ".pth", ".ckpt", ".onnx", ".msgpack")
BODY_CHUNK = 64 * 1024
COMMITTED_AT = 1704067200  # 2024-01-01, fixed so listings are identical across runs
HOLD_LIMIT_S = 30  # a held body waits for stop() at most this long
LOGGED_HEADERS = ("range", "authorization", "cookie", "user-agent")


class LoggedRequest(NamedTuple):
    """One request as received: method, decoded path, query (first values), a few headers."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]


@dataclass(frozen=True)
class RepoFile:
    path: str
    local: Path
    size: int
    sha256: str
    blob_id: str


class ServerError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def index_repo(folder: Path) -> tuple[str, dict[str, RepoFile]]:
    """The repo's files, hashed, and a commit id derived from them (stable across runs)."""
    files = {}
    for local in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = local.read_bytes()
        path = local.relative_to(folder).as_posix()
        blob = hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()
        files[path] = RepoFile(path, local, len(data), hashlib.sha256(data).hexdigest(), blob)
    commit = hashlib.sha1("".join(f"{f.path} {f.sha256}\n" for f in files.values()).encode())
    return commit.hexdigest(), files


def listing(commit: str, files: dict[str, RepoFile], root: str, recursive: bool) -> list[dict]:
    """The entries of ``repo/files``: files and folders under ``root``, like the hub gives."""
    folders = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
    prefix = f"{root.strip('/')}/" if root.strip("/") else ""
    entries = []
    for path in sorted(folders | set(files)):
        rest = path[len(prefix):]
        if not path.startswith(prefix) or (not recursive and "/" in rest):
            continue
        entry = files.get(path)
        common = {"Path": path, "Name": path.rsplit("/", 1)[-1], "Revision": commit,
                  "CommittedDate": COMMITTED_AT}
        if entry is None:
            entries.append({**common, "Type": "tree", "Size": 0, "Mode": "040000",
                            "Id": hashlib.sha1(path.encode()).hexdigest()})
        else:
            entries.append({**common, "Type": "blob", "Size": entry.size, "Sha256": entry.sha256,
                            "Id": entry.blob_id, "Mode": "100644",
                            "IsLFS": path.endswith(LFS_SUFFIXES)})
    return entries


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_inclusive)`` of a ``bytes=N-[M]`` range, or None for the whole file."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes="):].partition("-")
    if not first.strip().isdigit():
        return None
    start, end = int(first), min(int(last), size - 1) if last.strip() else size - 1
    if start >= size or end < start:
        raise ServerError(416, f"range {header} outside a {size}-byte file")
    return start, end


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive like the real hub
    server: TrackedServer

    def do_GET(self) -> None:
        self._dispatch(send_body=True)

    def do_HEAD(self) -> None:
        self._dispatch(send_body=False)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, send_body: bool) -> None:
        url = urlsplit(self.path)
        path = unquote(url.path)
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        self.server.owner._log(LoggedRequest(self.command, path, query, {
            name: self.headers[name] for name in LOGGED_HEADERS if name in self.headers}))
        try:
            self._route(path, query, send_body)
        except ServerError as error:
            self._send_json({"Code": error.status, "Message": error.message, "Success": False,
                             "RequestId": "fake"}, send_body, error.status)
        except ConnectionError as error:  # the client left mid-body (a cancel) or stop() cut it
            logger.debug("client left during %s %s: %s", self.command, path, error)
            self.close_connection = True

    def _route(self, path: str, query: dict[str, str], send_body: bool) -> None:
        owner = self.server.owner
        if path == ACCELERATION_PROBE:
            self._send_json({"Code": 200, "Success": True, "Data": {}}, send_body)
            return
        parts = path[len(API):].strip("/").split("/") if path.startswith(API) else []
        if len(parts) < 4 or parts[0] != "models" or parts[3] != "repo":
            raise ServerError(404, f"no route for {path}")
        repo_id = "/".join(parts[1:3])
        commit, files = owner._repo(repo_id, query.get("Revision", "master"))
        if parts[4:] == ["files"]:
            recursive = query.get("Recursive", "false").lower() == "true"
            self._send_json({"Code": 200, "Success": True, "Message": "success", "Data": {
                "Files": listing(commit, files, query.get("Root", ""), recursive)}}, send_body)
        elif len(parts) == 4 and "FilePath" in query:
            entry = files.get(query["FilePath"])
            owner._check_status(repo_id, query["FilePath"])
            if entry is None:
                raise ServerError(404, f"file {query['FilePath']} not in {repo_id}")
            self._send_file(repo_id, entry, send_body)
        else:
            raise ServerError(404, f"no route for {path}")

    def _send_file(self, repo_id: str, entry: RepoFile, send_body: bool) -> None:
        owner = self.server.owner
        key = f"{repo_id}/{entry.path}"
        span = parse_range(self.headers.get("Range"), entry.size)
        start, end = span or (0, entry.size - 1)
        self.send_response(206 if span else 200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        if span:
            self.send_header("Content-Range", f"bytes {start}-{end}/{entry.size}")
        self.end_headers()
        if not send_body:
            return
        drop, hold = owner._take(owner.drop_after, key), owner._take(owner.hold_after, key)
        sent = 0
        with entry.local.open("rb") as source:
            source.seek(start)
            while start + sent <= end and sent != drop:
                if sent == hold:  # until stop(): the test cancels meanwhile, the client leaves
                    owner.stopping.wait(HOLD_LIMIT_S)
                stops = [n - sent for n in (drop, hold) if n is not None and n > sent]
                data = source.read(min([BODY_CHUNK, end + 1 - start - sent, *stops]))
                self.wfile.write(bytes(b ^ 0xFF for b in data) if key in owner.corrupt else data)
                self.wfile.flush()
                sent += len(data)
        if start + sent <= end:
            logger.info("cut %s after %d body bytes", key, sent)
            self.close_connection = True

    def _send_json(self, payload, send_body: bool, status: int = 200) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if send_body:
            self.wfile.write(data)


class ModelScopeServer(LocalServer):
    """Serves ``repos`` (``"owner/name"`` -> folder) on 127.0.0.1 like the ModelScope hub.

    Every repo has one commit, derived from its content, reachable as ``master`` or by its id.
    """

    handler = _Handler
    thread_name = "modelscope-server"

    def __init__(self, repos: Mapping[str, Path | str], *, host: str = "127.0.0.1") -> None:
        super().__init__(host)
        self.repos = {repo: index_repo(Path(folder)) for repo, folder in repos.items()}
        self.status_for: dict[str, int] = {}
        self.corrupt: set[str] = set()
        self.drop_after: dict[str, int] = {}
        self.hold_after: dict[str, int] = {}
        self.requests_log: list[LoggedRequest] = []
        self._lock = threading.Lock()

    def requests_to(self, path: str, method: str | None = None) -> list[LoggedRequest]:
        """Logged requests for exactly ``path`` (and of ``method``, if given)."""
        with self._lock:
            return [r for r in self.requests_log if r.path == path and method in (None, r.method)]

    def _log(self, request: LoggedRequest) -> None:
        with self._lock:
            self.requests_log.append(request)

    def _repo(self, repo_id: str, revision: str) -> tuple[str, dict[str, RepoFile]]:
        self._check_status(repo_id)  # a forced status wins, also for a repo not served
        if repo_id not in self.repos:
            raise ServerError(404, f"model {repo_id} does not exist")
        commit, files = self.repos[repo_id]
        if revision not in ("master", commit):
            raise ServerError(404, f"revision {revision} not found in {repo_id}")
        return commit, files

    def _check_status(self, repo_id: str, path: str | None = None) -> None:
        key = repo_id if path is None else f"{repo_id}/{path}"
        status = self.status_for.get(key)
        if status is not None:
            raise ServerError(status, f"{HTTPStatus(status).phrase} (forced for {key})")

    def _take(self, faults: dict[str, int], key: str) -> int | None:
        with self._lock:
            return faults.pop(key, None)
