"""Records of downloads beside the hub cache: *pending* from the first byte until every file
matched its hash, then *verified*. A model with a pending record is never loaded.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import asdict
from pathlib import Path

from engine.store.files import DownloadPlan, RemoteFile

RECORDS_DIR = ".huajing"


class DownloadRecords:
    """Pending and verified records, beside the hub cache, one JSON file per repo."""

    def __init__(self, cache_root: Path) -> None:
        self.root = cache_root / RECORDS_DIR

    def _path(self, kind: str, repo: str) -> Path:
        return self.root / kind / (repo.replace("/", "--") + ".json")

    def write(self, kind: str, plan: DownloadPlan) -> None:
        path = self._path(kind, plan.repo)
        path.parent.mkdir(parents=True, exist_ok=True)
        data = {"repo": plan.repo, "commit": plan.commit, "source": plan.source,
                "files": [asdict(f) for f in plan.files]}
        # A temporary name of its own: the app and the CLI may write the same record at once.
        handle, temporary = tempfile.mkstemp(prefix=path.stem, suffix=".tmp", dir=path.parent)
        with os.fdopen(handle, "w", encoding="utf-8") as out:
            out.write(json.dumps(data, indent=1))
        os.replace(temporary, path)

    def read(self, kind: str, repo: str) -> DownloadPlan | None:
        try:
            data = json.loads(self._path(kind, repo).read_text(encoding="utf-8"))
            files = tuple(RemoteFile(**f) for f in data["files"])
            return DownloadPlan(data["repo"], data["commit"], files, data.get("source", ""))
        except (OSError, ValueError, KeyError, TypeError):
            return None

    def remove(self, kind: str, repo: str) -> None:
        self._path(kind, repo).unlink(missing_ok=True)

    def lock(self, repo: str, timeout: float = -1):
        """One download, verification or conversion of ``repo`` at a time, across threads and
        processes (the app and the CLI share the cache). ``timeout=0``: fail if busy."""
        from filelock import FileLock

        path = self.root / "locks" / (repo.replace("/", "--") + ".lock")
        path.parent.mkdir(parents=True, exist_ok=True)
        return FileLock(str(path), timeout=timeout, is_singleton=False)

