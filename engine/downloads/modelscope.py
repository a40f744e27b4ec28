"""ModelScope (魔搭) as a download source, through the official ``modelscope_hub`` SDK.

Every call builds its own ``HubApi`` from an explicit ``HubConfig``: the endpoint and token
given here win over MODELSCOPE_ENDPOINT / MODELSCOPE_API_TOKEN and over a login stored in
~/.modelscope, and what the SDK persists (its install id, its file lock) lands in a scratch
folder of ours rather than in the user's home.
"""

from __future__ import annotations

import errno
import logging
import shutil
import tempfile
import threading
from collections.abc import Callable
from pathlib import Path, PurePosixPath
from urllib.parse import urlsplit

from engine.downloads.sources import (
    content_commit,
    disk_full,
    matches,
)
from engine.errors import EngineError, ModelError
from engine.store.files import DownloadPlan, RemoteFile

logger = logging.getLogger(__name__)

REVISION = "master"  # ModelScope's default branch
REPO_TYPE = "model"


class _Cancel(BaseException):
    """Raised from the SDK's progress callback. The SDK retries after any ``Exception``, so only
    a BaseException gets a cancel out of its transfer loop (the partial file stays, to resume)."""


def _hub_api(endpoint: str, token: str | None, scratch: Path):
    from modelscope_hub import HubApi, HubConfig

    # token "" rather than None: None would fall back to the environment or a stored login.
    return HubApi(HubConfig(endpoint=endpoint, token=token or "", cache_dir=scratch,
                            config_dir=scratch))


def fetch_modelscope_plan(repo: str, patterns: list[str], endpoint: str,
                          token: str | None) -> DownloadPlan:
    """The files of ``repo`` the app needs, with the sizes and SHA-256 ModelScope reports."""
    try:
        with tempfile.TemporaryDirectory(prefix="modelscope-") as scratch:
            listing = _hub_api(endpoint, token, Path(scratch)).list_repo_files(
                repo, REPO_TYPE, revision=REVISION, recursive=True)
    except Exception as error:  # noqa: BLE001 - every SDK error becomes one clear code
        raise modelscope_error(error, repo) from None
    files = sorted((RemoteFile(info.path, int(info.size), (info.sha256 or "").lower() or None, None)
                    for info in listing if not info.is_dir and matches(info.path, patterns)),
                   key=lambda f: PurePosixPath(f.path))
    if not files:
        raise ModelError("download_no_files", repo=repo)
    # The SDK's listing carries no commit id: the content names the snapshot folder (as for a
    # folder import, so equal files give the same folder either way).
    return DownloadPlan(repo, content_commit(tuple(files)), tuple(files), endpoint)


class _Progress:
    """Folds the SDK's per-attempt progress callbacks into one running count for ``on_bytes``."""

    def __init__(self, on_bytes: Callable[[int], None], cancelled: Callable[[], bool]) -> None:
        self.on_bytes = on_bytes
        self.cancelled = cancelled
        self.reported = 0
        self.lock = threading.Lock()  # parallel range parts report from several threads

    def add(self, count: int) -> None:
        with self.lock:
            self.reported += count
        if count:
            self.on_bytes(count)

    def callback_class(self):
        from modelscope_hub import ProgressCallback

        progress = self

        class Callback(ProgressCallback):
            def __init__(self, filename: str, file_size: int) -> None:
                super().__init__(filename, file_size)
                # A new instance means a new attempt from byte 0 (after a failed hash check).
                progress.add(-progress.reported)

            def update(self, size: int) -> None:
                if progress.cancelled():
                    raise _Cancel
                progress.add(size)

        return Callback


def download_modelscope_file(plan: DownloadPlan, remote: RemoteFile, target: Path,
                             endpoint: str, token: str | None, on_bytes: Callable[[int], None],
                             cancelled: Callable[[], bool]) -> None:
    """Fetch one file of ``plan`` to ``target``; the SDK checks its size and SHA-256.

    The SDK writes into a hidden staging folder next to ``target`` (its ``.incomplete`` file
    there is what a later call resumes from); only a verified file is renamed onto ``target``.
    """
    from engine.downloads.jobs import DownloadCancelled

    if cancelled():
        raise DownloadCancelled()
    staging = target.parent / f".{target.name}.modelscope"
    progress = _Progress(on_bytes, cancelled)
    entry = {"Path": remote.path, "Size": remote.size, "Type": "blob"}
    if remote.sha256:
        entry["Sha256"] = remote.sha256
    try:
        # file_list: the plan's listing is reused, so the SDK asks for nothing but the file.
        _hub_api(endpoint, token, staging / ".sdk").download_repo(
            plan.repo, REPO_TYPE, revision=REVISION, local_dir=staging, file_list=[entry],
            max_workers=1, progress_callbacks=[progress.callback_class()])
    except _Cancel:
        raise DownloadCancelled() from None
    except Exception as error:  # noqa: BLE001
        cause = _first_failure(error)
        if isinstance(cause, OSError) and cause.errno == errno.ENOSPC:
            raise disk_full(remote.size) from None
        raise modelscope_error(cause, plan.repo, remote.path) from None
    progress.add(remote.size - progress.reported)  # a file the SDK found complete reports nothing
    (staging / remote.path).replace(target)
    shutil.rmtree(staging, ignore_errors=True)


def _first_failure(error: BaseException) -> BaseException:
    """``download_repo`` wraps a file's failure in FileDownloadError; the cause is what counts."""
    from modelscope_hub import FileDownloadError

    if isinstance(error, FileDownloadError) and error.failed_files:
        return next(iter(error.failed_files.values()))
    return error


def modelscope_error(error: BaseException, repo: str, file: str | None = None) -> EngineError:
    """One stable code per kind of failure the SDK reports (the codes of ``download_error``)."""
    from modelscope_hub import errors

    error = _first_failure(error)
    if isinstance(error, EngineError):
        return error
    if isinstance(error, errors.FileIntegrityError):  # its SHA-256 or size check kept failing
        return ModelError("checksum_mismatch", repo=repo, file=file or "")
    status = getattr(error, "status_code", None)
    if status in (401, 403) or isinstance(error, (errors.AuthenticationError,
                                                  errors.PermissionDeniedError)):
        return ModelError("download_unauthorized", repo=repo)
    if isinstance(error, errors.NotExistError):
        # One exception for a missing repo and a missing file; the URL tells them apart: the
        # file endpoint is ".../repo?FilePath=...", the listing ".../repo/files".
        on_file = urlsplit(error.url or "").path.endswith("/repo")
        return ModelError("download_file_not_found" if on_file else "download_repo_not_found",
                          repo=repo)
    if isinstance(error, errors.APIError):
        return ModelError("download_server_error", repo=repo, status=str(status or "?"))
    logger.warning("ModelScope download of %s failed: %s", repo, type(error).__name__)
    return ModelError("download_network_error", repo=repo)
