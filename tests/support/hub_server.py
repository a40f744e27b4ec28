"""A small Hugging Face Hub look-alike for download tests, served from local folders.

``HubServer`` answers the HTTP calls that the real ``huggingface_hub`` client (2.4) makes for
``hf_hub_download``, ``snapshot_download`` and ``HfApi.model_info`` / ``list_repo_tree`` /
``get_paths_info``, so tests can drive the real client against ``server.endpoint`` on
127.0.0.1 without the network:

* ``HEAD|GET /{repo}/resolve/{revision}/{path}``: the file, with the headers the client reads
  (``X-Repo-Commit``, ``ETag``, ``X-Linked-Etag`` / ``X-Linked-Size`` for LFS files,
  ``Content-Length``) and ``Range: bytes=N-`` support (``206`` + ``Content-Range``).
* ``GET /api/models/{repo}`` and ``/api/models/{repo}/revision/{revision}`` (``?blobs=true`` adds
  sizes, blob ids and LFS info to ``siblings``).
* ``GET /api/models/{repo}/tree/{revision}[/{folder}]`` (``?recursive=true``) and
  ``POST /api/models/{repo}/paths-info/{revision}`` (form field ``paths``, repeated).

Xet headers are never sent, so the client always falls back to plain HTTP downloads even with
``hf_xet`` installed. Errors carry the hub's ``X-Error-Code`` header (``RepoNotFound``,
``RevisionNotFound``, ``EntryNotFound``), which is what the client maps to its exception classes.

Faults for robustness tests are set per server (``server.faults``) or per file
(``server.file_faults[key]``), plus forced statuses per repo or file (``server.status_for``).
A source that gives fewer hashes: ``server.unlisted_hashes`` (files listed by ``model_info``
with no blob id or LFS hash) and ``server.no_etag`` (files answered with no ETag headers).
A file key is ``"{repo_id}/{path}"``; a repo key is the repo id.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
from collections import Counter
from collections.abc import Mapping
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler
from pathlib import Path
from typing import NamedTuple
from urllib.parse import parse_qs, unquote, urlsplit

from tests.support.local_server import LocalServer, TrackedServer

logger = logging.getLogger(__name__)

# The hub's default .gitattributes sends these to LFS; everything else is a plain git blob.
DEFAULT_LFS_SUFFIXES = frozenset({
    ".bin", ".safetensors", ".pth", ".pt", ".ckpt", ".onnx", ".msgpack", ".h5", ".pkl", ".npy",
    ".npz", ".gguf", ".tar", ".gz", ".zip",
})
LOGGED_HEADERS = ("range", "authorization", "accept-encoding", "user-agent")
BODY_CHUNK = 64 * 1024
MIN_THROTTLE_CHUNK = 1024
MAX_THROTTLE_CHUNK = 16 * 1024
THROTTLE_CHUNKS_PER_S = 20  # small chunks so a throttled body can be cut anywhere
FIXED_DATE = "2024-01-01T00:00:00.000Z"
REVISION_ROUTES = ("revision", "tree", "paths-info")


class LoggedRequest(NamedTuple):
    """One request as received: method, decoded URL path (no query) and a few headers."""

    method: str
    path: str
    headers: dict[str, str]


@dataclass
class Faults:
    """What to do wrong when serving a file body.

    ``drop_after_bytes``: close the connection after that many body bytes of a response (only
    responses longer than that count), for the first ``drop_times`` such responses (``None``:
    every one). ``ignore_range``: answer ``200`` with the whole file even when a Range was asked.
    ``corrupt``: send other bytes of the same size, with the true headers (a checksum mismatch).
    ``throttle_bytes_per_s``: send the body in small chunks, sleeping between them.
    On ``server.faults`` (every file) the ``drop_times`` budget is shared by all files.
    """

    drop_after_bytes: int | None = None
    drop_times: int | None = 1
    ignore_range: bool = False
    corrupt: bool = False
    throttle_bytes_per_s: int | None = None


@dataclass
class StatusFault:
    """Answer ``status`` instead of the real response, for ``times`` requests (``None``: always).

    ``methods`` limits it to some methods, e.g. ``{"GET"}`` to fail the download but not the HEAD.
    """

    status: int
    times: int | None = None
    methods: frozenset[str] | None = None


@dataclass(frozen=True)
class RepoEntry:
    """One file of a served repo, hashed the way the hub does."""

    path: str
    local: Path
    size: int
    blob_id: str  # git sha1 of the blob (of the LFS pointer for LFS files)
    sha256: str | None  # set for LFS files only
    pointer_size: int | None

    @property
    def etag(self) -> str:
        return self.sha256 or self.blob_id


@dataclass
class RepoIndex:
    """The files of one repo at its single commit."""

    repo_id: str
    commit: str
    files: dict[str, RepoEntry]
    folders: set[str] = field(default_factory=set)


class HubError(Exception):
    """An error answer: status, hub error code and message."""

    def __init__(self, status: int, code: str | None, message: str,
                 commit: str | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.commit = commit


def git_blob_sha1(data: bytes) -> str:
    return hashlib.sha1(b"blob %d\0" % len(data) + data).hexdigest()


def lfs_pointer(sha256: str, size: int) -> bytes:
    return (f"version https://git-lfs.github.com/spec/v1\noid sha256:{sha256}\n"
            f"size {size}\n").encode()


def index_file(path: str, local: Path, lfs_suffixes: frozenset[str]) -> RepoEntry:
    data = local.read_bytes()
    if local.suffix.lower() not in lfs_suffixes:
        return RepoEntry(path, local, len(data), git_blob_sha1(data), None, None)
    sha256 = hashlib.sha256(data).hexdigest()
    pointer = lfs_pointer(sha256, len(data))
    return RepoEntry(path, local, len(data), git_blob_sha1(pointer), sha256, len(pointer))


def index_repo(repo_id: str, folder: Path, lfs_suffixes: frozenset[str],
               commit: str | None = None) -> RepoIndex:
    files = {}
    for local in sorted(p for p in folder.rglob("*") if p.is_file()):
        path = local.relative_to(folder).as_posix()
        files[path] = index_file(path, local, lfs_suffixes)
    folders = {"/".join(p.split("/")[:i]) for p in files for i in range(1, p.count("/") + 1)}
    if commit is None:
        # Derived from the content, so it is stable across runs and changes with the files.
        listing = "\n".join(f"{e.path} {e.etag}" for e in files.values())
        commit = hashlib.sha1(f"{repo_id}\n{listing}".encode()).hexdigest()
    return RepoIndex(repo_id, commit, files, folders)


def tree_entry(index: RepoIndex, path: str) -> dict:
    """The JSON the hub's tree and paths-info endpoints give for one file or folder."""
    entry = index.files.get(path)
    if entry is None:
        oid = hashlib.sha1(f"tree {index.commit} {path}".encode()).hexdigest()
        return {"type": "directory", "oid": oid, "size": 0, "path": path}
    info = {"type": "file", "oid": entry.blob_id, "size": entry.size, "path": path}
    if entry.sha256 is not None:
        info["lfs"] = {"oid": entry.sha256, "size": entry.size, "pointerSize": entry.pointer_size}
    return info


