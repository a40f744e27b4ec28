"""What a download of one model consists of (a plan of remote files with their sizes and
hashes) and how a file on disk is checked against it.

The store records plans and re-hashes files (校验); the downloads make plans and check what
they fetched. Both import this module, so the store never imports the download code.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

HASH_CHUNK = 4 * 1024 * 1024
SHA256_HEX = re.compile(r"[0-9a-f]{64}")


@dataclass(frozen=True)
class RemoteFile:
    path: str
    size: int
    sha256: str | None  # large (LFS) files: the hub's ETag is this hash
    git_sha1: str | None  # small files: the git blob id


@dataclass(frozen=True)
class DownloadPlan:
    repo: str
    commit: str
    files: tuple[RemoteFile, ...]
    source: str = ""  # the endpoint it came from, or a local folder

    @property
    def total_bytes(self) -> int:
        return sum(f.size for f in self.files)

    @property
    def unhashed(self) -> tuple[str, ...]:
        """Files that came with no hash at all: only their size could be checked."""
        return tuple(f.path for f in self.files if not (f.sha256 or f.git_sha1))


def as_sha256(value: str | None) -> str | None:
    """``value`` (e.g. an ETag) when it is a SHA-256 in hex, else None."""
    value = (value or "").strip().lower()
    return value if SHA256_HEX.fullmatch(value) else None


def _read_into(digest, path: Path, on_bytes: Callable[[int], None] | None = None):
    with path.open("rb") as handle:
        for chunk in iter(lambda: handle.read(HASH_CHUNK), b""):
            digest.update(chunk)
            if on_bytes is not None:
                on_bytes(len(chunk))
    return digest


def sha256_of(path: Path, on_bytes: Callable[[int], None] | None = None) -> str:
    """The file's SHA-256; ``on_bytes`` hears of each chunk read (progress, or a cancel)."""
    return _read_into(hashlib.sha256(), path, on_bytes).hexdigest()


def file_digest(path: Path, expected: RemoteFile) -> bool:
    """Whether the file on disk is exactly the one the hub described."""
    if path.stat().st_size != expected.size:
        return False
    if expected.sha256:
        digest = hashlib.sha256()
    elif expected.git_sha1:
        digest = hashlib.sha1(b"blob %d\0" % expected.size)
    else:
        return True  # the hub gave no hash: the size is all there is to check
    return _read_into(digest, path).hexdigest() == (expected.sha256 or expected.git_sha1)
