"""Where models come from (下载源) and how a download of one model is planned (the plan's
types and the hash checks are in ``engine.store.files``).

Every call names its endpoint explicitly (``endpoint=``), so the user's choice in 设置 or on the
command line is honoured per call rather than through an import-time environment variable.
"""

from __future__ import annotations

import fnmatch
import hashlib
import ipaddress
import logging
import socket
from collections.abc import Mapping
from dataclasses import dataclass, replace
from urllib.parse import urlsplit

from engine.errors import EngineError, InvalidRequest, ModelError, ResourceError
from engine.store.files import DownloadPlan, RemoteFile

logger = logging.getLogger(__name__)

HUGGINGFACE = "huggingface"
HF_MIRROR = "hf-mirror"
CUSTOM = "custom"
MODELSCOPE = "modelscope"  # a different API (its own SDK), for the models it hosts
SOURCE_KINDS = (HUGGINGFACE, HF_MIRROR, MODELSCOPE, CUSTOM)
# modelscope_hub.constants.DEFAULT_ENDPOINT, written out so settings need not import the SDK.
MODELSCOPE_ENDPOINT = "https://modelscope.cn"
_ENDPOINTS = {HUGGINGFACE: "https://huggingface.co", HF_MIRROR: "https://hf-mirror.com",
              MODELSCOPE: MODELSCOPE_ENDPOINT}


@dataclass(frozen=True)
class DownloadSource:
    kind: str = HUGGINGFACE
    custom_endpoint: str | None = None

    @property
    def endpoint(self) -> str:
        if self.kind == CUSTOM or (self.kind == MODELSCOPE and self.custom_endpoint):
            return (self.custom_endpoint or "").rstrip("/")
        return _ENDPOINTS[self.kind]

    @property
    def is_modelscope(self) -> bool:
        return self.kind == MODELSCOPE

    @classmethod
    def from_choice(cls, kind: str | None, custom_endpoint: str | None = None,
                    environ: Mapping[str, str] | None = None,
                    allow_private: bool = False) -> DownloadSource:
        """A flag or setting wins; else HF_ENDPOINT from the environment; else the hub.
        ``custom_endpoint`` is the custom source's address, or another ModelScope address;
        one on a loopback, link-local or private network is refused unless ``allow_private``
        (HF_ENDPOINT is the operator's own setting and is taken as it is)."""
        environ = environ or {}
        trusted = allow_private
        if not kind:
            endpoint = (environ.get("HF_ENDPOINT") or "").rstrip("/")
            if not endpoint or endpoint == _ENDPOINTS[HUGGINGFACE]:
                return cls(HUGGINGFACE)
            if endpoint == _ENDPOINTS[HF_MIRROR]:
                return cls(HF_MIRROR)
            kind, custom_endpoint, trusted = CUSTOM, endpoint, True
        if kind not in SOURCE_KINDS:
            raise InvalidRequest("unknown_source", name=kind, known=", ".join(SOURCE_KINDS))
        uses_address = kind == CUSTOM or (kind == MODELSCOPE and bool(custom_endpoint))
        if uses_address and not (custom_endpoint or "").startswith(("http://", "https://")):
            raise InvalidRequest("invalid_endpoint", value=str(custom_endpoint))
        if uses_address and not trusted:
            check_public_endpoint(str(custom_endpoint))
        return cls(kind, custom_endpoint if uses_address else None)


def check_public_endpoint(endpoint: str) -> None:
    """Refuse an address that reaches this machine or its networks (SSRF: a user's custom
    source must not make the server fetch from 127.0.0.1, the cloud metadata service or the
    LAN). Every address the host name resolves to is checked, IPv6 included; spellings such
    as ``127.1`` or ``0x7f000001`` resolve to what they mean. The check is at choice time and
    again whenever the choice is used for a download."""
    try:
        host = urlsplit(endpoint).hostname
    except ValueError:
        host = None
    if not host:
        raise InvalidRequest("invalid_endpoint", value=endpoint)
    try:
        found = socket.getaddrinfo(host, None, proto=socket.IPPROTO_TCP)
    except (OSError, UnicodeError):
        raise InvalidRequest("endpoint_unresolved", host=host) from None
    # An address family's sockaddr starts with the host text (TCP asks only for IPv4 and IPv6).
    if not found or not all(_is_public(str(info[4][0])) for info in found):
        raise InvalidRequest("private_endpoint", host=host)