def sibling(entry: RepoEntry, with_blobs: bool) -> dict:
    if not with_blobs:
        return {"rfilename": entry.path}
    info: dict = {"rfilename": entry.path, "size": entry.size, "blobId": entry.blob_id}
    if entry.sha256 is not None:
        info["lfs"] = {"sha256": entry.sha256, "size": entry.size,
                       "pointerSize": entry.pointer_size}
    return info


def model_info_json(index: RepoIndex, with_blobs: bool) -> dict:
    return {
        "_id": index.commit[:24], "id": index.repo_id, "modelId": index.repo_id,
        "sha": index.commit, "private": False, "gated": False, "disabled": False,
        "downloads": 0, "likes": 0, "tags": [], "lastModified": FIXED_DATE,
        "createdAt": FIXED_DATE,
        "siblings": [sibling(e, with_blobs) for e in index.files.values()],
    }


def list_tree(index: RepoIndex, folder: str, recursive: bool) -> list[dict]:
    if folder and folder not in index.folders:
        raise HubError(404, "EntryNotFound", f"{folder} does not exist on {index.commit}",
                       index.commit)
    prefix = f"{folder}/" if folder else ""
    names = sorted(index.folders | set(index.files))
    below = [n for n in names if n.startswith(prefix)]
    if not recursive:
        below = [n for n in below if "/" not in n[len(prefix):]]
    return [tree_entry(index, n) for n in below]


