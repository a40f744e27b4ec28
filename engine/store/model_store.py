"""Finding a model's files on disk: a local folder, or a manifest id / hub repo id in the hub
cache (``models--ORG--NAME/refs/main`` names the snapshot). Nothing here touches the network:
downloads happen only when asked for (``engine.downloads``), never behind a user's back.

A model whose download is still pending (cut off, killed, or failing its hash check) is never
returned; a model converted to fp16 safetensors is returned from the converted copy.
"""

from __future__ import annotations

import logging
import re
import shutil
from functools import cached_property
from pathlib import Path

from engine.errors import ModelError
from engine.settings import EngineSettings
from engine.store.catalog import (
    PICKLE_SUFFIXES,
    local_checkpoints,
    pickled_checkpoints,
    single_file_checkpoints,
    user_model_name,
)
from engine.store.files import sha256_of
from engine.store.manifest import Manifest, ManifestEntry, ModelKind
from engine.store.records import DownloadRecords
from engine.store.single_file import CheckpointShape, config_folder_for, is_single_file, read_shape

logger = logging.getLogger(__name__)

# The hub's rule: each part starts with a letter or digit, so ``..`` is never one.
REPO_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
BASE_FILES = ["model_index.json", "scheduler/*", "text_encoder/*", "tokenizer/*", "unet/*",
              "vae/*"]
SINGLE_MODEL_FILES = ["config.json", "preprocessor_config.json", "*.safetensors", "*.bin"]
# TAESD's repo also holds a pickled copy and the original (non-diffusers) weights: not needed.
PREVIEW_DECODER_FILES = ["config.json", "diffusion_pytorch_model.safetensors"]
CONVERTED_DIR = "converted"
COMPLETE_MARKER = ".complete"


def files_for(entry: ManifestEntry) -> list[str]:
    """The files the app uses: never the safety checker or the model card's example images."""
    if entry.files:
        return list(entry.files)
    if entry.kind is ModelKind.LORA:
        assert entry.weight_file is not None  # the manifest refuses a LoRA without one
        return [entry.weight_file] + ([entry.preview_image] if entry.preview_image else [])
    if entry.kind is ModelKind.BASE:
        return BASE_FILES
    if entry.kind is ModelKind.PREVIEW_DECODER:
        return PREVIEW_DECODER_FILES
    return SINGLE_MODEL_FILES


def delete_cached_file(link: Path) -> None:
    """A snapshot entry and the blob it points to (a plain file is just removed)."""
    target = link.resolve() if link.exists() else None
    link.unlink(missing_ok=True)
    if target is not None and target != link:
        target.unlink(missing_ok=True)


def repo_folder_name(repo: str) -> str:
    return "models--" + repo.replace("/", "--")


