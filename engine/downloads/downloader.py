"""Model downloads: progress, cancel, resume, free-space check, hash verification.

Files go into the hub cache's snapshot folder through huggingface_hub's ``http_get``
(``engine.downloads.hub_transfer``: a cut-off file resumes from its ``.part`` file, also in
a later call or process) or the ModelScope SDK. Before the first byte a *pending* record is written;
only when every file matched its SHA-256 (or git blob id) is it replaced by a *verified* one.
``ModelStore`` refuses to load a model whose record is still pending, so a download that was
cut off or killed never loads as a complete model.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import shutil
import threading
from collections.abc import Callable
from dataclasses import replace
from functools import partial
from pathlib import Path

from engine.downloads.jobs import (
    FINISHED,
    DownloadCancelled,
    DownloadJob,
    DownloadState,
    DownloadStatus,
    progress_class,
)
from engine.downloads.sources import (
    HUGGINGFACE,
    DownloadSource,
    disk_full,
    download_error,
    fetch_plan,
    pinned,
)
from engine.errors import EngineError, ModelError
from engine.store.catalog import required_paths_present
from engine.store.files import DownloadPlan, RemoteFile, file_digest
from engine.store.manifest import Manifest, ManifestEntry
from engine.store.model_store import ModelStore, delete_cached_file, files_for, repo_folder_name

logger = logging.getLogger(__name__)

DISK_MARGIN_BYTES = 200 * 1024 * 1024
LOCK_POLL_S = 0.5  # how often a download waiting for another process checks for 取消
DELETE_WAIT_S = 10

# Fetches one file of a plan to its target path, counting its bytes into the job.
_Fetch = Callable[[DownloadJob, DownloadPlan, RemoteFile, Path], None]


class Downloader:
    """Starts, shares, cancels, verifies and deletes downloads of manifest models."""

    def __init__(self, store: ModelStore, manifest: Manifest,
                 convert: Callable[[ManifestEntry, Path], int] | None = None,
                 token: str | None = None) -> None:
        self.store = store
        self.manifest = manifest
        self.convert = convert
        self.token = token
        self.records = store.records
        self._jobs: dict[str, DownloadJob] = {}
        self._lock = threading.Lock()

    def _entry(self, model_id: str) -> ManifestEntry:
        entry = self.manifest.get(model_id)
        if entry is None:
            raise ModelError("unknown_model", name=model_id)
        return entry

    def start(self, model_id: str, source: DownloadSource) -> DownloadJob:
        """A new download, or the one already running for this model."""
        entry = self._entry(model_id)
        if self.store.settings.offline:
            raise self.store.not_downloaded(entry)
        if source.is_modelscope and entry.modelscope_repo is None:
            raise ModelError("download_not_on_modelscope", name=entry.id)
        return self._launch(entry, source, lambda job: self._download(job, source))

    def import_folder(self, model_id: str, folder: Path) -> DownloadJob:
        """Take a model from a local folder: hashed, copied into the cache, verified."""
        folder = Path(folder)
        return self._launch(self._entry(model_id), folder, lambda job: self._import(job, folder))

    def _launch(self, entry: ManifestEntry, origin: DownloadSource | Path,
                work: Callable[[DownloadJob], None]) -> DownloadJob:
        with self._lock:
            running = self._jobs.get(entry.id)
            if running is not None and not running.finished.is_set():
                return running
            job = DownloadJob(entry, origin)
            self._jobs[entry.id] = job
        threading.Thread(target=self._run, args=(job, work), name=f"download-{entry.id}",
                         daemon=True).start()
        return job

    def status(self, model_id: str) -> DownloadStatus | None:
        with self._lock:
            job = self._jobs.get(model_id)
        return job.status if job else None

    def cancel(self, model_id: str) -> None:
        with self._lock:
            job = self._jobs.get(model_id)
        if job is not None:
            job.cancel()

    def _run(self, job: DownloadJob, work: Callable[[DownloadJob], None]) -> None:
        try:
            with self._repo_lock(job):
                work(job)
        except (DownloadCancelled, InterruptedError):
            logger.info("download of %s cancelled", job.entry.id)
            job.update(state=DownloadState.CANCELLED)
        except EngineError as error:
            logger.warning("download of %s failed: %s", job.entry.id, error.code)
            job.update(state=DownloadState.FAILED, error_code=error.code,
                       error_params=error.params)
        except Exception as error:  # noqa: BLE001 - a thread must report, never vanish
            wrapped = download_error(error, job.entry.repo)
            job.update(state=DownloadState.FAILED, error_code=wrapped.code,
                       error_params=wrapped.params)
        finally:
            job.finished.set()

    @contextlib.contextmanager
    def _repo_lock(self, job: DownloadJob):
        """Wait (cancellably) while another thread or process works on this model."""
        from filelock import Timeout

        lock = self.records.lock(job.entry.cache_repo, timeout=LOCK_POLL_S)
        while True:
            try:
                lock.acquire()
                break
            except Timeout:
                if job.cancel_requested.is_set():
                    raise DownloadCancelled() from None
        try:
            yield
        finally:
            lock.release()

    def _download(self, job: DownloadJob, source: DownloadSource) -> None:
        entry = job.entry
        plan, fetch = self._plan(entry, source)
        plan = pinned(plan, entry.sha256)
        if not source.is_modelscope:
            plan = self._hashes_from_etags(job, plan, source)
        if not required_paths_present(entry, {f.path for f in plan.files}):
            # Never fetch gigabytes that could not load (a mirror with another layout).
            raise ModelError("download_layout_unexpected", repo=entry.repo,
                             source=source.endpoint)
        conversion = self._conversion(entry)
        if conversion and conversion.commit == plan.commit and not self.store.is_pending(entry):
            # Its originals were replaced by the fp16 copy on purpose: nothing to fetch again.
            job.start_counting(plan.total_bytes, plan.total_bytes)
            job.update(state=DownloadState.DONE)
            return
        missing = [f for f in plan.files if not self._cached_blob_ok(plan, f)]
        self._check_disk(sum(f.size for f in missing))
        self.records.write("pending", plan)
        job.start_counting(plan.total_bytes - sum(f.size for f in missing), plan.total_bytes)
        snapshot = self.store.snapshot_path(plan.repo, plan.commit)
        for remote in missing:
            target = snapshot / remote.path
            target.parent.mkdir(parents=True, exist_ok=True)
            fetch(job, plan, remote, target)
        self._finish(job, plan)

    def _plan(self, entry: ManifestEntry, source: DownloadSource) -> tuple[DownloadPlan, _Fetch]:
        """What to fetch, and the function that fetches one file of it, for this source."""
        patterns = files_for(entry)
        if not source.is_modelscope:
            plan = fetch_plan(entry.repo, patterns, source, self.store.cache_root,
                              token_for(source, self.token))
            # Fetched from ``repo``, filed under the entry's own cache folder.
            return replace(plan, repo=entry.cache_repo), partial(self._fetch_file, source=source)
        from engine.downloads.modelscope import download_modelscope_file, fetch_modelscope_plan

        if entry.modelscope_repo is None:  # start() refused it already; this tells the types
            raise ModelError("download_not_on_modelscope", name=entry.id)
        remote = fetch_modelscope_plan(entry.modelscope_repo, patterns, source.endpoint, None)

        def fetch(job: DownloadJob, plan: DownloadPlan, file: RemoteFile, target: Path) -> None:
            download_modelscope_file(remote, file, target, source.endpoint, None, job.add_bytes,
                                     job.cancel_requested.is_set)

        # Filed in the cache under the hub id: loading never knows where the files came from.
        return replace(remote, repo=entry.cache_repo), fetch

    def _hashes_from_etags(self, job: DownloadJob, plan: DownloadPlan,
                           source: DownloadSource) -> DownloadPlan:
        """A file the source listed with no hash gets the SHA-256 its resolve answer names
        (the hub's ETag for LFS files), asked for before the first byte is written."""
        from engine.downloads.hub_transfer import etag_sha256

        files = []
        for remote in plan.files:
            if not (remote.sha256 or remote.git_sha1):
                remote = replace(remote, sha256=etag_sha256(
                    job.entry.repo, plan.commit, remote.path, source.endpoint,
                    token_for(source, self.token)))
            files.append(remote)
        return replace(plan, files=tuple(files))

    def _import(self, job: DownloadJob, folder: Path) -> None:
        from engine.downloads.folder_import import copy_into_snapshot, plan_from_folder

        job.start_counting(0, 0)
        def hashed(count: int) -> None:
            if job.cancel_requested.is_set():
                raise InterruptedError  # hashing gigabytes must stop on 取消 too
            job.add_bytes(count)

        plan = pinned(plan_from_folder(job.entry, folder, hashed), job.entry.sha256)
        self._check_disk(plan.total_bytes)
        self.records.write("pending", plan)
        job.start_counting(0, plan.total_bytes)
        copy_into_snapshot(plan, folder, self.store.snapshot_path(plan.repo, plan.commit),
                           job.add_bytes, job.cancel_requested.is_set)
        self._finish(job, plan)

    def _finish(self, job: DownloadJob, plan: DownloadPlan) -> None:
        """Verify every file, then make the model visible, then (optionally) convert it."""
        entry = job.entry
        job.update(state=DownloadState.VERIFYING)
        self._verify(plan)
        self.store.point_main_at(plan.repo, plan.commit)
        self.records.write("verified", plan)
        self.records.remove("pending", plan.repo)
        if self.convert is not None:
            self._convert(job, plan, self.convert)
        if plan.unhashed:
            logger.warning("%s: the source gave no hash for %s; only sizes were checked",
                           entry.id, ", ".join(plan.unhashed))
        # Every byte is verified now (a resumed file that was already whole reports none).
        job.update(state=DownloadState.DONE, done_bytes=plan.total_bytes,
                   size_only=bool(plan.unhashed))
        logger.info("%s downloaded and verified (%d bytes)", entry.id, plan.total_bytes)

    def _convert(self, job: DownloadJob, plan: DownloadPlan,
                 convert: Callable[[ManifestEntry, Path], int]) -> None:
        """A failed conversion is a warning: the verified download works as it is."""
        job.update(state=DownloadState.CONVERTING)
        try:
            saved = convert(job.entry, self.store.snapshot_path(plan.repo, plan.commit))
        except ModelError as error:
            job.update(error_code=error.code, error_params=error.params)
            return
        job.update(saved_bytes=saved)

    def _fetch_file(self, job: DownloadJob, plan: DownloadPlan, remote: RemoteFile,
                    target: Path, source: DownloadSource) -> None:
        from engine.downloads.hub_transfer import fetch_hub_file

        try:
            fetch_hub_file(job.entry.repo, plan.commit, remote, target, source.endpoint,
                           token_for(source, self.token), progress_class(job))
        except DownloadCancelled:
            raise
        except OSError as error:
            if error.errno == errno.ENOSPC:  # the disk filled up after all
                raise disk_full(remote.size) from None
            raise download_error(error, job.entry.repo) from None
        except Exception as error:  # noqa: BLE001
            raise download_error(error, job.entry.repo) from None

    def _cached_blob_ok(self, plan: DownloadPlan, remote: RemoteFile) -> bool:
        path = self.store.snapshot_path(plan.repo, plan.commit) / remote.path
        return path.is_file() and path.stat().st_size == remote.size

    def _check_disk(self, needed: int) -> None:
        root = self.store.cache_root
        probe = root
        while not probe.exists():
            probe = probe.parent
        free = shutil.disk_usage(probe).free
        if free < needed + DISK_MARGIN_BYTES:
            raise disk_full(needed, free)

    def _verify(self, plan: DownloadPlan, folder: Path | None = None,
                replaced: frozenset[str] = frozenset()) -> None:
        """Every file must match its hash; a bad one is deleted so the next try fetches it.
        ``replaced`` are originals the fp16 copy took the place of (deleted on purpose)."""
        folder = folder or self.store.snapshot_path(plan.repo, plan.commit)
        for remote in plan.files:
            if remote.path in replaced:
                continue
            path = folder / remote.path
            if not path.is_file() or not file_digest(path.resolve(), remote):
                delete_cached_file(path)
                raise ModelError("checksum_mismatch", repo=plan.repo, file=remote.path)

    def _conversion(self, entry: ManifestEntry) -> DownloadPlan | None:
        """The record of the fp16 copy that loads now, if there is one."""
        if self.store.converted_folder(entry) is None:
            return None
        return self.records.read("converted", entry.cache_repo)

    def verify(self, model_id: str) -> bool:
        """Check a downloaded model's files against the hashes recorded when it arrived (and,
        once converted, the fp16 copy's against those recorded when it was written)."""
        from filelock import Timeout

        entry = self._entry(model_id)
        running = self.status(entry.id)
        # While files arrive or are converted (here or in another process) there is nothing
        # to judge yet.
        if running is not None and running.state not in FINISHED:
            raise ModelError("model_busy", name=entry.id)
        try:
            with self.records.lock(entry.cache_repo, timeout=0):
                return self._verify_recorded(entry)
        except Timeout:
            raise ModelError("model_busy", name=entry.id) from None

    def _verify_recorded(self, entry: ManifestEntry) -> bool:
        plan = self.records.read("verified", entry.cache_repo)
        if plan is None:
            return False
        conversion = self._conversion(entry)
        try:
            if conversion is not None and conversion.commit == plan.commit:
                self._verify(conversion, self.store.converted_folder(entry))
                self._verify(plan, replaced=frozenset(
                    f.path for f in plan.files if f.path.endswith(".bin")))
            else:
                self._verify(plan)
        except ModelError:
            # Pending first: a kill between the two lines must never leave the model loadable.
            self.records.write("pending", plan)
            self.records.remove("verified", entry.cache_repo)
            self.records.remove("converted", entry.cache_repo)
            self.store.forget_converted(entry)
            return False
        return True

    def delete(self, model_id: str) -> None:
        """Remove a model's files from the cache (and its records)."""
        entry = self._entry(model_id)
        self.cancel(entry.id)
        with self._lock:
            job = self._jobs.get(entry.id)
        if job is not None:
            job.finished.wait(60)  # its thread must not write records after the removal
        from filelock import Timeout

        try:
            with self.records.lock(entry.cache_repo, timeout=DELETE_WAIT_S):
                shutil.rmtree(self.store.cache_root / repo_folder_name(entry.cache_repo),
                              ignore_errors=True)
                for kind in ("pending", "verified", "converted"):
                    self.records.remove(kind, entry.cache_repo)
                self.store.forget_converted(entry)
        except Timeout:  # another process is downloading it
            raise ModelError("model_busy", name=entry.id) from None


def token_for(source: DownloadSource, token: str | None) -> str | bool | None:
    """The user's hub token goes to the hub only, never to a mirror or a custom address."""
    return token if source.kind == HUGGINGFACE else False