def parse_range(header: str | None, size: int) -> tuple[int, int] | None:
    """``(start, end_inclusive)`` of a single ``bytes=`` range, or None to send the whole file."""
    if not header or not header.startswith("bytes=") or "," in header:
        return None
    first, _, last = header[len("bytes="):].strip().partition("-")
    try:
        if not first:  # suffix range: the last N bytes
            return max(size - int(last), 0), size - 1
        start = int(first)
        end = min(int(last), size - 1) if last else size - 1
    except ValueError:
        return None
    if start >= size or end < start:
        raise HubError(416, None, f"range {header} outside a {size}-byte file")
    return start, end


def split_repo_route(parts: list[str], routes: tuple[str, ...]) -> tuple[str, str, list[str]]:
    """Split ``[org, name, route, *rest]`` (or ``[name, route, *rest]``) into repo, route, rest."""
    for at in (2, 1):
        if len(parts) > at and parts[at] in routes:
            return "/".join(parts[:at]), parts[at], parts[at + 1:]
    return "/".join(parts), "", []


def corrupt(data: bytes) -> bytes:
    return bytes(b ^ 0xFF for b in data)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive like the hub, so dropped connections matter
    server: TrackedServer

    def do_HEAD(self) -> None:
        self._dispatch(send_body=False)

    def do_GET(self) -> None:
        self._dispatch(send_body=True)

    def do_POST(self) -> None:
        self._dispatch(send_body=True)

    def log_message(self, format: str, *args) -> None:  # noqa: A002 - stdlib signature
        logger.debug("%s %s", self.address_string(), format % args)

    def _dispatch(self, send_body: bool) -> None:
        hub = self.server.owner
        url = urlsplit(self.path)
        path = unquote(url.path)
        hub._log(self.command, path, self.headers)
        body = self._read_request_body()
        hub._request_started()
        try:
            self._route(hub, url.path, parse_qs(url.query), body, send_body)
        except HubError as error:
            self._send_error(error, send_body)
        except ConnectionError as error:
            # The client went away (or stop() cut the connection) mid-body (a cancel); nothing more
            # to say to it.
            logger.debug("client left during %s %s: %s", self.command, path, error)
            self.close_connection = True
        finally:
            hub._request_finished()

    def _read_request_body(self) -> bytes:
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _route(self, hub: HubServer, raw_path: str, query: dict, body: bytes,
               send_body: bool) -> None:
        parts = raw_path.strip("/").split("/")
        if parts[:2] == ["api", "models"]:
            self._api(hub, parts[2:], query, body, send_body)
            return
        repo_id, route, rest = split_repo_route(parts, ("resolve",))
        if route != "resolve" or len(rest) < 2:
            raise HubError(404, None, f"no route for {raw_path}")
        revision = unquote(rest[0])
        file_path = unquote("/".join(rest[1:]))
        self._resolve(hub, unquote(repo_id), revision, file_path, send_body)

    def _api(self, hub: HubServer, parts: list[str], query: dict, body: bytes,
             send_body: bool) -> None:
        repo_id, route, rest = split_repo_route(parts, REVISION_ROUTES)
        repo_id = unquote(repo_id)
        hub._check_status(self.command, repo_id, None)
        index = hub._repo(repo_id)
        if not route:
            self._send_json(hub._model_info(index, _flag(query, "blobs")), send_body)
            return
        if not rest:
            raise HubError(404, None, f"{route} needs a revision")
        hub._check_revision(index, unquote(rest[0]))
        if route == "revision":
            self._send_json(hub._model_info(index, _flag(query, "blobs")), send_body)
        elif route == "tree":
            folder = unquote("/".join(rest[1:]))
            self._send_json(list_tree(index, folder, _flag(query, "recursive")), send_body)
        else:
            paths = parse_qs(body.decode()).get("paths", [])
            known = [p for p in paths if p in index.files or p in index.folders]
            self._send_json([tree_entry(index, p) for p in known], send_body)

    def _resolve(self, hub: HubServer, repo_id: str, revision: str, path: str,
                 send_body: bool) -> None:
        hub._check_status(self.command, repo_id, path)
        index = hub._repo(repo_id)
        hub._check_revision(index, revision)
        entry = index.files.get(path)
        if entry is None:
            raise HubError(404, "EntryNotFound", f"{path} does not exist on {index.commit}",
                           index.commit)
        faults = hub.faults_for(repo_id, path)
        wanted = None if faults.ignore_range else parse_range(self.headers.get("Range"),
                                                              entry.size)
        start, end = wanted or (0, entry.size - 1)
        self.send_response(206 if wanted else 200)
        self._send_file_headers(index, entry, start, end, partial=wanted is not None)
        if send_body and entry.size:
            self._send_file_body(hub, f"{repo_id}/{path}", entry, start, end, faults)

    def _send_file_headers(self, index: RepoIndex, entry: RepoEntry, start: int, end: int,
                           partial: bool) -> None:
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(end - start + 1))
        self.send_header("Accept-Ranges", "bytes")
        self.send_header("X-Repo-Commit", index.commit)
        tagged = f"{index.repo_id}/{entry.path}" not in self.server.owner.no_etag
        if tagged:
            self.send_header("ETag", f'"{entry.etag}"')
        if entry.sha256 is not None:
            # What the hub puts on LFS answers; the client prefers these over ETag/Content-Length.
            if tagged:
                self.send_header("X-Linked-Etag", f'"{entry.sha256}"')
            self.send_header("X-Linked-Size", str(entry.size))
        if partial:
            self.send_header("Content-Range", f"bytes {start}-{end}/{entry.size}")
        self.end_headers()

    def _send_file_body(self, hub: HubServer, key: str, entry: RepoEntry, start: int, end: int,
                        faults: Faults) -> None:
        length = end - start + 1
        limit = hub._take_drop(faults, length)
        chunk = _chunk_size(faults.throttle_bytes_per_s)
        sent = 0
        with entry.local.open("rb") as source:
            source.seek(start)
            while sent < min(length, limit) and not hub.stopping.is_set():
                data = source.read(min(chunk, length - sent, limit - sent))
                self.wfile.write(corrupt(data) if faults.corrupt else data)
                self.wfile.flush()
                sent += len(data)
                hub._count(key, len(data))
                if faults.throttle_bytes_per_s:
                    hub.stopping.wait(len(data) / faults.throttle_bytes_per_s)
        if sent < length:
            logger.info("cut %s after %d of %d body bytes", key, sent, length)
            self.close_connection = True

    def _send_json(self, payload, send_body: bool) -> None:
        data = json.dumps(payload).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        if send_body:
            self.wfile.write(data)

    def _send_error(self, error: HubError, send_body: bool) -> None:
        data = json.dumps({"error": error.message}).encode()
        self.send_response(error.status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        if error.code:
            self.send_header("X-Error-Code", error.code)
        self.send_header("X-Error-Message", error.message)
        if error.commit:
            # The hub names the commit even on a missing file; the client caches the absence.
            self.send_header("X-Repo-Commit", error.commit)
        self.end_headers()
        if send_body:
            self.wfile.write(data)


def _flag(query: dict, name: str) -> bool:
    return any(v.lower() in ("1", "true") for v in query.get(name, []))


def _chunk_size(throttle_bytes_per_s: int | None) -> int:
    if not throttle_bytes_per_s:
        return BODY_CHUNK
    per_tick = throttle_bytes_per_s // THROTTLE_CHUNKS_PER_S
    return max(MIN_THROTTLE_CHUNK, min(MAX_THROTTLE_CHUNK, per_tick))


def _forced_error(status: int, key: str, is_file: bool) -> HubError:
    if status == 404:
        code = "EntryNotFound" if is_file else "RepoNotFound"
        return HubError(404, code, f"{key} not found (forced)")
    if status == 401:
        # The hub's words for a bad token: the client then raises a plain HfHubHTTPError(401)
        # instead of folding the 401 into RepositoryNotFoundError.
        return HubError(401, None, "Invalid credentials in Authorization header")
    return HubError(status, None, f"{HTTPStatus(status).phrase} (forced for {key})")


class HubServer(LocalServer):
    """Serves ``repos`` (repo id -> folder) on 127.0.0.1 like the Hugging Face Hub does.

    Every repo has one commit (a 40-hex id derived from its content, or ``commits[repo]``),
    reachable as ``main`` or by its id. Files with an ``lfs_suffixes`` suffix are LFS files
    (ETag = SHA-256), others plain git blobs (ETag = git blob sha1). The folders are indexed
    once, in the constructor.
    """

    handler = _Handler
    thread_name = "hub-server"

    def __init__(self, repos: Mapping[str, Path | str], *, host: str = "127.0.0.1",
                 port: int = 0, commits: Mapping[str, str] | None = None,
                 lfs_suffixes: frozenset[str] = DEFAULT_LFS_SUFFIXES) -> None:
        super().__init__(host, port)
        commits = commits or {}
        self.repos = {repo: index_repo(repo, Path(folder), lfs_suffixes, commits.get(repo))
                      for repo, folder in repos.items()}
        self.faults = Faults()
        self.file_faults: dict[str, Faults] = {}
        self.status_for: dict[str, StatusFault | int] = {}
        self.unlisted_hashes: set[str] = set()
        self.no_etag: set[str] = set()
        self.requests_log: list[LoggedRequest] = []
        self.bytes_served: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._progress = threading.Condition(self._lock)
        self._in_flight = 0

    # -- for tests --------------------------------------------------------------------------

    def commit_for(self, repo_id: str) -> str:
        return self.repos[repo_id].commit

    def entry(self, repo_id: str, path: str) -> RepoEntry:
        return self.repos[repo_id].files[path]

    def faults_for(self, repo_id: str, path: str) -> Faults:
        return self.file_faults.get(f"{repo_id}/{path}", self.faults)

    def requests_to(self, fragment: str, method: str | None = None) -> list[LoggedRequest]:
        """Logged requests whose path contains ``fragment`` (and of ``method``, if given)."""
        with self._lock:
            log = list(self.requests_log)
        return [r for r in log if fragment in r.path and method in (None, r.method)]

    def wait_for_bytes(self, key: str, at_least: int, timeout: float = 10.0) -> bool:
        """Wait until ``at_least`` body bytes of file ``key`` went out (e.g. to cancel mid-file)."""
        with self._progress:
            return self._progress.wait_for(lambda: self.bytes_served[key] >= at_least, timeout)

    def wait_idle(self, timeout: float = 10.0) -> bool:
        """Wait until no request is being answered (its counters are then final)."""
        with self._progress:
            return self._progress.wait_for(lambda: self._in_flight == 0, timeout)

    # -- used by the handler ----------------------------------------------------------------

    def _model_info(self, index: RepoIndex, with_blobs: bool) -> dict:
        info = model_info_json(index, with_blobs)
        for sibling_info in info["siblings"]:
            if f"{index.repo_id}/{sibling_info['rfilename']}" in self.unlisted_hashes:
                sibling_info.pop("blobId", None)
                sibling_info.pop("lfs", None)
        return info

    def _log(self, method: str, path: str, headers) -> None:
        subset = {name: headers[name] for name in LOGGED_HEADERS if name in headers}
        with self._lock:
            self.requests_log.append(LoggedRequest(method, path, subset))

    def _request_started(self) -> None:
        with self._progress:
            self._in_flight += 1

    def _request_finished(self) -> None:
        with self._progress:
            self._in_flight -= 1
            self._progress.notify_all()

    def _count(self, key: str, n: int) -> None:
        with self._progress:
            self.bytes_served[key] += n
            self._progress.notify_all()

    def _repo(self, repo_id: str) -> RepoIndex:
        index = self.repos.get(repo_id)
        if index is None:
            raise HubError(404, "RepoNotFound", f"Repository {repo_id} not found")
        return index

    def _check_revision(self, index: RepoIndex, revision: str) -> None:
        if revision not in ("main", index.commit):
            raise HubError(404, "RevisionNotFound", f"Invalid rev id: {revision}")

    def _check_status(self, method: str, repo_id: str, path: str | None) -> None:
        keys = ([f"{repo_id}/{path}"] if path is not None else []) + [repo_id]
        with self._lock:
            for key in keys:
                status = self._take_status(key, method)
                if status is not None:
                    raise _forced_error(status, key, is_file=key != repo_id)

    def _take_status(self, key: str, method: str) -> int | None:
        rule = self.status_for.get(key)
        if isinstance(rule, int):
            return rule
        if rule is None or (rule.methods is not None and method not in rule.methods):
            return None
        if rule.times is not None:
            if rule.times <= 0:
                return None
            rule.times -= 1
        return rule.status

    def _take_drop(self, faults: Faults, length: int) -> int:
        """How many body bytes this response may send before the connection is cut."""
        with self._lock:
            limit = faults.drop_after_bytes
            if limit is None or limit >= length:
                return length
            if faults.drop_times is not None:
                if faults.drop_times <= 0:
                    return length
                faults.drop_times -= 1
            return limit
