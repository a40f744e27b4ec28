"""ModelScope downloads through the real ``modelscope_hub`` SDK (0.5.1), against the
ModelScope look-alike in ``modelscope_server`` on 127.0.0.1: the plan, one file's download
with progress, cancel and resume, the error codes, checksums, and that the endpoint and token
given per call are the only ones used.
"""

from __future__ import annotations

import hashlib
import random
import shutil
import time
from pathlib import Path, PurePosixPath

import pytest
from modelscope_hub import HubConfig, _download_control, _legacy_api, constants

from engine.downloads.jobs import DownloadCancelled
from engine.downloads.modelscope import download_modelscope_file, fetch_modelscope_plan
from engine.downloads.sources import MODELSCOPE_ENDPOINT
from engine.errors import ModelError
from engine.store.files import file_digest
from tests.support.modelscope_server import ACCELERATION_PROBE, ModelScopeServer

REPO = "test-org/tiny-pipeline"
PATTERNS = ["model_index.json", "unet/*"]
WEIGHTS = "unet/diffusion_pytorch_model.bin"
WEIGHTS_SIZE = 300 * 1024
NEEDED = ["model_index.json", "unet/config.json", WEIGHTS]
LISTING = f"/api/v1/models/{REPO}/repo/files"
FILE_ROUTE = f"/api/v1/models/{REPO}/repo"


