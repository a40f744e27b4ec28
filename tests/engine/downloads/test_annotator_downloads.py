"""Preprocessor (annotator) weights come only through the store: asked for, from the chosen
source, SHA-256 verified, no hub token to a mirror; a preprocessor never fetches anything.

A local hub server serves the tiny ``lllyasviel/Annotators`` replica and also stands in for the
``HF_ENDPOINT`` mirror of the environment, with ``HF_TOKEN`` set: the two ways a detector's own
``from_pretrained(repo)`` used to download without asking and send the token along.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from huggingface_hub import constants
from PIL import Image

from engine.downloads.jobs import DownloadState
from engine.downloads.sources import DownloadSource
from engine.errors import EngineError
from engine.generate.aux_annotators import ANNOTATORS_REPO
from engine.requests import ControlSpec
from engine.service import ImageService
from engine.settings import DEFAULT_MANIFEST
from engine.store.catalog import ModelState
from engine.store.manifest import load_manifest
from tests.support.hub_server import Faults, HubServer
from tests.support.tiny_repos import make_settings

JOB_WAIT_S = 120
LINEART = "annotator-lineart"

# Importing controlnet-aux warns about optional packages and timm renames; not ours to fix.
# Every test downloads from a local hub server (the tiny repos make them `engine` tests too).
pytestmark = [
    pytest.mark.filterwarnings(f"ignore::{category}:{module}")
    for category in ("UserWarning", "FutureWarning", "DeprecationWarning")
    for module in ("controlnet_aux", "timm", "torch")
] + [pytest.mark.servers]


@pytest.fixture
def server(tiny_repos):
    with HubServer({ANNOTATORS_REPO: tiny_repos.annotators}) as hub:
        yield hub


@pytest.fixture
def mirror_environment(server, monkeypatch):
    """Online, HF_ENDPOINT pointing at the local server, and a hub token in the environment."""
    monkeypatch.setenv("HF_HUB_OFFLINE", "0")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)
    monkeypatch.setattr(constants, "HF_HUB_DOWNLOAD_TIMEOUT", 5)
    monkeypatch.setenv("HF_ENDPOINT", server.endpoint)
    monkeypatch.setattr(constants, "ENDPOINT", server.endpoint)
    monkeypatch.setattr(constants, "HUGGINGFACE_CO_URL_TEMPLATE",
                        server.endpoint + "/{repo_id}/resolve/{revision}/{filename}")
    monkeypatch.setenv("HF_TOKEN", "hf_secret_token")


def make_service(tmp_path: Path, tiny_repos) -> ImageService:
    settings = make_settings(tiny_repos, hub_cache_dir=tmp_path / "cache",
                             models_dir=tmp_path / "models", offline=False,
                             convert_downloads=False)
    return ImageService(settings, load_manifest(DEFAULT_MANIFEST))


def lineart_spec() -> ControlSpec:
    pixels = np.random.default_rng(4).integers(0, 256, (96, 128, 3)).astype(np.uint8)
    return ControlSpec(model="pai-artist-large-controlnet-canny", control_type="lineart",
                       image=Image.fromarray(pixels))


def state_of(service: ImageService, model_id: str) -> ModelState:
    return next(s.state for s in service.model_statuses() if s.entry.id == model_id)


def test_a_preprocessor_without_its_weights_asks_and_reaches_no_server(
        mirror_environment, server, tmp_path, tiny_repos):
    service = make_service(tmp_path, tiny_repos)
    with pytest.raises(EngineError) as caught:
        service.preprocess(lineart_spec())
    assert caught.value.code == "model_not_downloaded"  # the UI and the CLI offer a download
    assert caught.value.params["name"] == LINEART
    assert server.requests_log == []


def test_weights_download_verified_without_the_token_then_work_offline(
        mirror_environment, server, tmp_path, tiny_repos, monkeypatch):
    import hashlib

    service = make_service(tmp_path, tiny_repos)
    source = DownloadSource.from_choice(None, environ={"HF_ENDPOINT": server.endpoint})
    status = service.download(LINEART, source).wait(JOB_WAIT_S)
    assert status.state is DownloadState.DONE, status
    assert server.requests_log
    assert not any("authorization" in r.headers for r in server.requests_log)
    fetched = {r.path.rsplit("/", 1)[1] for r in server.requests_to("/resolve/", method="GET")}
    assert fetched == {"sk_model.pth", "sk_model2.pth"}  # not every detector's weights
    entry = service.manifest.get(LINEART)
    record = service.store.records.read("verified", entry.cache_repo)
    assert {f.path: f.sha256 for f in record.files} == {
        name: hashlib.sha256((tiny_repos.annotators / name).read_bytes()).hexdigest()
        for name in entry.files}
    assert state_of(service, LINEART) is ModelState.READY and service.verify(LINEART)

    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", False)  # "online" does not matter now
    before = len(server.requests_log)
    result = service.preprocess(lineart_spec())
    assert result.size == (128, 96) and result.mode == "RGB"
    assert len(server.requests_log) == before


def test_a_corrupted_weight_file_from_the_mirror_is_refused(mirror_environment, server,
                                                            tmp_path, tiny_repos):
    server.file_faults[f"{ANNOTATORS_REPO}/sk_model2.pth"] = Faults(corrupt=True)
    service = make_service(tmp_path, tiny_repos)
    status = service.download(LINEART, DownloadSource.from_choice("custom", server.endpoint,
                                                                  allow_private=True)
                              ).wait(JOB_WAIT_S)
    assert (status.state, status.error_code) == (DownloadState.FAILED, "checksum_mismatch")
    assert status.error_params["file"] == "sk_model2.pth"
    assert state_of(service, LINEART) is ModelState.PARTIAL
    with pytest.raises(EngineError) as caught:
        service.preprocess(lineart_spec())
    assert caught.value.code == "model_incomplete"


def test_each_detectors_weights_are_a_model_of_their_own(mirror_environment, server, tmp_path,
                                                        tiny_repos):
    """Deleting one detector's weights leaves another's downloaded and verified."""
    service = make_service(tmp_path, tiny_repos)
    source = DownloadSource.from_choice("custom", server.endpoint, allow_private=True)
    for model_id in (LINEART, "annotator-mlsd"):
        assert service.download(model_id, source).wait(JOB_WAIT_S).state is DownloadState.DONE
    service.delete(LINEART)
    assert state_of(service, LINEART) is ModelState.MISSING
    assert state_of(service, "annotator-mlsd") is ModelState.READY
    assert service.verify("annotator-mlsd")
    statuses = {s.entry.id: s for s in service.model_statuses()}
    mlsd_size = (tiny_repos.annotators / "mlsd_large_512_fp32.pth").stat().st_size
    assert statuses["annotator-mlsd"].size_bytes == mlsd_size


def test_the_cli_downloads_preprocessor_weights_by_their_id(mirror_environment, server,
                                                            tmp_path, tiny_repos, capsys):
    from engine.cli import main

    assert main(["download", LINEART, "--source", "custom", "--endpoint", server.endpoint,
                 "--allow-private-endpoint", "--cache-dir", str(tmp_path / "cache"),
                 "--models-dir", str(tmp_path / "models"),
                 "--no-convert"]) == 0
    assert "已下载并校验完成" in capsys.readouterr().out
    assert state_of(make_service(tmp_path, tiny_repos), LINEART) is ModelState.READY
