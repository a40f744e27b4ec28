"""Tests of a test fixture, not of the product: the fake hub in ``tests/support/hub_server.py``
(which the download tests serve models from) against the real ``huggingface_hub`` client
(2.4). No code of the app runs here.

These tests pin down both sides: that the server speaks enough of the hub for the client's
downloads and metadata calls, and how the client itself behaves when downloads go wrong
(dropped connections, ignored ranges, error statuses, corrupt bytes), which is what the app's
own download code has to build on.
"""

from __future__ import annotations

import hashlib
import random
import urllib.request
from pathlib import Path

import httpx2
import pytest
from huggingface_hub import HfApi, constants, file_download, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    EntryNotFoundError,
    HfHubHTTPError,
    LocalEntryNotFoundError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
)
from huggingface_hub.utils import _http

from tests.support.hub_server import Faults, HubServer, StatusFault

REPO = "test-org/tiny-pipeline"
BIG_REPO = "test-org/big-weights"
WEIGHTS = "unet/diffusion_pytorch_model.bin"
WEIGHTS_SIZE = 200 * 1024
BIG_FILE = "model.safetensors"
# The client reads bodies in chunks of this size (10 MiB), and only bytes of complete chunks
# reach its file: the big file must be larger for a resumed download to ask for a Range.
CLIENT_CHUNK = constants.DOWNLOAD_CHUNK_SIZE
BIG_SIZE = CLIENT_CHUNK + 64 * 1024
CUT = 50_000


