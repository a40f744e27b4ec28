"""Finding a model's files: a local folder, a manifest id or a hub repo id in the hub cache.

Real users and the tests go through the same ``snapshot_download`` calls; the tests only
point the cache at tiny replicas and run with ``HF_HUB_OFFLINE=1``. Only the files the app
uses are fetched: never the 1.2 GB safety checker or the example images.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

from engine.errors import ModelError
from engine.manifest import Manifest, ManifestEntry, ModelKind
from engine.settings import EngineSettings

logger = logging.getLogger(__name__)

REPO_ID = re.compile(r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")
BASE_FILES = ["model_index.json", "scheduler/*", "text_encoder/*", "tokenizer/*", "unet/*",
              "vae/*"]
SINGLE_MODEL_FILES = ["config.json", "preprocessor_config.json", "*.safetensors", "*.bin"]


def _files_for(entry: ManifestEntry | None, kind_hint: ModelKind | None) -> list[str]:
    kind = entry.kind if entry else kind_hint
    if kind is ModelKind.LORA and entry is not None:
        return [entry.weight_file] + ([entry.preview_image] if entry.preview_image else [])
    if kind is ModelKind.BASE:
        return BASE_FILES
    return SINGLE_MODEL_FILES


class ModelStore:
    def __init__(self, settings: EngineSettings, manifest: Manifest) -> None:
        self.settings = settings
        self.manifest = manifest

    def entry(self, reference: str) -> ManifestEntry | None:
        return self.manifest.get(reference)

    def resolve(self, reference: str, kind: ModelKind | None = None) -> Path:
        """A folder holding the model's files, downloading only when allowed."""
        local = Path(reference).expanduser()
        if local.is_dir():
            return local
        entry = self.entry(reference)
        repo = entry.repo if entry else reference
        if not REPO_ID.match(repo):
            raise ModelError("unknown_model", name=reference)
        return self._snapshot(repo, _files_for(entry, kind), reference)

    @property
    def _cache(self) -> str | None:
        return str(self.settings.hub_cache_dir) if self.settings.hub_cache_dir else None

    def local_snapshot(self, entry: ManifestEntry) -> Path | None:
        """The cached snapshot of a manifest model, without any network access."""
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import LocalEntryNotFoundError

        try:
            return Path(snapshot_download(entry.repo, cache_dir=self._cache, local_files_only=True,
                                          allow_patterns=_files_for(entry, entry.kind)))
        except (LocalEntryNotFoundError, OSError):
            return None

    def _snapshot(self, repo: str, patterns: list[str], reference: str) -> Path:
        from huggingface_hub import snapshot_download
        from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

        cache = self._cache
        try:
            return Path(snapshot_download(repo, cache_dir=cache, allow_patterns=patterns,
                                          local_files_only=True))
        except (LocalEntryNotFoundError, OSError):
            if self.settings.offline:
                raise ModelError("model_not_downloaded", name=reference, repo=repo) from None
        logger.info("downloading %s", repo)
        try:
            return Path(snapshot_download(repo, cache_dir=cache, allow_patterns=patterns))
        except (LocalEntryNotFoundError, HfHubHTTPError, OSError) as exc:
            logger.warning("download of %s failed: %s", repo, type(exc).__name__)
            raise ModelError("model_not_downloaded", name=reference, repo=repo) from None

    def base_folder(self, reference: str) -> Path:
        folder = self.resolve(reference, ModelKind.BASE)
        if not (folder / "model_index.json").is_file():
            raise ModelError("model_folder_invalid", name=reference)
        return folder
