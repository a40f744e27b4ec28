"""The catalog: every manifest model's state and the user's own models, torch-free.

A model's state (missing, downloading, partial, ready, loading, broken) comes from what is on
disk, the download in progress (asked through ``download_progress``, so the store never imports
the download code) and what happened when it last loaded (``loading``, ``mark_loaded``,
``mark_broken``). The service reports these; the UI and the API show them.
"""

from __future__ import annotations

import json
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from engine.errors import ModelError
from engine.settings import EngineSettings
from engine.store.catalog import (
    LocalKind,
    LocalModelStatus,
    LoraChoice,
    ModelState,
    ModelStatus,
    folder_files,
    folder_size,
    local_checkpoints,
    lora_choice_from_entry,
    lora_choice_from_file,
    lora_files,
    pickled_checkpoints,
    required_paths_present,
    single_file_checkpoints,
    user_model_name,
)
from engine.store.manifest import Manifest, ManifestEntry, ModelKind
from engine.store.model_store import ModelStore
from engine.store.single_file import is_single_file

logger = logging.getLogger(__name__)

# The fraction (0..1) of ``model_id``'s download in progress, None when none runs.
DownloadProgress = Callable[[str], "float | None"]
NATIVE_SIDE = 512  # SD 1.x: what a folder without a readable UNet config is taken to be


def folder_default_size(folder: Path) -> tuple[int, int]:
    """A diffusers folder's UNet says its native size (latent size x the VAE's factor 8)."""
    try:
        side = int(json.loads((folder / "unet" / "config.json").read_text())["sample_size"]) * 8
    except (OSError, ValueError, KeyError, TypeError):
        side = NATIVE_SIDE
    return side, side


