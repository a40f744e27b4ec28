"""A download as the UI, the API and the CLI see it: its state, bytes, speed and ETA, and the
job object a download thread reports into (``engine.downloads.downloader.Downloader`` runs them).
No torch, no gradio: the UI shows these types.
"""

from __future__ import annotations

import enum
import threading
import time
from dataclasses import dataclass, replace
from pathlib import Path

from engine.downloads.sources import DownloadSource
from engine.store.manifest import ManifestEntry


class DownloadState(str, enum.Enum):
    PENDING = "pending"
    DOWNLOADING = "downloading"
    VERIFYING = "verifying"
    CONVERTING = "converting"
    DONE = "done"
    FAILED = "failed"
    CANCELLED = "cancelled"


FINISHED = (DownloadState.DONE, DownloadState.FAILED, DownloadState.CANCELLED)


@dataclass(frozen=True)
class DownloadStatus:
    model_id: str
    state: DownloadState
    done_bytes: int = 0
    total_bytes: int = 0
    speed_bps: float = 0.0
    error_code: str | None = None
    error_params: dict | None = None
    saved_bytes: int = 0  # by the fp16 safetensors conversion
    size_only: bool = False  # done, but some files had no hash: only their sizes were checked

    @property
    def fraction(self) -> float:
        return self.done_bytes / self.total_bytes if self.total_bytes else 0.0

    @property
    def eta_s(self) -> float | None:
        if self.speed_bps <= 0:
            return None
        return max(0.0, (self.total_bytes - self.done_bytes) / self.speed_bps)

    def text_params(self) -> dict[str, str]:
        """The numbers the progress texts show (GB, MB/s, seconds), formatted once for all."""
        eta = self.eta_s
        return {"percent": f"{self.fraction * 100:.1f}",
                "done": f"{self.done_bytes / 1024**3:.2f}",
                "total": f"{self.total_bytes / 1024**3:.2f}",
                "speed": f"{self.speed_bps / 1024**2:.1f}",
                "eta": "?" if eta is None else f"{eta:.0f}",
                "saved": f"{self.saved_bytes / 1024**3:.2f}"}


class DownloadCancelled(Exception):
    """Raised inside the transfer loop, which leaves the partial file for a later resume."""


def progress_class(job: DownloadJob):
    """A tqdm whose updates feed ``job``; huggingface_hub drives it byte by byte."""
    from huggingface_hub.utils import tqdm

    class JobProgress(tqdm):
        def __init__(self, *args, **kwargs):
            kwargs["disable"] = True
            super().__init__(*args, **kwargs)
            job.add_resumed(int(kwargs.get("initial") or 0))

        def update(self, n=1):
            if job.cancel_requested.is_set():
                raise DownloadCancelled()
            job.add_bytes(int(n or 0))
            return super().update(n)

    return JobProgress


class DownloadJob:
    """One model's download, run in its own thread; status can be read at any time."""

    def __init__(self, entry: ManifestEntry, source: DownloadSource | Path) -> None:
        self.entry = entry
        self.source = source
        self.cancel_requested = threading.Event()
        self.finished = threading.Event()
        self._lock = threading.Lock()
        self._status = DownloadStatus(entry.id, DownloadState.PENDING)
        self._started = time.monotonic()
        self._counted_from = 0

    @property
    def status(self) -> DownloadStatus:
        with self._lock:
            return self._status

    def update(self, **changes) -> None:
        with self._lock:
            self._status = replace(self._status, **changes)

    def add_bytes(self, count: int) -> None:
        with self._lock:
            done = max(0, self._status.done_bytes + count)
            elapsed = max(time.monotonic() - self._started, 1e-6)
            speed = max(0, done - self._counted_from) / elapsed
            self._status = replace(self._status, done_bytes=done, speed_bps=speed)

    def add_resumed(self, count: int) -> None:
        """Bytes a resumed file already had: done, but not part of the speed."""
        with self._lock:
            self._counted_from += count
        self.add_bytes(count)

    def start_counting(self, already_done: int, total: int) -> None:
        with self._lock:
            self._counted_from = already_done
            self._started = time.monotonic()
            self._status = replace(self._status, state=DownloadState.DOWNLOADING,
                                   done_bytes=already_done, total_bytes=total)

    def cancel(self) -> None:
        self.cancel_requested.set()

    def wait(self, timeout: float | None = None) -> DownloadStatus:
        self.finished.wait(timeout)
        return self.status