class ModelStore:
    def __init__(self, settings: EngineSettings, manifest: Manifest) -> None:
        self.settings = settings
        self.manifest = manifest
        self._hashes: dict[tuple, str] = {}

    @cached_property
    def cache_root(self) -> Path:
        from huggingface_hub import constants

        return Path(self.settings.hub_cache_dir or constants.HF_HUB_CACHE)

    @cached_property
    def records(self) -> DownloadRecords:
        return DownloadRecords(self.cache_root)

    def entry(self, reference: str) -> ManifestEntry | None:
        return self.manifest.get(reference)

    def snapshot_path(self, repo: str, commit: str) -> Path:
        return self.cache_root / repo_folder_name(repo) / "snapshots" / commit

    def cached_snapshot(self, repo: str) -> Path | None:
        """The snapshot ``refs/main`` points at, if there is one."""
        repo_dir = self.cache_root / repo_folder_name(repo)
        try:
            commit = (repo_dir / "refs" / "main").read_text(encoding="utf-8").strip()
        except OSError:
            return None
        snapshot = repo_dir / "snapshots" / commit
        return snapshot if commit and snapshot.is_dir() else None

    def point_main_at(self, repo: str, commit: str) -> None:
        """What ``snapshot_download`` leaves: ``refs/main`` naming the downloaded commit."""
        refs = self.cache_root / repo_folder_name(repo) / "refs"
        refs.mkdir(parents=True, exist_ok=True)
        temporary = refs / "main.tmp"
        temporary.write_text(commit, encoding="utf-8")
        temporary.replace(refs / "main")

    def local_snapshot(self, entry: ManifestEntry) -> Path | None:
        return self.cached_snapshot(entry.cache_repo)

    def is_pending(self, entry: ManifestEntry) -> bool:
        return self._pending_blocks(entry.cache_repo)

    def _pending_blocks(self, repo: str) -> bool:
        """A pending record makes a model unloadable only when it is about the snapshot that
        would load (a failed download of a newer commit leaves the older one working)."""
        pending = self.records.read("pending", repo)
        if pending is None:
            return False
        snapshot = self.cached_snapshot(repo)
        return snapshot is None or snapshot.name == pending.commit

    def converted_folder(self, entry: ManifestEntry) -> Path | None:
        snapshot = self.local_snapshot(entry)
        if snapshot is None:
            return None
        folder = self.converted_root(entry) / snapshot.name
        return folder if (folder / COMPLETE_MARKER).is_file() else None

    def converted_root(self, entry: ManifestEntry) -> Path:
        """In the hub cache beside the records, not in a models folder: the originals it
        replaces are deleted from the shared cache, so every models folder must see it."""
        return self.records.root / CONVERTED_DIR / repo_folder_name(entry.cache_repo)

    def forget_converted(self, entry: ManifestEntry) -> None:
        shutil.rmtree(self.converted_root(entry), ignore_errors=True)

    def not_downloaded(self, entry: ManifestEntry | None, reference: str = "") -> ModelError:
        """The error that says what is missing, how big it is and how to get it."""
        if entry is None:
            return ModelError("model_not_downloaded", name=reference, repo=reference, size="?")
        return ModelError("model_not_downloaded", name=entry.id, repo=entry.repo,
                          size=entry.size_text)

    def user_model(self, reference: str) -> Path | None:
        """The user's own model ``reference`` names, or None.

        From the UI and the API only what the checkpoints folder lists (by its name there, or
        the path the listing gives), so a request can neither load files from elsewhere on disk
        nor learn whether a path exists: anything else falls through to the same
        ``unknown_model``. Only the command line (``allow_file_paths``) names any path.
        A pickled file (``.ckpt`` ...) that the folder lists is refused by that reason.
        """
        if self.entry(reference) is not None:
            return None  # a manifest id wins over a folder that happens to share its name
        if self.settings.allow_file_paths:
            path = Path(reference).expanduser()
            if path.is_dir() or is_single_file(path):
                return path
        root = self.settings.checkpoint_dir
        for path in local_checkpoints(root) + single_file_checkpoints(root):
            if reference in (user_model_name(path, root), str(path)):
                return path
        self._refuse_pickle(reference)
        return None

    def _refuse_pickle(self, reference: str) -> None:
        """``checkpoint_pickle`` for a pickle the checkpoints folder lists (or, on the command
        line, any pickle file), decided by its name: a pickle can run code when opened, so
        nothing here opens it."""
        root = self.settings.checkpoint_dir
        named = [p for p in pickled_checkpoints(root)
                 if reference in (user_model_name(p, root), str(p))]
        path = Path(reference).expanduser()
        if self.settings.allow_file_paths and path.suffix in PICKLE_SUFFIXES and path.is_file():
            named.append(path)
        if named:
            raise ModelError("checkpoint_pickle", name=named[0].name)

    def resolve(self, reference: str) -> Path:
        """A folder holding the model's files. Never downloads."""
        own = self.user_model(reference)
        if own is not None and own.is_dir():
            return own
        entry = self.entry(reference)
        repo = entry.cache_repo if entry else reference
        if not REPO_ID.match(repo) or ".." in repo:
            raise ModelError("unknown_model", name=reference)
        if self._pending_blocks(repo):
            raise ModelError("model_incomplete", name=entry.id if entry else reference,
                             repo=repo, size=entry.size_text if entry else "?")
        if entry is not None and (converted := self.converted_folder(entry)) is not None:
            return converted
        snapshot = self.cached_snapshot(repo)
        if snapshot is None:
            raise self.not_downloaded(entry, reference)
        return snapshot

    def complete_folder(self, model_id: str) -> Path:
        """A manifest model's folder in the cache, holding every file it needs: for loaders
        that would fetch a missing file themselves (controlnet-aux does)."""
        from engine.store.catalog import required_files_present

        entry = self.entry(model_id)
        if entry is None:
            raise ModelError("unknown_model", name=model_id)
        folder = self.resolve(entry.id)
        if not required_files_present(entry, folder):
            raise ModelError("model_incomplete", name=entry.id, repo=entry.repo,
                             size=entry.size_text)
        return folder

    def file_hash(self, path: Path) -> str:
        """SHA-256 of a weights file: from the download record when there is one, else
        computed once (per size and modification time) and remembered."""
        path = Path(path)
        stat = path.stat()
        key = (str(path.resolve()), stat.st_size, stat.st_mtime_ns)
        if key not in self._hashes:
            self._hashes[key] = self._recorded_hash(path) or sha256_of(path)
        return self._hashes[key]

    def _recorded_hash(self, path: Path) -> str | None:
        """From the download's record, or the fp16 copy's (written as it was made)."""
        for entry in self.manifest.models:
            for kind, folder in (("verified", self.cached_snapshot(entry.cache_repo)),
                                 ("converted", self.converted_folder(entry))):
                if folder is None or not path.resolve().is_relative_to(folder.resolve()):
                    continue
                record = self.records.read(kind, entry.cache_repo)
                relative = path.resolve().relative_to(folder.resolve()).as_posix()
                for remote in (record.files if record else ()):
                    if remote.path == relative and remote.sha256:
                        return remote.sha256
        return None

    def recorded_weights_sha256(self, entry: ManifestEntry) -> str | None:
        """The UNet's SHA-256 as verified at download (or, once converted, as the fp16 copy
        was written: the weights that load), without reading any weights."""
        kind = "converted" if self.converted_folder(entry) is not None else "verified"
        record = self.records.read(kind, entry.cache_repo)
        for remote in (record.files if record else ()):
            if remote.path.startswith("unet/diffusion_pytorch_model") and remote.sha256:
                return remote.sha256
        return None

    def model_hash(self, folder: Path) -> str | None:
        """A1111's "Model hash" (10 hex of a SHA-256), taken from the UNet's weights."""
        if is_single_file(Path(folder)):
            return self.file_hash(Path(folder))[:10]  # A1111 and Civitai hash the whole file
        weights = sorted((Path(folder) / "unet").glob("diffusion_pytorch_model*.*"))
        weights = [w for w in weights if w.suffix in (".safetensors", ".bin")]
        return self.file_hash(weights[0])[:10] if weights else None

    def base_folder(self, reference: str) -> Path:
        folder = self.resolve(reference)
        if not (folder / "model_index.json").is_file():
            raise ModelError("model_folder_invalid", name=reference)
        return folder

    def base_location(self, reference: str) -> Path:
        """A base model's folder, or the single ``.safetensors`` file it is."""
        own = self.user_model(reference)
        if own is not None and is_single_file(own):
            return own
        return self.base_folder(reference)

    def single_file_config(self, path: Path, shape: CheckpointShape | None = None) -> Path:
        """The local diffusers folder that gives a single-file checkpoint its configs
        (``shape``: the file's header, when the caller has read it already)."""
        downloaded = []
        for entry in self.manifest.models:
            if entry.kind is ModelKind.BASE:
                try:
                    downloaded.append(self.base_folder(entry.id))
                except ModelError:
                    continue  # not on disk (or incomplete): not a candidate
        candidates = downloaded + local_checkpoints(self.settings.checkpoint_dir)
        return config_folder_for(path, shape or read_shape(path), candidates)
