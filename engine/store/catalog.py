"""What is on disk: each manifest model's state and size, and the LoRAs users dropped in.

Types here import neither torch nor gradio, so the UI can show them; the checks only look at
files (a cached snapshot, its required files, their sizes) and never load weights.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass
from pathlib import Path

from engine.store.manifest import ManifestEntry, ModelKind

logger = logging.getLogger(__name__)

LORA_SUFFIXES = (".safetensors",)


class ModelState(str, enum.Enum):
    MISSING = "missing"  # 未下载
    DOWNLOADING = "downloading"  # 下载中 x%
    PARTIAL = "partial"  # 下载未完成 (cut off; starting again resumes)
    READY = "ready"  # 已就绪
    LOADING = "loading"  # 加载中
    BROKEN = "broken"  # 已损坏


@dataclass(frozen=True)
class ModelStatus:
    entry: ManifestEntry
    state: ModelState
    size_bytes: int
    active: bool = False
    progress: float | None = None  # 0..1 while downloading
    converted: bool = False  # loads from its fp16 safetensors copy
    source: str = ""  # where the verified download came from
    # Its source gave no hash for some files: their sizes were checked, not their contents.
    size_only: bool = False


class LocalKind(str, enum.Enum):
    FOLDER = "folder"  # a diffusers folder in models/checkpoints
    SINGLE_FILE = "single_file"  # an A1111/Civitai .safetensors checkpoint
    LORA = "lora"  # a LoRA file in models/lora


@dataclass(frozen=True)
class LocalModelStatus:
    """A model the user placed in the models folder; ``problem`` is an error code when it
    cannot be used as it is (a pickle, an unsupported family, no matching base on disk)."""

    path: Path
    kind: LocalKind
    size_bytes: int
    problem: str | None = None
    problem_params: dict | None = None


@dataclass(frozen=True)
class LoraChoice:
    """A LoRA the user can pick: a manifest entry, or a file in the LoRA folder."""

    name: str
    title_zh: str
    title_en: str
    description_zh: str
    description_en: str
    base: str | None
    weight: float
    trigger_words: tuple[str, ...]
    has_preview: bool = False  # the manifest names a picture; it is on disk once downloaded


def _has_weights(paths: set[str], part: str) -> bool:
    prefix = f"{part}/" if part else ""
    return any(p.startswith(prefix) and "/" not in p[len(prefix):]
               and p.endswith((".safetensors", ".bin")) for p in paths)


def required_paths_present(entry: ManifestEntry, paths: set[str]) -> bool:
    """Whether these relative paths (a folder's, or a download plan's) are what loading needs."""
    if entry.files:
        return set(entry.files) <= paths
    if entry.kind is ModelKind.BASE:
        parts = ("unet", "vae", "text_encoder")
        return "model_index.json" in paths and all(
            f"{p}/config.json" in paths and _has_weights(paths, p) for p in parts)
    if entry.kind is ModelKind.LORA:
        return entry.weight_file in paths
    return "config.json" in paths and _has_weights(paths, "")


def folder_files(folder: Path) -> dict[str, int]:
    """Every file under ``folder`` (through the cache's links) with its size, in one walk."""
    return {p.relative_to(folder).as_posix(): p.stat().st_size
            for p in folder.rglob("*") if p.is_file()}


def required_files_present(entry: ManifestEntry, folder: Path) -> bool:
    """Whether a snapshot holds what loading needs (not merely that its folder exists)."""
    return required_paths_present(entry, set(folder_files(folder)))


def folder_size(folder: Path) -> int:
    return sum(folder_files(folder).values())


PICKLE_SUFFIXES = (".bin", ".ckpt", ".pt", ".pth", ".pkl")


def stays_inside(path: Path, root: Path) -> bool:
    """Whether ``path`` (through every symlink) is under ``root``: a link in a models folder
    must not make the server read files from anywhere else on disk."""
    return path.resolve().is_relative_to(root.resolve())


def local_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Diffusers folders users put in ``checkpoint_dir``. Only safetensors ones: a pickle from
    an unknown source can run code when loaded. Nothing in them may link outside the folder."""
    if not checkpoint_dir.is_dir():
        return []
    found = []
    for folder in sorted(p for p in checkpoint_dir.iterdir() if p.is_dir()):
        if not (folder / "model_index.json").is_file():
            continue
        files = list(folder.rglob("*")) if stays_inside(folder, checkpoint_dir) else None
        if files is None or not all(stays_inside(p, checkpoint_dir) for p in files):
            logger.warning("skipping %s: it links outside the checkpoints folder", folder.name)
            continue
        if any(p.suffix in PICKLE_SUFFIXES for p in files):
            logger.warning("skipping %s: user models must be safetensors", folder.name)
            continue
        found.append(folder)
    return found


def _inside_diffusers_folder(path: Path, root: Path) -> bool:
    return any((parent / "model_index.json").is_file()
               for parent in path.parents if parent.is_relative_to(root) and parent != root)


def single_file_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """A1111/Civitai-style ``.safetensors`` checkpoints anywhere under ``checkpoint_dir``
    (sub-folders too, as A1111 scans them), except the weights inside diffusers folders and
    links to files elsewhere."""
    if not checkpoint_dir.is_dir():
        return []
    return sorted(p for p in checkpoint_dir.rglob("*.safetensors")
                  if p.is_file() and not _inside_diffusers_folder(p, checkpoint_dir)
                  and stays_inside(p, checkpoint_dir))


def user_model_name(path: Path, checkpoint_dir: Path) -> str:
    """How the model picker and the API name a user's model: its path inside the
    checkpoints folder (``my-style``, ``sd15/水墨.safetensors``), never a server path."""
    return path.relative_to(checkpoint_dir).as_posix()


def pickled_checkpoints(checkpoint_dir: Path) -> list[Path]:
    """Single files in a pickle format (``.ckpt`` ...): listed so users learn why they are
    refused, never loaded."""
    if not checkpoint_dir.is_dir():
        return []
    return sorted(p for p in checkpoint_dir.rglob("*") if p.suffix in PICKLE_SUFFIXES
                  and p.is_file() and not _inside_diffusers_folder(p, checkpoint_dir))


def lora_files(lora_dir: Path) -> list[Path]:
    """LoRA files users dropped in ``lora_dir``; a link to a file elsewhere is not one."""
    if not lora_dir.is_dir():
        return []
    return sorted(p for p in lora_dir.iterdir() if p.suffix in LORA_SUFFIXES and p.is_file()
                  and stays_inside(p, lora_dir))


def lora_choice_from_entry(entry: ManifestEntry) -> LoraChoice:
    return LoraChoice(
        name=entry.id, title_zh=entry.name.zh, title_en=entry.name.en,
        description_zh=entry.description.zh, description_en=entry.description.en,
        base=entry.base_label, weight=entry.recommended.lora_weight or 1.0,
        trigger_words=entry.trigger_words, has_preview=entry.preview_image is not None)


def lora_choice_from_file(path: Path) -> LoraChoice:
    return LoraChoice(name=path.stem, title_zh=path.stem, title_en=path.stem,
                      description_zh="", description_en="", base=None, weight=1.0,
                      trigger_words=())
