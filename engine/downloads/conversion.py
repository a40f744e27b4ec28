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

from engine.errors import ModelError
from engine.store.catalog import folder_size
from engine.store.files import DownloadPlan, RemoteFile, sha256_of
from engine.store.manifest import ManifestEntry, ModelKind
from engine.store.model_store import COMPLETE_MARKER, ModelStore, delete_cached_file

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


def _read_base(source: Path):
    from diffusers import StableDiffusionPipeline

    return StableDiffusionPipeline.from_pretrained(
        source, dtype=torch.float16, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False, use_safetensors=False)


def _read_controlnet(source: Path):
    from diffusers import ControlNetModel

    return ControlNetModel.from_pretrained(source, dtype=torch.float16, use_safetensors=False)


def _read_original(entry: ManifestEntry, snapshot: Path):
    """The pickled model, in fp16. Weights that passed their hash check but do not load are
    damaged at the source: the model is broken (not merely unconverted), and a damaged pickle
    can fail in any way its parser can, so every failure here says so."""
    try:
        return (_read_base if entry.kind is ModelKind.BASE else _read_controlnet)(snapshot)
    except Exception as error:  # noqa: BLE001 - see the docstring
        logger.warning("%s does not load for conversion: %s", entry.id, type(error).__name__)
        raise ModelError("model_load_failed", name=entry.id) from None


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
    model = _read_original(entry, snapshot)
    scratch = Path(tempfile.mkdtemp(prefix=".converting-", dir=destination.parent))
    try:
        model.save_pretrained(scratch, safe_serialization=True)
        (scratch / COMPLETE_MARKER).write_text("fp16 safetensors\n", encoding="utf-8")
        _record_converted(store, entry, scratch, snapshot.name)
        shutil.rmtree(destination, ignore_errors=True)
        scratch.rename(destination)
    except (OSError, ValueError, RuntimeError) as error:
        shutil.rmtree(scratch, ignore_errors=True)
        store.records.remove("converted", entry.cache_repo)
        logger.warning("conversion of %s failed: %s", entry.id, type(error).__name__)
        raise ModelError("conversion_failed", name=entry.id) from None
    del model
    before = folder_size(snapshot)
    for original in snapshot.rglob("*.bin"):  # the pickled weights the copy replaces
        delete_cached_file(original)
    after = folder_size(snapshot) + folder_size(destination)
    logger.info("%s converted to fp16 safetensors: %d -> %d bytes", entry.id, before, after)
    return max(0, before - after)
