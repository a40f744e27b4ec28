"""Downloads through the real huggingface_hub client from a hub-compatible server on 127.0.0.1:
only the files the app needs, progress, cancel, faults, hashes, offline, mirrors, conversion.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from huggingface_hub import constants, file_download
from huggingface_hub.utils import _http
from PIL import Image

from engine.downloads.jobs import DownloadState
from engine.downloads.sources import DownloadSource
from engine.errors import EngineError
from engine.service import ImageService
from engine.settings import DEFAULT_MANIFEST
from engine.store.catalog import ModelState
from engine.store.manifest import load_manifest
from tests.support.helpers import txt2img
from tests.support.hub_server import Faults, HubServer, StatusFault
from tests.support.tiny_repos import make_settings

ROOT = Path(__file__).resolve().parents[3]
BASE_REPO = "alibaba-pai/pai-diffusion-artist-large-zh"
LORA_REPO = "alibaba-pai/pai-diffusion-artist-large-zh-lora-poem"
JOB_WAIT_S = 120


pytestmark = pytest.mark.usefixtures("hub_online")


@pytest.fixture
def no_backoff(monkeypatch):
    """The client waits 1, 2, 4, 8, 8 s between retries of a failing request; skip the waits."""
    class Clock:
        @staticmethod
        def sleep(seconds):
            return None

    monkeypatch.setattr(file_download, "time", Clock)
    monkeypatch.setattr(_http, "time", Clock)


@pytest.fixture(scope="module")
def served_repos(tiny_repos, tmp_path_factory) -> dict[str, Path]:
    """The PAI replica as the hub has it: with its safety checker and an example picture."""
    root = tmp_path_factory.mktemp("served")
    base = root / "base"
    shutil.copytree(tiny_repos.pai_base, base)
    Image.new("RGB", (64, 64), (200, 100, 50)).save(base / "example.png")
    lora = next(tiny_repos.hub_cache.glob("models--*lora-poem/snapshots/*"))
    return {BASE_REPO: base, LORA_REPO: lora}


@pytest.fixture
def server(served_repos):
    with HubServer(served_repos) as hub:
        yield hub


def make_service(tmp_path: Path, tiny_repos, **overrides) -> ImageService:
    settings = make_settings(tiny_repos, hub_cache_dir=tmp_path / "cache",
                             models_dir=tmp_path / "models", offline=False,
                             convert_downloads=False)
    settings = dataclasses.replace(settings, **overrides)
    return ImageService(settings, load_manifest(DEFAULT_MANIFEST))


def source(server: HubServer) -> DownloadSource:
    return DownloadSource.from_choice("custom", server.endpoint, allow_private=True)


def state_of(service: ImageService, model_id: str) -> ModelState:
    return next(s.state for s in service.model_statuses() if s.entry.id == model_id)


@pytest.mark.servers
def test_downloads_only_the_needed_files_then_loads(server, tmp_path, tiny_repos):
    service = make_service(tmp_path, tiny_repos)
    seen = []
    job = service.download("pai-artist-large", source(server))
    while not job.finished.wait(0.05):
        seen.append(job.status.done_bytes)
    status = job.status
    assert status.state is DownloadState.DONE and status.done_bytes == status.total_bytes > 0
    assert seen == sorted(seen)  # progress only grows
    fetched = {r.path.split("/resolve/")[1].split("/", 1)[1]
               for r in server.requests_to("/resolve/", method="GET")}
    assert "unet/diffusion_pytorch_model.bin" in fetched and "model_index.json" in fetched
    assert not any(p.startswith(("safety_checker", "feature_extractor")) for p in fetched)
    assert "example.png" not in fetched
    assert state_of(service, "pai-artist-large") is ModelState.READY
    assert service.verify("pai-artist-large")
    assert service.generate(txt2img()).images


@pytest.mark.servers
def test_cancel_leaves_an_unloadable_partial_model_and_a_retry_completes(
        server, tmp_path, tiny_repos):
    server.faults = Faults(throttle_bytes_per_s=200_000)
    service = make_service(tmp_path, tiny_repos)
    job = service.download("pai-artist-large", source(server))
    server.wait_for_bytes(f"{BASE_REPO}/unet/diffusion_pytorch_model.bin", 50_000)
    service.cancel_download("pai-artist-large")
    assert job.wait(JOB_WAIT_S).state is DownloadState.CANCELLED
    assert state_of(service, "pai-artist-large") is ModelState.PARTIAL
    with pytest.raises(EngineError) as caught:
        service.generate(txt2img())
    assert caught.value.code == "model_incomplete"
    server.faults = Faults()
    again = service.download("pai-artist-large", source(server))
    assert again is not job and again.wait(JOB_WAIT_S).state is DownloadState.DONE
    assert service.generate(txt2img()).images


@pytest.mark.servers
def test_a_cancelled_download_resumes_where_it_stopped(server, served_repos, tmp_path,
                                                       tiny_repos, monkeypatch):
    # The client writes whole 10 MiB chunks; tiny files need tiny chunks to be cut mid-way.
    monkeypatch.setattr(constants, "DOWNLOAD_CHUNK_SIZE", 16 * 1024)
    name = "text_encoder/pytorch_model.bin"  # the first big file of the plan
    key = f"{BASE_REPO}/{name}"
    size = (served_repos[BASE_REPO] / name).stat().st_size
    server.faults = Faults(throttle_bytes_per_s=200_000)
    service = make_service(tmp_path, tiny_repos)
    job = service.download("pai-artist-large", source(server))
    assert server.wait_for_bytes(key, size // 3, timeout=JOB_WAIT_S)
    service.cancel_download("pai-artist-large")
    assert job.wait(JOB_WAIT_S).state is DownloadState.CANCELLED
    server.faults = Faults()
    again = service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    assert again.state is DownloadState.DONE and service.verify("pai-artist-large")
    ranges = [r.headers.get("range") for r in server.requests_to(name, "GET")]
    assert ranges[0] is None and ranges[-1].startswith("bytes=")
    resumed_at = int(ranges[-1].removeprefix("bytes=").rstrip("-"))
    assert 0 < resumed_at < size
    server.wait_idle()
    assert server.bytes_served[key] < 2 * size  # the second call did not start from zero
    assert again.done_bytes == again.total_bytes


@pytest.mark.servers
def test_a_dropped_connection_is_retried(server, tmp_path, tiny_repos, no_backoff):
    server.file_faults[f"{BASE_REPO}/unet/diffusion_pytorch_model.bin"] = Faults(
        drop_after_bytes=100_000, drop_times=1)
    service = make_service(tmp_path, tiny_repos)
    assert service.download("pai-artist-large", source(server)).wait(
        JOB_WAIT_S).state is DownloadState.DONE
    assert service.verify("pai-artist-large")


@pytest.mark.servers
def test_a_server_that_ignores_range_still_gives_the_right_bytes(server, tmp_path, tiny_repos,
                                                                  no_backoff):
    key = f"{BASE_REPO}/unet/diffusion_pytorch_model.bin"
    server.file_faults[key] = Faults(drop_after_bytes=100_000, drop_times=1, ignore_range=True)
    service = make_service(tmp_path, tiny_repos)
    assert service.download("pai-artist-large", source(server)).wait(
        JOB_WAIT_S).state is DownloadState.DONE
    assert service.verify("pai-artist-large")


@pytest.mark.servers
def test_wrong_bytes_are_caught_deleted_and_never_loaded(server, tmp_path, tiny_repos):
    key = f"{BASE_REPO}/unet/diffusion_pytorch_model.bin"
    server.file_faults[key] = Faults(corrupt=True)
    service = make_service(tmp_path, tiny_repos)
    status = service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    assert status.state is DownloadState.FAILED and status.error_code == "checksum_mismatch"
    assert status.error_params["file"] == "unet/diffusion_pytorch_model.bin"
    snapshot = service.store.snapshot_path(BASE_REPO, server.repos[BASE_REPO].commit)
    assert (snapshot / "model_index.json").is_file()
    assert not (snapshot / "unet" / "diffusion_pytorch_model.bin").exists()
    assert state_of(service, "pai-artist-large") is ModelState.PARTIAL
    with pytest.raises(EngineError) as caught:
        service.generate(txt2img())
    assert caught.value.code == "model_incomplete"


@pytest.mark.servers
@pytest.mark.parametrize("status_code, error_code", [
    (401, "download_unauthorized"), (404, "download_repo_not_found"),
    (500, "download_server_error"),
])
def test_server_errors_have_their_own_codes(server, tmp_path, tiny_repos, no_backoff,
                                            status_code, error_code):
    server.status_for[BASE_REPO] = StatusFault(status_code)
    service = make_service(tmp_path, tiny_repos)
    status = service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    assert (status.state, status.error_code) == (DownloadState.FAILED, error_code)
    assert state_of(service, "pai-artist-large") is ModelState.MISSING


@pytest.mark.servers
def test_a_500_on_a_file_after_retries(server, tmp_path, tiny_repos, no_backoff):
    server.status_for[f"{BASE_REPO}/unet/diffusion_pytorch_model.bin"] = StatusFault(500)
    service = make_service(tmp_path, tiny_repos)
    status = service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    assert status.error_code == "download_server_error"
    assert status.error_params["status"] == "500"


@pytest.mark.servers
def test_not_enough_disk_space_fails_before_any_byte(server, tmp_path, tiny_repos,
                                                     monkeypatch):
    import engine.downloads.downloader

    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(engine.downloads.downloader.shutil, "disk_usage",
                        lambda path: usage._replace(free=1024))
    service = make_service(tmp_path, tiny_repos)
    status = service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    assert status.error_code == "disk_full"
    assert not server.requests_to("/resolve/", method="GET")


@pytest.mark.servers
def test_two_requests_share_one_download(server, served_repos, tmp_path, tiny_repos):
    server.faults = Faults(throttle_bytes_per_s=400_000)
    service = make_service(tmp_path, tiny_repos)
    first = service.download("pai-artist-large", source(server))
    second = service.download("pai-artist-large", source(server))
    assert first is second
    assert first.wait(JOB_WAIT_S).state is DownloadState.DONE
    key = f"{BASE_REPO}/unet/diffusion_pytorch_model.bin"
    size = (served_repos[BASE_REPO] / "unet" / "diffusion_pytorch_model.bin").stat().st_size
    assert server.bytes_served[key] == size


def test_offline_fails_at_once_with_size_and_advice(tmp_path, tiny_repos):
    service = make_service(tmp_path, tiny_repos, offline=True)
    with pytest.raises(EngineError) as caught:
        service.download("pai-artist-large", DownloadSource())
    assert caught.value.code == "model_not_downloaded"
    assert caught.value.params == {"name": "pai-artist-large", "repo": BASE_REPO,
                                   "size": "4.2"}


@pytest.mark.servers
def test_the_chosen_mirror_is_the_one_reached(served_repos, tmp_path, tiny_repos):
    with HubServer(served_repos) as hub, HubServer(served_repos) as mirror:
        service = make_service(tmp_path, tiny_repos)
        job = service.download("pai-artist-large-lora-poem", source(mirror))
        assert job.wait(JOB_WAIT_S).state is DownloadState.DONE
        assert mirror.requests_log and not hub.requests_log


def test_sources_from_settings_and_environment():
    assert DownloadSource.from_choice("hf-mirror").endpoint == "https://hf-mirror.com"
    assert DownloadSource.from_choice(None, environ={}).endpoint == "https://huggingface.co"
    mirror = DownloadSource.from_choice(None, environ={"HF_ENDPOINT": "https://hf-mirror.com/"})
    assert mirror.kind == "hf-mirror"
    custom = DownloadSource.from_choice("", environ={"HF_ENDPOINT": "http://10.0.0.5:8080"})
    assert (custom.kind, custom.endpoint) == ("custom", "http://10.0.0.5:8080")
    for kind, endpoint, code in [("ftp", None, "unknown_source"),
                                 ("custom", "hf-mirror.com", "invalid_endpoint")]:
        with pytest.raises(EngineError) as caught:
            DownloadSource.from_choice(kind, endpoint)
        assert caught.value.code == code


def _disk_bytes(root: Path) -> int:
    return sum(p.stat().st_size for p in root.rglob("*") if p.is_file() and not p.is_symlink())


@pytest.mark.servers
def test_conversion_to_fp16_safetensors(server, tmp_path, tiny_repos, monkeypatch):
    service = make_service(tmp_path, tiny_repos, convert_downloads=True)
    status = service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    assert status.state is DownloadState.DONE and status.error_code is None
    downloaded = sum(f.size for f in service.store.records.read("verified", BASE_REPO).files)
    on_disk = _disk_bytes(tmp_path / "cache") + _disk_bytes(tmp_path / "models")
    # The saving is real: the pickled originals are gone, only the fp16 copy takes space.
    assert 0 < status.saved_bytes and on_disk <= downloaded - status.saved_bytes + 64 * 1024
    assert not list((tmp_path / "cache").rglob("*.bin"))
    folder = service.store.resolve("pai-artist-large")
    assert (folder.parent.parent.name, folder.parent.name) == (
        "converted", "models--alibaba-pai--pai-diffusion-artist-large-zh")
    assert not list(folder.rglob("*.bin")) and list(folder.rglob("*.safetensors"))
    assert state_of(service, "pai-artist-large") is ModelState.READY
    assert service.verify("pai-artist-large")
    fetched = len(server.requests_to("/resolve/", method="GET"))
    again = service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    assert again.state is DownloadState.DONE  # converted already: nothing fetched again
    assert len(server.requests_to("/resolve/", method="GET")) == fetched
    import torch

    def no_pickles(*args, **kwargs):
        raise AssertionError("a pickle was opened")

    monkeypatch.setattr(torch, "load", no_pickles)
    assert service.generate(txt2img()).images
    assert next(s for s in service.model_statuses() if s.entry.id == "pai-artist-large").converted


@pytest.mark.servers
@pytest.mark.parametrize("part", ["unet", "text_encoder"])
def test_weights_that_do_not_load_for_conversion_mark_the_model_broken(
        served_repos, tmp_path, tiny_repos, part):
    """The hub's copy itself is damaged (its hashes match): the download is verified, but the
    model must not look ready when its weights cannot load."""
    damaged = tmp_path / "damaged"
    shutil.copytree(served_repos[BASE_REPO], damaged)
    next((damaged / part).glob("*.bin")).write_bytes(os.urandom(4096))
    service = make_service(tmp_path, tiny_repos, convert_downloads=True)
    with HubServer({BASE_REPO: damaged}) as hub:
        status = service.download("pai-artist-large", source(hub)).wait(JOB_WAIT_S)
    assert (status.state, status.error_code) == (DownloadState.DONE, "model_load_failed")
    assert state_of(service, "pai-artist-large") is ModelState.BROKEN
    assert not list((tmp_path / "cache").rglob(".converting-*"))  # no scratch left behind
    with pytest.raises(EngineError) as caught:
        service.activate("pai-artist-large")
    assert caught.value.code == "model_load_failed"


@pytest.mark.servers
def test_a_damaged_fp16_copy_fails_verify_and_a_new_download_restores_the_model(
        server, tmp_path, tiny_repos):
    service = make_service(tmp_path, tiny_repos, convert_downloads=True)
    service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    weights = next(service.store.resolve("pai-artist-large").glob("unet/*.safetensors"))
    data = bytearray(weights.read_bytes())
    data[-10] ^= 0xFF
    weights.write_bytes(bytes(data))
    assert not service.verify("pai-artist-large")
    assert state_of(service, "pai-artist-large") is ModelState.PARTIAL
    with pytest.raises(EngineError) as caught:
        service.store.resolve("pai-artist-large")
    assert caught.value.code == "model_incomplete"
    status = service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    assert status.state is DownloadState.DONE and service.verify("pai-artist-large")
    assert state_of(service, "pai-artist-large") is ModelState.READY


@pytest.mark.servers
def test_verify_notices_a_damaged_file_and_delete_removes_everything(server, tmp_path,
                                                                      tiny_repos):
    service = make_service(tmp_path, tiny_repos)
    service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    weights = service.store.cached_snapshot(BASE_REPO) / "unet" / "diffusion_pytorch_model.bin"
    blob = weights.resolve()
    data = bytearray(blob.read_bytes())
    data[100] ^= 0xFF
    blob.write_bytes(bytes(data))
    assert not service.verify("pai-artist-large")
    assert state_of(service, "pai-artist-large") is ModelState.PARTIAL
    service.delete("pai-artist-large")
    assert state_of(service, "pai-artist-large") is ModelState.MISSING
    assert not (tmp_path / "cache" / "models--alibaba-pai--pai-diffusion-artist-large-zh").exists()


@pytest.mark.servers
def test_a_killed_download_process_restarts_cleanly(server, tmp_path, tiny_repos):
    """``python -m engine download`` killed mid-file; the next run finishes and verifies."""
    server.faults = Faults(throttle_bytes_per_s=100_000)
    command = [sys.executable, "-m", "engine", "download", "pai-artist-large", "--source",
               "custom", "--endpoint", server.endpoint, "--allow-private-endpoint",
               "--cache-dir", str(tmp_path / "cache"),
               "--models-dir", str(tmp_path / "models"), "--no-convert"]
    env = {**os.environ, "HF_HUB_OFFLINE": "0"}
    process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
    try:
        server.wait_for_bytes(f"{BASE_REPO}/unet/diffusion_pytorch_model.bin", 50_000,
                              timeout=JOB_WAIT_S)
    finally:
        process.kill()
        process.communicate()
    service = make_service(tmp_path, tiny_repos)
    assert state_of(service, "pai-artist-large") is ModelState.PARTIAL
    server.faults = Faults()
    completed = subprocess.run(command, cwd=ROOT, env=env, capture_output=True, text=True,
                               timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "已下载并校验完成" in completed.stdout
    assert state_of(service, "pai-artist-large") is ModelState.READY
    assert service.verify("pai-artist-large")


@pytest.mark.servers
def test_the_source_is_recorded_and_shown(server, tmp_path, tiny_repos):
    from ui.models_tab import status_rows

    service = make_service(tmp_path, tiny_repos)
    service.download("pai-artist-large-lora-poem", source(server)).wait(JOB_WAIT_S)
    status = next(s for s in service.model_statuses() if s.entry.id == "pai-artist-large-lora-poem")
    assert status.source == server.endpoint
    row = next(r for r in status_rows([status], "zh-CN"))
    assert row[4] == server.endpoint.split("://", 1)[1]


def test_import_from_a_local_folder(tmp_path, tiny_repos, served_repos):
    from ui.models_tab import status_rows

    service = make_service(tmp_path, tiny_repos)
    job = service.import_folder("pai-artist-large", served_repos[BASE_REPO])
    assert job.wait(JOB_WAIT_S).state is DownloadState.DONE
    snapshot = service.store.cached_snapshot(BASE_REPO)
    assert not (snapshot / "safety_checker").exists() and not (snapshot / "example.png").exists()
    assert service.verify("pai-artist-large") and service.generate(txt2img()).images
    status = next(s for s in service.model_statuses() if s.entry.id == "pai-artist-large")
    assert status_rows([status], "zh-CN")[0][4] == "本地文件夹"
    again = service.import_folder("pai-artist-large", served_repos[BASE_REPO])
    assert again.wait(JOB_WAIT_S).state is DownloadState.DONE
    assert service.store.cached_snapshot(BASE_REPO) == snapshot  # same content, same commit


def test_import_refuses_a_folder_that_is_not_the_model(tmp_path, tiny_repos, served_repos):
    service = make_service(tmp_path, tiny_repos)
    status = service.import_folder("pai-artist-large", served_repos[LORA_REPO]).wait(JOB_WAIT_S)
    assert (status.state, status.error_code) == (DownloadState.FAILED, "import_folder_invalid")
    assert state_of(service, "pai-artist-large") is ModelState.MISSING


@pytest.mark.servers
def test_sd_models_reports_the_verified_hash(server, tmp_path, tiny_repos, served_repos):
    import hashlib

    from fastapi import FastAPI
    from fastapi.testclient import TestClient

    from api.routes import ApiOptions, install

    service = make_service(tmp_path, tiny_repos)
    service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    app = FastAPI()
    install(app, service, ApiOptions())
    models = {m["title"]: m for m in TestClient(app).get("/sdapi/v1/sd-models").json()}
    unet = served_repos[BASE_REPO] / "unet" / "diffusion_pytorch_model.bin"
    expected = hashlib.sha256(unet.read_bytes()).hexdigest()
    assert models["pai-artist-large"]["sha256"] == expected
    assert models["pai-artist-large"]["hash"] == expected[:10]
    assert models["pai-food-large"]["hash"] is None
    result = service.generate(txt2img())
    assert result.images[0].parameters["model_hash"] == expected[:10]


@pytest.mark.servers
def test_the_hub_token_never_goes_to_a_mirror(server, tmp_path, tiny_repos, monkeypatch):
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")
    service = make_service(tmp_path, tiny_repos)
    service.download("pai-artist-large-lora-poem", source(server)).wait(JOB_WAIT_S)
    assert server.requests_log
    assert not any("authorization" in r.headers for r in server.requests_log)


@pytest.mark.servers
def test_a_failed_newer_download_leaves_the_older_model_working(server, tmp_path, tiny_repos):
    from engine.store.files import DownloadPlan

    service = make_service(tmp_path, tiny_repos)
    service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    service.store.records.write("pending", DownloadPlan(BASE_REPO, "f" * 40, ()))
    assert state_of(service, "pai-artist-large") is ModelState.READY
    assert service.generate(txt2img()).images


def _txt2img_command(server, tmp_path, *extra):
    return ["txt2img", "--model", "pai-artist-large", "--prompt", "山", "--steps", "2",
            "--width", "64", "--height", "64", "--device", "cpu", "--precision", "fp32",
            "--source", "custom", "--endpoint", server.endpoint, "--allow-private-endpoint",
            "--cache-dir", str(tmp_path / "cache"), "--models-dir", str(tmp_path / "models"),
            "--out", str(tmp_path / "out.png"), "--no-convert", *extra]


@pytest.mark.servers
def test_cli_asks_before_downloading_a_missing_model_on_first_use(
        server, tmp_path, monkeypatch, capsys):
    from engine.cli import main

    # Not a terminal and no --download: no consent, so nothing is fetched.
    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert main(_txt2img_command(server, tmp_path)) == 2
    assert "尚未下载" in capsys.readouterr().err
    assert not server.requests_to("/api/models/")
    # On a terminal the user is asked; "n" keeps everything as it was.
    questions = []
    monkeypatch.setattr(sys.stdin, "isatty", lambda: True)
    monkeypatch.setattr("builtins.input", lambda q: questions.append(q) or "n")
    assert main(_txt2img_command(server, tmp_path)) == 2
    assert "pai-artist-large" in questions[0] and "4.2 GB" in questions[0]
    assert not server.requests_to("/api/models/")
    # "y": downloaded, verified, then the image is made.
    monkeypatch.setattr("builtins.input", lambda q: "y")
    assert main(_txt2img_command(server, tmp_path)) == 0
    assert (tmp_path / "out.png").is_file()
    assert "已下载并校验完成" in capsys.readouterr().out


@pytest.mark.servers
def test_cli_download_flag_gives_consent_up_front(server, tmp_path, monkeypatch):
    from engine.cli import main

    monkeypatch.setattr(sys.stdin, "isatty", lambda: False)
    assert main(_txt2img_command(server, tmp_path, "--download")) == 0
    assert (tmp_path / "out.png").is_file()


@pytest.mark.servers
def test_the_manifests_known_hash_decides_over_what_the_source_says(server, served_repos,
                                                                    tmp_path, tiny_repos):
    import hashlib

    service = make_service(tmp_path, tiny_repos)
    weights = served_repos[LORA_REPO] / "pytorch_lora_weights.bin"
    real = hashlib.sha256(weights.read_bytes()).hexdigest()

    def pin(value: str) -> None:
        models = tuple(e.model_copy(update={"sha256": {"pytorch_lora_weights.bin": value}})
                       if e.repo == LORA_REPO else e for e in service.manifest.models)
        service.downloader.manifest = service.manifest.model_copy(update={"models": models})

    # The server's bytes match its own advertised hash, but not the one the manifest knows.
    pin("0" * 64)
    status = service.download("pai-artist-large-lora-poem", source(server)).wait(JOB_WAIT_S)
    assert (status.state, status.error_code) == (DownloadState.FAILED, "checksum_mismatch")
    assert state_of(service, "pai-artist-large-lora-poem") is not ModelState.READY
    pin(real)
    status = service.download("pai-artist-large-lora-poem", source(server)).wait(JOB_WAIT_S)
    assert status.state is DownloadState.DONE
    record = service.store.records.read("verified", LORA_REPO)
    assert {f.path: f.sha256 for f in record.files}["pytorch_lora_weights.bin"] == real


@pytest.mark.servers
def test_a_disk_that_fills_up_mid_file_says_so_and_keeps_the_app_working(
        server, tmp_path, tiny_repos, monkeypatch):
    import errno

    from huggingface_hub import file_download

    real_http_get = file_download.http_get

    def filling_disk(url, handle, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(file_download, "http_get", filling_disk)
    service = make_service(tmp_path, tiny_repos)
    status = service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    assert (status.state, status.error_code) == (DownloadState.FAILED, "disk_full")
    assert state_of(service, "pai-artist-large") is ModelState.PARTIAL
    monkeypatch.setattr(file_download, "http_get", real_http_get)  # space freed
    status = service.download("pai-artist-large", source(server)).wait(JOB_WAIT_S)
    assert status.state is DownloadState.DONE and service.verify("pai-artist-large")


@pytest.mark.servers
def test_verify_waits_for_its_turn_while_files_arrive_or_another_process_works(
        server, tmp_path, tiny_repos):
    server.faults = Faults(throttle_bytes_per_s=200_000)
    service = make_service(tmp_path, tiny_repos)
    job = service.download("pai-artist-large", source(server))
    assert server.wait_for_bytes(f"{BASE_REPO}/text_encoder/pytorch_model.bin", 10_000,
                                 timeout=JOB_WAIT_S)
    with pytest.raises(EngineError) as caught:
        service.verify("pai-artist-large")  # mid-download: nothing to judge yet
    assert caught.value.code == "model_busy"
    server.faults = Faults()
    assert job.wait(JOB_WAIT_S).state is DownloadState.DONE
    with service.store.records.lock(BASE_REPO):  # as the CLI would, in another process
        with pytest.raises(EngineError) as caught:
            service.verify("pai-artist-large")
        assert caught.value.code == "model_busy"
    assert service.verify("pai-artist-large")


@pytest.mark.servers
def test_two_processes_downloading_one_model_fetch_it_once(server, served_repos, tmp_path,
                                                           tiny_repos):
    server.faults = Faults(throttle_bytes_per_s=400_000)
    app = make_service(tmp_path, tiny_repos)
    cli = make_service(tmp_path, tiny_repos)  # its own Downloader, the same cache
    first = app.download("pai-artist-large", source(server))
    second = cli.download("pai-artist-large", source(server))
    assert first is not second
    assert first.wait(JOB_WAIT_S).state is DownloadState.DONE
    assert second.wait(JOB_WAIT_S).state is DownloadState.DONE
    server.wait_idle()
    for name in ("unet/diffusion_pytorch_model.bin", "text_encoder/pytorch_model.bin"):
        size = (served_repos[BASE_REPO] / name).stat().st_size
        assert server.bytes_served[f"{BASE_REPO}/{name}"] == size
    assert app.verify("pai-artist-large") and cli.verify("pai-artist-large")


@pytest.mark.servers
def test_a_converted_model_loads_from_any_models_folder(server, tmp_path, tiny_repos):
    service = make_service(tmp_path, tiny_repos, convert_downloads=True)
    assert service.download("pai-artist-large", source(server)).wait(
        JOB_WAIT_S).state is DownloadState.DONE
    # The originals left the shared cache, so the copy must not live in one models folder.
    other = make_service(tmp_path, tiny_repos, models_dir=tmp_path / "elsewhere")
    assert state_of(other, "pai-artist-large") is ModelState.READY
    assert other.verify("pai-artist-large")
    assert other.generate(txt2img()).images