class ModelCatalog:
    def __init__(self, settings: EngineSettings, manifest: Manifest, store: ModelStore,
                 download_progress: DownloadProgress) -> None:
        self.settings = settings
        self.manifest = manifest
        self.store = store
        self._download_progress = download_progress
        self._loading: set[str] = set()
        self._broken: set[str] = set()
        self._lock = threading.Lock()

    # -- what happened when a model loaded ---------------------------------------------------

    @contextmanager
    def loading(self, model: str) -> Iterator[None]:
        """Shows ``model`` as loading meanwhile; a load that fails to read the weights marks
        it broken, one that succeeds clears that."""
        with self._lock:
            self._loading.add(model)
        try:
            yield
        except ModelError as error:
            if error.code == "model_load_failed":
                self.mark_broken(model)
            raise
        finally:
            with self._lock:
                self._loading.discard(model)
        self.mark_loaded(model)

    def mark_broken(self, model: str) -> None:
        with self._lock:
            self._broken.add(model)

    def mark_loaded(self, model: str) -> None:
        with self._lock:
            self._broken.discard(model)

    # -- manifest models ---------------------------------------------------------------------

    def entries(self, kind: ModelKind) -> tuple[ManifestEntry, ...]:
        return self.manifest.of_kind(kind)

    def statuses(self, active: str, kind: ModelKind | None = None) -> list[ModelStatus]:
        entries = self.manifest.models if kind is None else self.entries(kind)
        return [self.status(entry, active) for entry in entries]

    def status(self, entry: ManifestEntry, active: str) -> ModelStatus:
        snapshot = self.store.local_snapshot(entry)
        converted = self.store.converted_folder(entry)  # its originals were deleted
        folder = converted or snapshot
        # One walk per folder gives both the size and what is there (this runs every second
        # of a download, for every model).
        files = {f: folder_files(f) for f in (snapshot, converted) if f is not None}
        size = sum(sum(sizes.values()) for sizes in files.values())
        complete = folder is not None and required_paths_present(entry, set(files[folder]))
        progress = self._download_progress(entry.id)
        record = self.store.records.read("verified", entry.cache_repo)
        return ModelStatus(entry, self._state(entry, folder, complete, progress), size,
                           active=entry.id == active, progress=progress,
                           converted=converted is not None,
                           source=record.source if record else "",
                           size_only=bool(record and record.unhashed))

    def _state(self, entry: ManifestEntry, folder: Path | None, complete: bool,
               progress: float | None) -> ModelState:
        with self._lock:
            if progress is not None:
                return ModelState.DOWNLOADING
            if self.store.is_pending(entry):
                return ModelState.PARTIAL
            if entry.id in self._loading:
                return ModelState.LOADING
            if folder is None:
                return ModelState.MISSING
            if entry.id in self._broken or not complete:
                return ModelState.BROKEN
            return ModelState.READY

    def weights_sha256(self, model_id: str) -> str | None:
        entry = self.manifest.get(model_id)
        return self.store.recorded_weights_sha256(entry) if entry else None

    def default_size(self, model: str) -> tuple[int, int]:
        entry = self.manifest.get(model)
        if entry and entry.default_size:
            return entry.default_size.width, entry.default_size.height
        try:
            path = self.store.user_model(model) or self.store.resolve(model)
        except ModelError:
            return NATIVE_SIDE, NATIVE_SIDE  # the error shows when the model loads
        if is_single_file(path):
            try:
                path = self.store.single_file_config(path)  # its architecture's native size
            except ModelError:
                return folder_default_size(path)  # the error shows when it loads
        return folder_default_size(path)

    def controlnets_for(self, base: str) -> list[ManifestEntry]:
        """ControlNets trained for ``base`` first, then the rest (which get a warning)."""
        return sorted(self.entries(ModelKind.CONTROLNET), key=lambda entry: entry.base != base)

    def lora_choices(self) -> list[LoraChoice]:
        choices = [lora_choice_from_entry(e) for e in self.entries(ModelKind.LORA)]
        return choices + [lora_choice_from_file(p) for p in lora_files(self.settings.lora_dir)]

    def lora_preview(self, name: str) -> Path | None:
        """The style's example picture, when its repo is on disk."""
        entry = self.manifest.get(name)
        if entry is None or not entry.preview_image:
            return None
        snapshot = self.store.local_snapshot(entry)
        path = snapshot / entry.preview_image if snapshot else None
        return path if path and path.is_file() else None

    # -- the user's own models ---------------------------------------------------------------

    def local_models(self) -> list[Path]:
        """Users' own models in the models folder, for the model picker: diffusers folders and
        single-file checkpoints (an unusable one says why when picked)."""
        folder = self.settings.checkpoint_dir
        return local_checkpoints(folder) + single_file_checkpoints(folder)

    def local_model_names(self) -> list[str]:
        """``local_models`` as the API names them (inside the checkpoints folder), which is
        what a model switch accepts; no server path."""
        folder = self.settings.checkpoint_dir
        return [user_model_name(p, folder) for p in self.local_models()]

    def local_model_statuses(self) -> list[LocalModelStatus]:
        """What the user placed in the models folder, each with the reason it cannot be used."""
        folder = self.settings.checkpoint_dir
        found = [LocalModelStatus(p, LocalKind.FOLDER, folder_size(p))
                 for p in local_checkpoints(folder)]
        found += [self._single_file_status(p) for p in single_file_checkpoints(folder)]
        found += [LocalModelStatus(p, LocalKind.SINGLE_FILE, p.stat().st_size, "checkpoint_pickle",
                                   {"name": p.name}) for p in pickled_checkpoints(folder)]
        found += [LocalModelStatus(p, LocalKind.LORA, p.stat().st_size)
                  for p in lora_files(self.settings.lora_dir)]
        return found

    def _single_file_status(self, path: Path) -> LocalModelStatus:
        try:
            self.store.single_file_config(path)
        except ModelError as error:
            return LocalModelStatus(path, LocalKind.SINGLE_FILE, path.stat().st_size,
                                    error.code, error.params)
        return LocalModelStatus(path, LocalKind.SINGLE_FILE, path.stat().st_size)
