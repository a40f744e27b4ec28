"""A double of one part of the real service: its downloader (``ImageService.downloader``).

The tests run the real ``ImageService`` over ``engine.fake_engine.FakeEngine``; its real
``Downloader`` works offline (the tests' settings are offline), so it refuses to start a
download. Where a test must see that the UI *started* one (from which source, for which
model), ``RecordingDownloader.install(service)`` puts this double in the downloader's place:
``start`` and ``import_folder`` are recorded, ``status`` and ``cancel`` answer from what they
recorded, and ``verify`` and ``delete`` are the real downloader's (they need no network).
With ``completes=True`` a started download finishes at once: the model's files are placed on
disk as a finished download leaves them, and its status is DONE.
"""

from __future__ import annotations

from pathlib import Path

from engine.downloads.downloader import Downloader
from engine.downloads.jobs import DownloadState, DownloadStatus
from engine.downloads.sources import DownloadSource
from engine.fake_engine import place_placeholder_models
from engine.service import ImageService


class RecordingDownloader:
    """Stands in for ``Downloader``: start/import_folder/status/cancel recorded, verify and
    delete real."""

    def __init__(self, service: ImageService, completes: bool = False) -> None:
        self.real = Downloader(service.store, service.manifest)
        self.settings = service.settings
        self.manifest = service.manifest
        self.completes = completes
        self.calls: list[tuple[str, DownloadSource | Path]] = []  # starts and imports, in order
        self.statuses: dict[str, DownloadStatus] = {}
        self.cancelled: list[str] = []
        self.verified: list[str] = []
        self.deleted: list[str] = []

    @classmethod
    def install(cls, service: ImageService, completes: bool = False) -> RecordingDownloader:
        recorder = cls(service, completes)
        service.downloader = recorder  # type: ignore[assignment]  # a cached_property: settable
        return recorder

    def start(self, model_id: str, source: DownloadSource) -> None:
        self.real._entry(model_id)  # an unknown model is refused as the real one refuses it
        self.calls.append((model_id, source))
        if self.completes:
            place_placeholder_models(self.settings, self.manifest, [model_id])
            self.statuses[model_id] = DownloadStatus(model_id, DownloadState.DONE, 100, 100)
        else:
            self.statuses[model_id] = DownloadStatus(model_id, DownloadState.DOWNLOADING, 0, 100)

    def import_folder(self, model_id: str, folder: Path) -> None:
        self.real._entry(model_id)
        self.calls.append((model_id, folder))
        self.statuses[model_id] = DownloadStatus(model_id, DownloadState.PENDING)

    def status(self, model_id: str) -> DownloadStatus | None:
        return self.statuses.get(model_id)

    def cancel(self, model_id: str) -> None:
        self.cancelled.append(model_id)
        if model_id in self.statuses:
            self.statuses[model_id] = DownloadStatus(model_id, DownloadState.CANCELLED)

    def verify(self, model_id: str) -> bool:
        self.verified.append(model_id)
        return self.real.verify(model_id)

    def delete(self, model_id: str) -> None:
        """As the real one: a download under way is stopped first, then the files go."""
        self.deleted.append(model_id)
        if model_id in self.statuses:
            self.statuses[model_id] = DownloadStatus(model_id, DownloadState.CANCELLED)
        self.real.delete(model_id)