@pytest.fixture(scope="module")
def repo_folder(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("modelscope-repo")
    (folder / "unet").mkdir()
    (folder / "safety_checker").mkdir()
    (folder / "model_index.json").write_text('{"_class_name": "StableDiffusionPipeline"}')
    (folder / "unet" / "config.json").write_text('{"sample_size": 8}')
    (folder / WEIGHTS).write_bytes(random.Random(1).randbytes(WEIGHTS_SIZE))
    (folder / "safety_checker" / "pytorch_model.bin").write_bytes(random.Random(2).randbytes(4096))
    (folder / "README.md").write_text("# tiny")
    return folder


@pytest.fixture(autouse=True)
def home(tmp_path, monkeypatch) -> Path:
    """A fresh HOME and no MODELSCOPE_* settings: what the SDK would keep there shows up."""
    for name in ("MODELSCOPE_ENDPOINT", "MODELSCOPE_DOMAIN", "MODELSCOPE_API_TOKEN",
                 "MODELSCOPE_CACHE", "MODELSCOPE_HOME"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    return tmp_path / "home"


@pytest.fixture
def server(repo_folder):
    with ModelScopeServer({REPO: repo_folder}) as fake:
        yield fake


@pytest.fixture
def sdk_waits(monkeypatch) -> list[float]:
    """Retries without the waits: the SDK backs off 1, 2, 4 s between listing attempts and
    0, 2, 4, 8, 16 s between download attempts (1, 2 s after a bad hash). Keeps what it asked."""
    waits: list[float] = []

    class Clock:
        monotonic = staticmethod(time.monotonic)

        @staticmethod
        def sleep(seconds: float) -> None:
            waits.append(seconds)

    def control_sleep(control, seconds: float) -> None:
        waits.append(seconds)
        control.check()

    monkeypatch.setattr(_legacy_api, "time", Clock)
    monkeypatch.setattr(_download_control._DownloadControl, "sleep", control_sleep)
    return waits


def local_bytes(repo_folder: Path, path: str) -> bytes:
    return (repo_folder / path).read_bytes()


def download(server, plan, path: str, root: Path, cancelled=lambda: False) -> tuple[Path, list]:
    remote = next(f for f in plan.files if f.path == path)
    target = root / "snapshot" / path
    target.parent.mkdir(parents=True, exist_ok=True)
    progress: list[int] = []
    download_modelscope_file(plan, remote, target, server.endpoint, None, progress.append,
                             cancelled)
    return target, progress


def raises_code(call, code: str) -> ModelError:
    with pytest.raises(ModelError) as caught:
        call()
    assert caught.value.code == code, caught.value
    return caught.value


# -- the plan -------------------------------------------------------------------------------

@pytest.mark.servers
def test_plan_lists_only_the_matching_files_with_sizes_and_sha256(server, repo_folder):
    plan = fetch_modelscope_plan(REPO, PATTERNS, server.endpoint, None)

    assert [f.path for f in plan.files] == NEEDED
    for remote in plan.files:
        data = local_bytes(repo_folder, remote.path)
        assert remote.size == len(data)
        assert remote.sha256 == hashlib.sha256(data).hexdigest()
        assert remote.git_sha1 is None
    assert plan.repo == REPO and plan.source == server.endpoint
    assert plan.total_bytes == sum(len(local_bytes(repo_folder, p)) for p in NEEDED)
    assert server.requests_to(LISTING, "GET")[0].query == {"Revision": "master",
                                                          "Recursive": "True"}


@pytest.mark.servers
def test_plan_commit_is_a_stable_folder_name_from_the_content(server):
    first = fetch_modelscope_plan(REPO, PATTERNS, server.endpoint, None)
    second = fetch_modelscope_plan(REPO, list(reversed(PATTERNS)), server.endpoint, None)

    assert first.commit == second.commit
    assert len(first.commit) == 40 and int(first.commit, 16) >= 0
    # The recipe of engine.downloads.folder_import: the same files imported from a folder land
    # in the same snapshot folder.
    ordered = sorted(first.files, key=lambda f: PurePosixPath(f.path))
    assert first.commit == hashlib.sha1(
        "".join(f"{f.path}:{f.sha256};" for f in ordered).encode()).hexdigest()


@pytest.mark.servers
def test_plan_without_matching_files_is_refused(server):
    error = raises_code(lambda: fetch_modelscope_plan(REPO, ["text_encoder/*"], server.endpoint,
                                                      None), "download_no_files")
    assert error.params == {"repo": REPO}


@pytest.mark.servers
@pytest.mark.parametrize("repo, forced, code", [
    ("test-org/missing", None, "download_repo_not_found"),
    (REPO, 404, "download_repo_not_found"),
    (REPO, 401, "download_unauthorized"),
    (REPO, 403, "download_unauthorized"),
    (REPO, 500, "download_server_error"),
])
def test_plan_errors_map_to_codes(server, sdk_waits, repo, forced, code):
    if forced is not None:
        server.status_for[REPO] = forced

    error = raises_code(lambda: fetch_modelscope_plan(repo, PATTERNS, server.endpoint, None), code)

    assert error.params["repo"] == repo
    if forced == 500:
        assert error.params["status"] == "500"
        assert sdk_waits == [1, 2, 4]  # the SDK's 4 listing attempts


@pytest.mark.servers
def test_plan_from_a_stopped_server_is_a_network_error(server, sdk_waits):
    server.stop()

    raises_code(lambda: fetch_modelscope_plan(REPO, PATTERNS, server.endpoint, None),
                "download_network_error")
    assert sdk_waits == [1, 2, 4]


# -- one file -------------------------------------------------------------------------------

@pytest.mark.servers
def test_download_lands_at_the_target_with_progress(server, repo_folder, tmp_path):
    plan = fetch_modelscope_plan(REPO, PATTERNS, server.endpoint, None)

    target, progress = download(server, plan, WEIGHTS, tmp_path)

    assert target.read_bytes() == local_bytes(repo_folder, WEIGHTS)
    assert file_digest(target, next(f for f in plan.files if f.path == WEIGHTS))
    assert sum(progress) == WEIGHTS_SIZE and all(n > 0 for n in progress)
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]  # no staging left
    assert [r.query for r in server.requests_to(FILE_ROUTE, "GET")] == [
        {"Revision": "master", "FilePath": WEIGHTS}]


@pytest.mark.servers
def test_cancel_before_the_start_asks_nothing(server, tmp_path):
    plan = fetch_modelscope_plan(REPO, PATTERNS, server.endpoint, None)

    with pytest.raises(DownloadCancelled):
        download(server, plan, WEIGHTS, tmp_path, cancelled=lambda: True)

    assert not (tmp_path / "snapshot" / WEIGHTS).exists()
    assert [r.path for r in server.requests_log] == [LISTING]


@pytest.mark.servers
def test_cancel_mid_file_leaves_no_file_and_the_next_call_resumes(server, repo_folder,
                                                                  tmp_path):
    plan = fetch_modelscope_plan(REPO, PATTERNS, server.endpoint, None)
    server.hold_after[f"{REPO}/{WEIGHTS}"] = 100_000
    answers = iter([False])  # not yet at the start; then at the first bytes

    with pytest.raises(DownloadCancelled):
        download(server, plan, WEIGHTS, tmp_path, cancelled=lambda: next(answers, True))
    target = tmp_path / "snapshot" / WEIGHTS
    assert not target.exists()

    target, progress = download(server, plan, WEIGHTS, tmp_path)
    assert target.read_bytes() == local_bytes(repo_folder, WEIGHTS)
    assert sum(progress) == WEIGHTS_SIZE
    kept = progress[0]  # the SDK reports the bytes kept from the first call first
    assert 0 < kept <= 100_000
    ranges = [r.headers.get("range") for r in server.requests_to(FILE_ROUTE, "GET")]
    assert ranges == [None, f"bytes={kept}-"]
    assert sorted(p.name for p in target.parent.iterdir()) == [target.name]


@pytest.mark.servers
def test_a_dropped_connection_resumes_with_a_range(server, repo_folder, tmp_path):
    plan = fetch_modelscope_plan(REPO, PATTERNS, server.endpoint, None)
    server.drop_after[f"{REPO}/{WEIGHTS}"] = 100_000

    target, progress = download(server, plan, WEIGHTS, tmp_path)

    assert target.read_bytes() == local_bytes(repo_folder, WEIGHTS)
    assert sum(progress) == WEIGHTS_SIZE
    ranges = [r.headers.get("range") for r in server.requests_to(FILE_ROUTE, "GET")]
    assert ranges == [None, "bytes=100000-"]


@pytest.mark.servers
@pytest.mark.parametrize("forced, code", [
    (404, "download_file_not_found"),
    (401, "download_unauthorized"),
    (403, "download_unauthorized"),
    (500, "download_server_error"),
])
def test_download_errors_map_to_codes(server, sdk_waits, tmp_path, forced, code):
    plan = fetch_modelscope_plan(REPO, PATTERNS, server.endpoint, None)
    server.status_for[f"{REPO}/{WEIGHTS}"] = forced

    error = raises_code(lambda: download(server, plan, WEIGHTS, tmp_path), code)

    assert error.params["repo"] == REPO
    if forced == 500:
        assert error.params["status"] == "500"
    assert not (tmp_path / "snapshot" / WEIGHTS).exists()


@pytest.mark.servers
def test_download_from_a_stopped_server_is_a_network_error(server, sdk_waits, tmp_path):
    plan = fetch_modelscope_plan(REPO, PATTERNS, server.endpoint, None)
    server.stop()

    raises_code(lambda: download(server, plan, WEIGHTS, tmp_path), "download_network_error")
    assert sdk_waits == [0, 2, 4, 8, 16]  # the SDK's 6 download attempts


@pytest.mark.servers
def test_wrong_bytes_are_a_checksum_mismatch_and_never_reach_the_target(server, sdk_waits,
                                                                       tmp_path):
    plan = fetch_modelscope_plan(REPO, PATTERNS, server.endpoint, None)
    server.corrupt.add(f"{REPO}/{WEIGHTS}")

    error = raises_code(lambda: download(server, plan, WEIGHTS, tmp_path), "checksum_mismatch")

    assert error.params == {"repo": REPO, "file": WEIGHTS}
    assert not (tmp_path / "snapshot" / WEIGHTS).exists()
    assert sdk_waits == [1, 2]  # the SDK fetched it 3 times before giving up


# -- endpoint, token, global state ----------------------------------------------------------

@pytest.mark.servers
def test_only_the_given_endpoint_and_token_are_used(server, repo_folder, home, tmp_path,
                                                    monkeypatch):
    # Decoys: an environment pointing elsewhere and a login stored in ~/.modelscope.
    monkeypatch.setenv("MODELSCOPE_ENDPOINT", "http://127.0.0.1:9")
    monkeypatch.setenv("MODELSCOPE_API_TOKEN", "env-token")
    HubConfig(config_dir=home / ".modelscope", cache_dir=tmp_path / "unused",
              token="").save_token("stored-token")

    plan = fetch_modelscope_plan(REPO, PATTERNS, server.endpoint, None)
    target, _ = download(server, plan, WEIGHTS, tmp_path)
    remote = plan.files[0]
    download_modelscope_file(plan, remote, tmp_path / "snapshot" / remote.path, server.endpoint,
                             "given-token", lambda n: None, lambda: False)

    assert target.read_bytes() == local_bytes(repo_folder, WEIGHTS)
    sent = [r.headers for r in server.requests_log]
    assert not any("env-token" in str(h) or "stored-token" in str(h) for h in sent)
    with_token = [r for r in server.requests_log if "authorization" in r.headers]
    assert with_token and all(r.headers["authorization"] == "Bearer given-token"
                              for r in with_token)
    assert {r.path for r in server.requests_log} == {LISTING, FILE_ROUTE, ACCELERATION_PROBE}


def test_the_default_endpoint_is_the_sdks():
    assert MODELSCOPE_ENDPOINT == constants.DEFAULT_ENDPOINT


@pytest.mark.servers
def test_nothing_is_written_to_the_home_folder(server, home, tmp_path):
    plan = fetch_modelscope_plan(REPO, PATTERNS, server.endpoint, None)
    download(server, plan, WEIGHTS, tmp_path)

    assert not home.exists() or list(home.rglob("*")) == []


# -- through the app's own Downloader: the same path a user's 下载 button takes --------------

MS_BASE_REPO = "PAI/pai-diffusion-artist-large-zh"


def _service(tmp_path, tiny_repos):
    from engine.service import ImageService
    from engine.settings import DEFAULT_MANIFEST
    from engine.store.manifest import load_manifest
    from tests.support.tiny_repos import make_settings

    settings = make_settings(tiny_repos, hub_cache_dir=tmp_path / "cache",
                             models_dir=tmp_path / "models", offline=False,
                             convert_downloads=False)
    return ImageService(settings, load_manifest(DEFAULT_MANIFEST))


def _modelscope(server):
    from engine.downloads.sources import DownloadSource

    return DownloadSource.from_choice("modelscope", server.endpoint, allow_private=True)


@pytest.mark.servers
def test_a_pai_base_downloads_from_modelscope_verifies_and_generates(tiny_repos, tmp_path):
    from engine.downloads.jobs import DownloadState
    from engine.store.catalog import ModelState
    from tests.support.helpers import txt2img

    service = _service(tmp_path, tiny_repos)
    with ModelScopeServer({MS_BASE_REPO: tiny_repos.pai_base}) as server:
        status = service.download("pai-artist-large", _modelscope(server)).wait(120)
        fetched = {r.path for r in server.requests_log if r.method == "GET"}
    assert status.state is DownloadState.DONE, status
    assert status.done_bytes == status.total_bytes > 0
    assert not any("safety_checker" in path for path in fetched)
    [statuses] = [s for s in service.model_statuses() if s.entry.id == "pai-artist-large"]
    assert statuses.state is ModelState.READY and statuses.source == server.endpoint
    assert service.verify("pai-artist-large")
    assert service.generate(txt2img()).images


@pytest.mark.servers
def test_modelscope_refuses_what_it_does_not_host_or_cannot_load(tiny_repos, tmp_path):
    from engine.downloads.jobs import DownloadState

    service = _service(tmp_path, tiny_repos)
    partial = tmp_path / "no-text-encoder"
    shutil.copytree(tiny_repos.pai_base, partial, ignore=shutil.ignore_patterns("text_encoder"))
    with ModelScopeServer({MS_BASE_REPO: partial}) as server:
        with pytest.raises(ModelError) as caught:
            service.download("pai-artist-large-lora-poem", _modelscope(server))
        assert caught.value.code == "download_not_on_modelscope"
        status = service.download("pai-artist-large", _modelscope(server)).wait(120)
        file_requests = [r for r in server.requests_log if "FilePath" in r.query]
    assert (status.state, status.error_code) == (DownloadState.FAILED,
                                                 "download_layout_unexpected")
    assert not file_requests  # nothing fetched that could never load
