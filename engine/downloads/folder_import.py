"""Importing a model from a local folder (下载源: 本地文件夹), e.g. a copy from another machine.

The folder's files are hashed, copied into the hub cache as a snapshot and then verified like
a download, so the model is loaded exactly as if it had come from the hub.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

from engine.downloads.sources import (
    content_commit,
    matches,
)
from engine.errors import ModelError
from engine.store.catalog import required_files_present
from engine.store.files import DownloadPlan, RemoteFile, sha256_of
from engine.store.manifest import ManifestEntry
from engine.store.model_store import files_for

FOLDER_SOURCE_PREFIX = "folder:"


def plan_from_folder(entry: ManifestEntry, folder: Path,
                     on_bytes: Callable[[int], None]) -> DownloadPlan:
    """The files of ``folder`` the app needs, hashed; refuses a folder that is not the model."""
    folder = folder.expanduser()
    if not folder.is_dir() or not required_files_present(entry, folder):
        raise ModelError("import_folder_invalid", name=entry.id, folder=str(folder))
    patterns = files_for(entry)
    paths = sorted(p for p in folder.rglob("*") if p.is_file()
                   and matches(p.relative_to(folder).as_posix(), patterns))
    files = tuple(RemoteFile(p.relative_to(folder).as_posix(), p.stat().st_size,
                             sha256_of(p, on_bytes), None) for p in paths)
    # Importing the same folder twice changes nothing.
    return DownloadPlan(entry.cache_repo, content_commit(files), files,
                        FOLDER_SOURCE_PREFIX + str(folder))


def copy_into_snapshot(plan: DownloadPlan, folder: Path, snapshot: Path,
                       on_bytes: Callable[[int], None], cancelled: Callable[[], bool]) -> None:
    for remote in plan.files:
        if cancelled():
            raise InterruptedError
        target = snapshot / remote.path
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_name(target.name + ".incomplete")
        shutil.copyfile(folder.expanduser() / remote.path, partial)
        partial.replace(target)
        on_bytes(remote.size)