def _is_public(address_text: str) -> bool:
    try:
        address = ipaddress.ip_address(address_text.split("%", 1)[0])  # drop an IPv6 zone
    except ValueError:
        return False
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped:
        address = address.ipv4_mapped
    return address.is_global and not address.is_multicast


def content_commit(files: tuple[RemoteFile, ...]) -> str:
    """A stable snapshot name for files that come without a commit id (a local folder, a
    ModelScope listing): the same content always files into the same folder."""
    return hashlib.sha1("".join(f"{f.path}:{f.sha256};" for f in files).encode()).hexdigest()


def pinned(plan: DownloadPlan, known: Mapping[str, str]) -> DownloadPlan:
    """``plan`` with the manifest's known SHA-256 in place of what the source reported."""
    if not known:
        return plan
    files = tuple(replace(f, sha256=known[f.path], git_sha1=None) if f.path in known else f
                  for f in plan.files)
    return replace(plan, files=files)


def matches(path: str, patterns: list[str]) -> bool:
    return any(fnmatch.fnmatch(path, pattern) for pattern in patterns)


def fetch_plan(repo: str, patterns: list[str], source: DownloadSource, cache_dir,
               token: str | bool | None = None) -> DownloadPlan:
    """The files of ``repo`` the app needs, with their sizes and hashes, from ``source``."""
    from huggingface_hub import HfApi

    try:
        info = HfApi(endpoint=source.endpoint, token=token).model_info(
            repo, files_metadata=True)
    except Exception as error:  # noqa: BLE001 - every client error becomes one clear code
        raise download_error(error, repo) from None
    files = []
    for sibling in info.siblings or []:
        if not matches(sibling.rfilename, patterns):
            continue
        lfs = sibling.lfs
        files.append(RemoteFile(
            sibling.rfilename, int(lfs.size if lfs else sibling.size or 0),
            lfs.sha256 if lfs else None, None if lfs else sibling.blob_id))
    if not files:
        raise ModelError("download_no_files", repo=repo)
    if info.sha is None:
        # The hub always names the commit; an answer without one cannot be pinned or filed.
        # The code is the one this case reported before it was checked here.
        raise ModelError("download_network_error", repo=repo)
    return DownloadPlan(repo, info.sha, tuple(files), source.endpoint)


def download_error(error: BaseException, repo: str) -> EngineError:
    """One stable code per kind of failure the hub client reports."""
    from huggingface_hub import errors

    if isinstance(error, EngineError):
        return error
    if isinstance(error, errors.LocalEntryNotFoundError) and error.__cause__ is not None:
        # The client wraps what the server said (a 500 after its retries, offline mode).
        return download_error(error.__cause__, repo)
    if isinstance(error, errors.OfflineModeIsEnabled):
        return ModelError("download_offline", repo=repo)
    if isinstance(error, errors.GatedRepoError):
        return ModelError("download_unauthorized", repo=repo)
    if isinstance(error, errors.RepositoryNotFoundError):
        status = getattr(getattr(error, "response", None), "status_code", 404)
        code = "download_unauthorized" if status == 401 else "download_repo_not_found"
        return ModelError(code, repo=repo)
    if isinstance(error, errors.EntryNotFoundError):
        return ModelError("download_file_not_found", repo=repo)
    if isinstance(error, errors.HfHubHTTPError):
        status = getattr(getattr(error, "response", None), "status_code", None)
        if status in (401, 403):
            return ModelError("download_unauthorized", repo=repo)
        return ModelError("download_server_error", repo=repo, status=str(status))
    logger.warning("download of %s failed: %s", repo, type(error).__name__)
    return ModelError("download_network_error", repo=repo)


def disk_full(needed_bytes: int, free_bytes: int = 0) -> ResourceError:
    """The error for a full disk, in GB as its message says."""
    return ResourceError("disk_full", need=f"{needed_bytes / 1024**3:.2f}",
                         free=f"{free_bytes / 1024**3:.2f}")
