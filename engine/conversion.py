"""One-time conversion of a downloaded pickled fp32 model to fp16 safetensors.

PAI ships fp32 ``.bin`` files only (a 3.4 GB UNet). The fp16 safetensors copy is half the size,
loads faster and never runs a pickle again. It is written beside the cache, into a temporary
folder first; its files' hashes are recorded (so 校验 can check them) before it is renamed into
place (a ``.complete`` marker), and only then are the pickled originals deleted from the cache:
that is the disk space the conversion saves. A kill at any point leaves either the originals or
a complete, recorded copy to load.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from pathlib import Path

import torch

from engine.catalog import folder_size
from engine.download_sources import DownloadPlan, RemoteFile, sha256_of
from engine.errors import ModelError
from engine.manifest import ManifestEntry, ModelKind
from engine.model_store import COMPLETE_MARKER, ModelStore, delete_cached_file

logger = logging.getLogger(__name__)


def _has_pickles(folder: Path) -> bool:
    return any(folder.rglob("*.bin"))


def _record_converted(store: ModelStore, entry: ManifestEntry, scratch: Path,
                      commit: str) -> None:
    """The copy's hashes, recorded before it becomes visible: a copy never loads unrecorded."""
    files = tuple(RemoteFile(p.relative_to(scratch).as_posix(), p.stat().st_size,
                             sha256_of(p), None)
                  for p in sorted(scratch.rglob("*")) if p.is_file())
    store.records.write("converted", DownloadPlan(entry.cache_repo, commit, files, "fp16"))


def _save_base(source: Path, target: Path) -> None:
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        source, dtype=torch.float16, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False, use_safetensors=False)
    pipe.save_pretrained(target, safe_serialization=True)


def _save_controlnet(source: Path, target: Path) -> None:
    from diffusers import ControlNetModel

    ControlNetModel.from_pretrained(source, dtype=torch.float16,
                                    use_safetensors=False).save_pretrained(
        target, safe_serialization=True)


def convert_to_fp16(store: ModelStore, entry: ManifestEntry, snapshot: Path) -> int:
    """Convert ``entry`` if it is a pickled base or ControlNet; returns the bytes saved.
    The caller holds the repo's lock (``DownloadRecords.lock``)."""
    if entry.kind in (ModelKind.LORA, ModelKind.ANNOTATOR) or not _has_pickles(snapshot):
        return 0
    destination = store.converted_root(entry) / snapshot.name
    destination.parent.mkdir(parents=True, exist_ok=True)
    for stale in destination.parent.iterdir():  # older copies, scratch of a killed conversion
        if stale != destination:
            shutil.rmtree(stale, ignore_errors=True)
    scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=destination.parent))
    try:
        (_save_base if entry.kind is ModelKind.BASE else _save_controlnet)(snapshot, scratch)
        (scratch / COMPLETE_MARKER).write_text("fp16 safetensors\n", encoding="utf-8")
        _record_converted(store, entry, scratch, snapshot.name)
        shutil.rmtree(destination, ignore_errors=True)
        scratch.rename(destination)
    except (OSError, ValueError, RuntimeError) as error:
        shutil.rmtree(scratch, ignore_errors=True)
        store.records.remove("converted", entry.cache_repo)
        logger.warning("conversion of %s failed: %s", entry.id, type(error).__name__)
        raise ModelError("conversion_failed", name=entry.id) from None
    before = folder_size(snapshot)
    for original in snapshot.rglob("*.bin"):  # the pickled weights the copy replaces
        delete_cached_file(original)
    after = folder_size(snapshot) + folder_size(destination)
    logger.info("%s converted to fp16 safetensors: %d -> %d bytes", entry.id, before, after)
    return max(0, before - after)