@pytest.fixture(scope="module")
def repo_folders(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("hub-repos")
    tiny = root / "tiny"
    (tiny / "unet").mkdir(parents=True)
    (tiny / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (tiny / "unet" / "config.json").write_text('{"sample_size": 8}')
    (tiny / WEIGHTS).write_bytes(random.Random(1).randbytes(WEIGHTS_SIZE))
    big = root / "big"
    big.mkdir()
    (big / BIG_FILE).write_bytes(random.Random(2).randbytes(BIG_SIZE))
    return {REPO: tiny, BIG_REPO: big}


pytestmark = [pytest.mark.usefixtures("hub_online"), pytest.mark.servers]


class SleepRecorder:
    """Stands in for the ``time`` module of the client's retry code: keeps the waits asked for."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def client_sleeps(monkeypatch) -> SleepRecorder:
    """Retries without waiting: the client's backoff (1, 2, 4, 8, 8 s) would dominate the run."""
    recorder = SleepRecorder()
    monkeypatch.setattr(file_download, "time", recorder)
    monkeypatch.setattr(_http, "time", recorder)
    return recorder


@pytest.fixture
def server(repo_folders):
    with HubServer(repo_folders) as hub:
        yield hub


def download(server: HubServer, cache: Path, filename: str, repo: str = REPO) -> Path:
    return Path(hf_hub_download(repo, filename, cache_dir=cache, endpoint=server.endpoint,
                                token=False))


def incomplete_files(cache: Path) -> list[Path]:
    return list(cache.rglob("*.incomplete"))


def range_headers(server: HubServer, filename: str) -> list[str | None]:
    return [r.headers.get("range") for r in server.requests_to(filename, "GET")]


# -- what the client needs from the hub -----------------------------------------------------

def test_snapshot_download_fetches_exactly_the_allowed_files(server, repo_folders, tmp_path):
    folder = Path(snapshot_download(
        REPO, cache_dir=tmp_path, endpoint=server.endpoint, token=False,
        allow_patterns=["model_index.json", "unet/*"]))
    assert folder.name == server.commit_for(REPO)
    got = sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*") if p.is_file())
    assert got == ["model_index.json", "unet/config.json", WEIGHTS]
    for name in got:
        assert (folder / name).read_bytes() == (repo_folders[REPO] / name).read_bytes()
    # Cache layout: LFS blobs are named by their SHA-256, git blobs by their git sha1.
    blobs = tmp_path / "models--test-org--tiny-pipeline" / "blobs"
    assert (blobs / server.entry(REPO, WEIGHTS).sha256).is_file()
    assert (blobs / server.entry(REPO, "unet/config.json").blob_id).is_file()
    # The calls 2.4 makes: repo info, recursive tree at the commit, then HEAD + GET per file.
    paths = [(r.method, r.path) for r in server.requests_log]
    commit = server.commit_for(REPO)
    assert paths[:2] == [("GET", f"/api/models/{REPO}/revision/main"),
                         ("GET", f"/api/models/{REPO}/tree/{commit}")]
    assert ("HEAD", f"/{REPO}/resolve/{commit}/{WEIGHTS}") in paths
    assert ("GET", f"/{REPO}/resolve/{commit}/{WEIGHTS}") in paths
    assert not any("xet" in path for _, path in paths)


def test_hf_hub_download_caches_the_ref_and_skips_the_download_next_time(server, tmp_path):
    first = download(server, tmp_path, "unet/config.json")
    second = download(server, tmp_path, "unet/config.json")
    assert first == second
    refs = tmp_path / "models--test-org--tiny-pipeline" / "refs" / "main"
    assert refs.read_text() == server.commit_for(REPO)
    assert [r.method for r in server.requests_to("unet/config.json")] == ["HEAD", "GET", "HEAD"]


def test_model_info_tree_and_paths_info_report_sizes_and_lfs_hashes(server, repo_folders):
    api = HfApi(endpoint=server.endpoint, token=False)
    weights = (repo_folders[REPO] / WEIGHTS).read_bytes()
    info = api.model_info(REPO, files_metadata=True)
    assert info.id == REPO and info.sha == server.commit_for(REPO)
    siblings = {s.rfilename: s for s in info.siblings}
    assert set(siblings) == {"model_index.json", "unet/config.json", WEIGHTS}
    assert siblings[WEIGHTS].size == WEIGHTS_SIZE
    assert siblings[WEIGHTS].lfs.sha256 == hashlib.sha256(weights).hexdigest()
    config = (repo_folders[REPO] / "unet" / "config.json").read_bytes()
    assert siblings["unet/config.json"].lfs is None
    assert siblings["unet/config.json"].blob_id == hashlib.sha1(
        b"blob %d\0" % len(config) + config).hexdigest()

    tree = {e.path: e for e in api.list_repo_tree(REPO, recursive=True)}
    assert set(tree) == {"model_index.json", "unet", "unet/config.json", WEIGHTS}
    assert tree[WEIGHTS].lfs.sha256 == siblings[WEIGHTS].lfs.sha256
    assert [e.path for e in api.list_repo_tree(REPO)] == ["model_index.json", "unet"]

    paths = api.get_paths_info(REPO, ["unet", WEIGHTS, "missing.txt"])
    assert [(type(e).__name__, e.path) for e in paths] == [
        ("RepoFolder", "unet"), ("RepoFile", WEIGHTS)]


# -- dropped connections, ignored ranges ------------------------------------------------------

def test_a_dropped_small_file_is_fetched_again_whole_in_the_same_call(
        server, repo_folders, tmp_path, client_sleeps):
    # Under 10 MiB the received bytes are still in the client's chunk buffer when the
    # connection breaks, so its retry (after 1 s) starts again from byte 0, without a Range.
    server.file_faults[f"{REPO}/{WEIGHTS}"] = Faults(drop_after_bytes=CUT)
    path = download(server, tmp_path, WEIGHTS)
    assert path.read_bytes() == (repo_folders[REPO] / WEIGHTS).read_bytes()
    assert range_headers(server, WEIGHTS) == [None, None]
    assert client_sleeps.calls == [1]
    server.wait_idle()
    assert server.bytes_served[f"{REPO}/{WEIGHTS}"] == CUT + WEIGHTS_SIZE


def test_a_dropped_big_file_resumes_with_a_range_in_the_same_call(
        server, repo_folders, tmp_path, client_sleeps):
    cut = CLIENT_CHUNK + 1000
    server.file_faults[f"{BIG_REPO}/{BIG_FILE}"] = Faults(drop_after_bytes=cut)
    path = download(server, tmp_path, BIG_FILE, repo=BIG_REPO)
    assert path.read_bytes() == (repo_folders[BIG_REPO] / BIG_FILE).read_bytes()
    # Only the whole chunks it had written are kept: it asks for the rest from there.
    assert range_headers(server, BIG_FILE) == [None, f"bytes={CLIENT_CHUNK}-"]
    assert not incomplete_files(tmp_path)
    server.wait_idle()
    assert server.bytes_served[f"{BIG_REPO}/{BIG_FILE}"] == cut + BIG_SIZE - CLIENT_CHUNK


def test_a_server_ignoring_the_range_still_gives_the_right_bytes(
        server, repo_folders, tmp_path, client_sleeps):
    cut = CLIENT_CHUNK + 1000
    server.file_faults[f"{BIG_REPO}/{BIG_FILE}"] = Faults(drop_after_bytes=cut, ignore_range=True)
    path = download(server, tmp_path, BIG_FILE, repo=BIG_REPO)
    assert path.read_bytes() == (repo_folders[BIG_REPO] / BIG_FILE).read_bytes()
    assert range_headers(server, BIG_FILE) == [None, f"bytes={CLIENT_CHUNK}-"]
    server.wait_idle()
    # The 200 answer to the Range request sent the whole file again; the client started over.
    assert server.bytes_served[f"{BIG_REPO}/{BIG_FILE}"] == cut + BIG_SIZE


def test_a_failed_call_leaves_nothing_and_the_next_call_starts_from_zero(
        server, repo_folders, tmp_path, client_sleeps):
    key = f"{REPO}/{WEIGHTS}"
    server.file_faults[key] = Faults(drop_after_bytes=CUT, drop_times=None)
    with pytest.raises(httpx2.RemoteProtocolError):
        download(server, tmp_path, WEIGHTS)
    # No progress kept between attempts: 1 try + 5 retries, 1 s apart, then it gives up.
    assert range_headers(server, WEIGHTS) == [None] * 6
    assert client_sleeps.calls == [1] * 5
    # 2.4 downloads to a per-call temporary file that is deleted on failure.
    assert not incomplete_files(tmp_path)

    del server.file_faults[key]
    path = download(server, tmp_path, WEIGHTS)
    assert path.read_bytes() == (repo_folders[REPO] / WEIGHTS).read_bytes()
    assert range_headers(server, WEIGHTS) == [None] * 7


# -- error statuses ---------------------------------------------------------------------------

def test_a_missing_file_raises_entry_not_found(server, tmp_path):
    with pytest.raises(RemoteEntryNotFoundError) as caught:
        download(server, tmp_path, "unet/missing.bin")
    assert isinstance(caught.value, EntryNotFoundError)
    assert caught.value.response.status_code == 404
    # The absence is cached under the commit the error named.
    no_exist = tmp_path / "models--test-org--tiny-pipeline" / ".no_exist"
    assert (no_exist / server.commit_for(REPO) / "unet" / "missing.bin").is_file()


def test_a_forced_404_on_a_file_raises_entry_not_found(server, tmp_path):
    server.status_for[f"{REPO}/{WEIGHTS}"] = 404
    with pytest.raises(RemoteEntryNotFoundError):
        download(server, tmp_path, WEIGHTS)


def test_a_missing_repo_raises_repository_not_found(server, tmp_path):
    with pytest.raises(RepositoryNotFoundError):
        download(server, tmp_path, "model_index.json", repo="test-org/nope")
    with pytest.raises(RepositoryNotFoundError):
        snapshot_download("test-org/nope", cache_dir=tmp_path, endpoint=server.endpoint,
                          token=False)


def test_a_401_raises_a_plain_hub_http_error(server, tmp_path):
    server.status_for[REPO] = 401
    with pytest.raises(HfHubHTTPError) as caught:
        download(server, tmp_path, "model_index.json")
    assert not isinstance(caught.value, RepositoryNotFoundError)
    assert caught.value.response.status_code == 401
    with pytest.raises(HfHubHTTPError) as caught:
        HfApi(endpoint=server.endpoint, token=False).model_info(REPO)
    assert caught.value.response.status_code == 401


def test_a_500_on_the_api_raises_at_once(server):
    server.status_for[REPO] = 500
    with pytest.raises(HfHubHTTPError) as caught:
        HfApi(endpoint=server.endpoint, token=False).model_info(REPO)
    assert caught.value.response.status_code == 500
    assert len(server.requests_log) == 1


def test_a_500_on_head_is_retried_then_reported_as_not_found_locally(
        server, tmp_path, client_sleeps):
    server.status_for[REPO] = 500
    with pytest.raises(LocalEntryNotFoundError) as caught:
        download(server, tmp_path, "model_index.json")
    assert isinstance(caught.value.__cause__, HfHubHTTPError)
    assert caught.value.__cause__.response.status_code == 500
    # One quick HEAD, then (nothing cached) 1 + 5 retried HEADs with exponential backoff.
    assert [r.method for r in server.requests_log] == ["HEAD"] * 7
    assert client_sleeps.calls == [1, 2, 4, 8, 8]


def test_a_single_500_on_head_is_absorbed(server, repo_folders, tmp_path, client_sleeps):
    server.status_for[REPO] = StatusFault(500, times=1)
    path = download(server, tmp_path, "model_index.json")
    assert path.read_bytes() == (repo_folders[REPO] / "model_index.json").read_bytes()
    assert [r.method for r in server.requests_log] == ["HEAD", "HEAD", "GET"]
    assert client_sleeps.calls == []


def test_a_500_on_the_download_itself_is_not_retried(server, tmp_path, client_sleeps):
    server.status_for[f"{REPO}/{WEIGHTS}"] = StatusFault(500, methods=frozenset({"GET"}))
    with pytest.raises(HfHubHTTPError) as caught:
        download(server, tmp_path, WEIGHTS)
    assert caught.value.response.status_code == 500
    assert [r.method for r in server.requests_log] == ["HEAD", "GET"]
    assert not incomplete_files(tmp_path)


# -- corrupt bytes, slow bodies ---------------------------------------------------------------

def test_corrupt_bytes_of_the_right_size_are_accepted_by_the_client(
        server, repo_folders, tmp_path):
    server.file_faults[f"{REPO}/{WEIGHTS}"] = Faults(corrupt=True)
    path = download(server, tmp_path, WEIGHTS)
    data = path.read_bytes()
    # The client checks sizes only: the cache now holds wrong bytes under the right hash name.
    assert len(data) == WEIGHTS_SIZE
    assert data != (repo_folders[REPO] / WEIGHTS).read_bytes()
    assert path.resolve().name == server.entry(REPO, WEIGHTS).sha256
    assert hashlib.sha256(data).hexdigest() != path.resolve().name
    # Only an explicit check against the hub's hashes finds it.
    report = HfApi(endpoint=server.endpoint, token=False).verify_repo_checksums(
        REPO, cache_dir=tmp_path)
    assert [m["path"] for m in report.mismatches] == [WEIGHTS]


def test_a_throttled_body_can_be_abandoned_mid_file(server, repo_folders):
    key = f"{REPO}/{WEIGHTS}"
    server.file_faults[key] = Faults(throttle_bytes_per_s=64 * 1024)
    url = f"{server.endpoint}/{REPO}/resolve/main/{WEIGHTS}"
    with urllib.request.urlopen(url) as response:
        assert response.read(8 * 1024) == (repo_folders[REPO] / WEIGHTS).read_bytes()[:8 * 1024]
        assert server.wait_for_bytes(key, 8 * 1024)
    assert server.wait_idle()
    assert 8 * 1024 <= server.bytes_served[key] < WEIGHTS_SIZE
    # The server goes on serving after the client walked away.
    server.file_faults.clear()
    with urllib.request.urlopen(url) as response:
        assert len(response.read()) == WEIGHTS_SIZE
