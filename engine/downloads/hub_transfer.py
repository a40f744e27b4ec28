"""One file from a hub-compatible server into the cache, resumable across calls and restarts.

``hf_hub_download`` (huggingface_hub 2.4) writes each attempt to a fresh temporary file and
deletes it on failure, so a 3.4 GB UNet cut off at 90 % starts again from zero. Here the same
library's ``http_get`` appends to a ``.part`` file that outlives the call: the next attempt (a
retry, a new 下载 click, a new process) asks for the rest with a ``Range`` request. A server
that ignores the range gets the whole file again (``http_get`` rewinds). Whatever arrives is
still checked against the hub's SHA-256 before the model counts as downloaded.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path

from engine.store.files import RemoteFile, as_sha256

logger = logging.getLogger(__name__)


def etag_sha256(repo: str, commit: str, path: str, endpoint: str,
                token: str | bool | None) -> str | None:
    """The SHA-256 that the resolve answer's ``X-Linked-Etag`` / ``ETag`` gives, if it is one.

    The hub puts an LFS file's SHA-256 there; for a source whose listing has no hash for a
    file it is the only hash there is. Anything else (a git blob id, a server's own tag) is no
    SHA-256 and gives None.
    """
    from huggingface_hub import get_hf_file_metadata, hf_hub_url

    url = hf_hub_url(repo, path, revision=commit, endpoint=endpoint)
    metadata = get_hf_file_metadata(url, token=token, endpoint=endpoint, retry_on_errors=True)
    return as_sha256(metadata.etag)

def fetch_hub_file(repo: str, commit: str, remote: RemoteFile, target: Path, endpoint: str,
                   token: str | bool | None, tqdm_class) -> None:
    """Download ``remote`` to ``target``, whose folder exists (renamed there only once whole)."""
    from filelock import FileLock
    from huggingface_hub import hf_hub_url
    from huggingface_hub.file_download import http_get
    from huggingface_hub.utils import build_hf_headers

    part = target.with_name(target.name + ".part")
    url = hf_hub_url(repo, remote.path, revision=commit, endpoint=endpoint)
    headers = build_hf_headers(token=token)
    headers["Accept-Encoding"] = "identity"  # byte ranges must count stored bytes
    # Two processes (the app and the CLI) must not append to one part file at once.
    with FileLock(str(part) + ".lock"):
        if target.is_file() and target.stat().st_size == remote.size:
            return  # another process finished it while this one waited for the lock
        with open(part, "ab") as handle:
            if handle.tell() > remote.size:  # not this file's beginning: start over
                handle.truncate(0)
                handle.seek(0)
            resume = handle.tell()
            if resume:
                logger.info("resuming %s/%s at byte %d", repo, remote.path, resume)
            http_get(url, handle, resume_size=resume, headers=headers,
                     expected_size=remote.size, displayed_filename=remote.path,
                     tqdm_class=tqdm_class)
        os.replace(part, target)
