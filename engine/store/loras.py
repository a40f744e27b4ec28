"""Where a LoRA named in a request is on disk, torch-free: the request preparer asks whether it
exists, the engine loads it from the place found here. One lookup, so both agree."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from engine.errors import EngineError
from engine.settings import EngineSettings
from engine.store.catalog import stays_inside
from engine.store.manifest import ModelKind, Recommended
from engine.store.model_store import ModelStore


@dataclass(frozen=True)
class LoraSource:
    """A resolved LoRA: where its file is and what the user called it."""

    name: str
    path: Path
    allow_pickle: bool
    manifest_base: str | None = None
    # A few-step LoRA's sampler, steps and guidance (None for other LoRAs).
    sampling: Recommended | None = None

    @property
    def adapter_name(self) -> str:
        # peft adapter names become module attribute names: keep them plain.
        return "lora_" + hashlib.sha1(str(self.path).encode()).hexdigest()[:12]


def find_lora(store: ModelStore, settings: EngineSettings, name: str) -> LoraSource | None:
    """A manifest LoRA (its verified download may be pickled), a path when the settings allow
    paths, else a file in the LoRA folder by name; None when there is no such LoRA.
    Raises the store's ModelError for a manifest LoRA that is not downloaded."""
    entry = store.entry(name)
    if entry is not None and entry.kind is ModelKind.LORA:
        folder = store.resolve(name)
        assert entry.weight_file is not None  # the manifest refuses a LoRA without one
        return LoraSource(name, folder / entry.weight_file, allow_pickle=True,
                          manifest_base=entry.base,
                          sampling=entry.recommended if entry.prescribes_sampling else None)
    if settings.allow_file_paths and Path(name).expanduser().is_file():
        return LoraSource(name, Path(name).expanduser(), allow_pickle=False)
    if Path(name).name != name or name in (".", ".."):
        return None  # a name, not a path: prompts must not reach files outside the folder
    folder = settings.lora_dir
    for candidate in (folder / name, folder / f"{name}.safetensors"):
        if candidate.is_file() and stays_inside(candidate, folder):  # as lora_files lists
            return LoraSource(name, candidate, allow_pickle=False)
    return None


def lora_exists(store: ModelStore, settings: EngineSettings, name: str) -> bool:
    """Whether a request may name ``name`` as a LoRA (a manifest one need not be downloaded:
    the job then says which download it needs)."""
    entry = store.entry(name)
    if entry is not None:
        return entry.kind is ModelKind.LORA
    try:
        return find_lora(store, settings, name) is not None
    except EngineError:
        return False
