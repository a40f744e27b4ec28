"""A download source that lists a file without its hash: the resolve answer's SHA-256 ETag is
checked instead, and where there is no hash at all the model says "size checked only" rather
than verified (models table, download message, 校验, CLI).
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import pytest

from engine.downloads.jobs import DownloadState
from engine.downloads.sources import DownloadSource
from engine.service import ImageService
from engine.settings import DEFAULT_MANIFEST
from engine.store.catalog import ModelState
from engine.store.files import as_sha256
from engine.store.manifest import load_manifest
from tests.support.hub_server import Faults, HubServer
from tests.support.tiny_repos import make_settings

LORA_ID = "pai-artist-large-lora-poem"
LORA_REPO = "alibaba-pai/pai-diffusion-artist-large-zh-lora-poem"
WEIGHTS = "pytorch_lora_weights.bin"
KEY = f"{LORA_REPO}/{WEIGHTS}"
JOB_WAIT_S = 120


pytestmark = pytest.mark.usefixtures("hub_online")


@pytest.fixture
def lora_folder(tiny_repos) -> Path:
    return next(tiny_repos.hub_cache.glob("models--*lora-poem/snapshots/*"))


@pytest.fixture
def server(lora_folder):
    with HubServer({LORA_REPO: lora_folder}) as hub:
        hub.unlisted_hashes.add(KEY)  # the listing gives the size only
        yield hub


def make_service(tmp_path: Path, tiny_repos) -> ImageService:
    settings = make_settings(tiny_repos, hub_cache_dir=tmp_path / "cache",
                             models_dir=tmp_path / "models", offline=False,
                             convert_downloads=False)
    return ImageService(settings, load_manifest(DEFAULT_MANIFEST))


def download(service: ImageService, server: HubServer):
    source = DownloadSource.from_choice("custom", server.endpoint, allow_private=True)
    return service.download(LORA_ID, source).wait(JOB_WAIT_S)


def status_of(service: ImageService):
    return next(s for s in service.model_statuses() if s.entry.id == LORA_ID)


@pytest.mark.servers
def test_a_sha256_etag_stands_in_for_the_missing_listed_hash(server, lora_folder, tmp_path,
                                                             tiny_repos):
    service = make_service(tmp_path, tiny_repos)
    status = download(service, server)
    assert status.state is DownloadState.DONE and not status.size_only
    record = service.store.records.read("verified", LORA_REPO)
    real = hashlib.sha256((lora_folder / WEIGHTS).read_bytes()).hexdigest()
    assert {f.path: f.sha256 for f in record.files}[WEIGHTS] == real
    assert not status_of(service).size_only
    assert not any("authorization" in r.headers for r in server.requests_log)


@pytest.mark.servers
def test_wrong_bytes_are_refused_by_the_etag(server, tmp_path, tiny_repos):
    server.file_faults[KEY] = Faults(corrupt=True)  # same size, true headers, other bytes
    service = make_service(tmp_path, tiny_repos)
    status = download(service, server)
    assert (status.state, status.error_code) == (DownloadState.FAILED, "checksum_mismatch")
    assert status_of(service).state is ModelState.PARTIAL


@pytest.mark.servers
def test_no_hash_at_all_is_downloaded_and_shown_as_size_checked_only(server, tmp_path,
                                                                     tiny_repos, monkeypatch):
    from locales import translate
    from ui.models_tab import status_rows

    server.no_etag.add(KEY)
    service = make_service(tmp_path, tiny_repos)
    status = download(service, server)
    assert status.state is DownloadState.DONE and status.size_only
    model = status_of(service)
    assert model.state is ModelState.READY and model.size_only
    for language in ("zh-CN", "en"):
        row = status_rows([model], language)[0]
        assert row[2] == translate(language, "models.state_size_only")
        assert row[2] != translate(language, "models.state_ready")
    assert "未校验哈希" in status_rows([model], "zh-CN")[0][2]
    assert service.verify(LORA_ID)  # the sizes still match


@pytest.mark.servers
def test_the_cli_says_size_checked_only(server, tmp_path, capsys):
    from engine.cli import main

    server.no_etag.add(KEY)
    assert main(["download", LORA_ID, "--source", "custom", "--endpoint", server.endpoint,
                 "--allow-private-endpoint", "--cache-dir", str(tmp_path / "cache"),
                 "--models-dir", str(tmp_path / "models"),
                 "--no-convert"]) == 0
    out = capsys.readouterr().out
    assert "只核对了大小" in out and "已下载并校验完成" not in out


@pytest.mark.servers
def test_the_manifests_pin_still_decides(server, tmp_path, tiny_repos):
    """A pinned hash needs no ETag, and a wrong pin fails even with a true ETag."""
    service = make_service(tmp_path, tiny_repos)
    models = tuple(e.model_copy(update={"sha256": {WEIGHTS: "0" * 64}})
                   if e.id == LORA_ID else e for e in service.manifest.models)
    service.downloader.manifest = service.manifest.model_copy(update={"models": models})
    status = download(service, server)
    assert (status.state, status.error_code) == (DownloadState.FAILED, "checksum_mismatch")
    assert not server.requests_to(WEIGHTS, method="HEAD")


@pytest.mark.parametrize("etag, expected", [
    ("a" * 64, "a" * 64), ("A" * 64, "a" * 64), ("a" * 40, None), ("W/x", None), (None, None),
    ("a" * 63 + "g", None),
])
def test_only_a_sha256_counts_as_one(etag, expected):
    assert as_sha256(etag) == expected
