"""``python -m engine download`` as the README shows it: ``--from-folder PATH`` installs a copy
of a model where the store finds it, and refuses (installing nothing) a folder that lacks a file
or holds a damaged one; Ctrl-C cancels a download cleanly, and the next run completes it.

The folder is a copy of the tiny PAI replica; downloads come from ``HubServer`` on 127.0.0.1 as
a custom hub-compatible source (standing in for ``--source hf-mirror``).
"""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from engine.cli import main as cli_main
from engine.errors import EngineError
from engine.generate.engine import Engine
from engine.service import ImageService
from engine.settings import DEFAULT_MANIFEST
from engine.store.catalog import ModelState
from engine.store.manifest import Manifest, load_manifest
from locales import error_text, translate
from tests.support.helpers import run, txt2img
from tests.support.hub_server import Faults, HubServer
from tests.support.tiny_repos import make_settings

ROOT = Path(__file__).resolve().parents[2]
BASE = "pai-artist-large"
BASE_REPO = "alibaba-pai/pai-diffusion-artist-large-zh"
ZH = "zh-CN"
WEIGHTS = "unet/diffusion_pytorch_model.bin"
SLOW_FILE = "text_encoder/pytorch_model.bin"  # the first large file the download fetches
# Slow enough that the file would take minutes: a process that waits for it to finish after
# Ctrl-C does not leave within EXIT_WAIT_S.
SLOW_BYTES_PER_S = 16 * 1024
BYTES_BEFORE_CTRL_C = 32 * 1024
START_WAIT_S = 120  # the process imports the engine, lists the repo, then fetches
EXIT_WAIT_S = 30
RUN_WAIT_S = 300


# -- helpers ----------------------------------------------------------------------------------

def store_view(repos, cache: Path, models: Path) -> ImageService:
    """What the app would see in that cache and models folder (offline, nothing started)."""
    return ImageService(make_settings(repos, hub_cache_dir=cache, models_dir=models),
                        load_manifest(DEFAULT_MANIFEST))


def state_of(service: ImageService, model_id: str = BASE) -> ModelState:
    return next(s.state for s in service.model_statuses() if s.entry.id == model_id)


def refused_code(service: ImageService) -> str | None:
    """The store's answer when the model is asked for: None when it hands out a folder."""
    try:
        service.store.base_folder(BASE)
    except EngineError as error:
        return error.code
    return None


def sha256_pins(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in folder.rglob("*") if p.is_file()}


def with_pins(manifest: Manifest, pins: dict[str, str]) -> Manifest:
    models = tuple(e.model_copy(update={"sha256": pins}) if e.id == BASE else e
                   for e in manifest.models)
    return manifest.model_copy(update={"models": models})


def import_args(folder: Path, cache: Path, models: Path) -> list[str]:
    return ["download", BASE, "--from-folder", str(folder), "--cache-dir", str(cache),
            "--models-dir", str(models)]


def done_text() -> str:
    """What both success messages (converted or kept as downloaded) begin with."""
    return translate(ZH, "cli.download_verified", name=BASE)


@pytest.fixture
def copy_of_model(tiny_repos, tmp_path) -> Path:
    """A copy of the model as someone would bring it from another machine."""
    return Path(shutil.copytree(tiny_repos.pai_base, tmp_path / "copy" / BASE))


@pytest.fixture
def pinned_manifest(tiny_repos, monkeypatch) -> None:
    """The shipped manifest, knowing the true SHA-256 of the model's files (as a release of the
    manifest pins them): a damaged file in a folder can then be told from a good one."""
    import engine.store.manifest

    pins = sha256_pins(tiny_repos.pai_base)
    shipped = engine.store.manifest.load_manifest
    monkeypatch.setattr(engine.store.manifest, "load_manifest",
                        lambda path: with_pins(shipped(path), pins))


# -- --from-folder ---------------------------------------------------------------------------

def test_from_folder_installs_the_model_where_the_store_finds_it(tiny_repos, tmp_path,
                                                                  copy_of_model, capsys):
    cache, models = tmp_path / "cache", tmp_path / "models"
    assert state_of(store_view(tiny_repos, cache, models)) is ModelState.MISSING

    assert cli_main(import_args(copy_of_model, cache, models)) == 0

    printed = capsys.readouterr()
    assert done_text() in printed.out and "Traceback" not in printed.err
    service = store_view(tiny_repos, cache, models)
    assert state_of(service) is ModelState.READY and refused_code(service) is None
    assert service.verify(BASE)
    engine = Engine(make_settings(tiny_repos, hub_cache_dir=cache, models_dir=models))
    assert run(engine, txt2img(steps=2)).images


def test_from_folder_refuses_a_folder_missing_a_required_file(tiny_repos, tmp_path,
                                                              copy_of_model, capsys):
    cache, models = tmp_path / "cache", tmp_path / "models"
    (copy_of_model / WEIGHTS).unlink()

    assert cli_main(import_args(copy_of_model, cache, models)) == 2

    err = capsys.readouterr().err
    message = error_text(ZH, "import_folder_invalid", {"name": BASE, "folder": copy_of_model})
    assert translate(ZH, "cli.error", message=message) in err and "Traceback" not in err
    service = store_view(tiny_repos, cache, models)
    assert state_of(service) is ModelState.MISSING
    assert refused_code(service) == "model_not_downloaded"
    assert service.store.cached_snapshot(BASE_REPO) is None  # not one file copied


def test_from_folder_refuses_a_damaged_file_and_installs_nothing(tiny_repos, tmp_path,
                                                                 copy_of_model, pinned_manifest,
                                                                 capsys):
    cache, models = tmp_path / "cache", tmp_path / "models"
    damaged = copy_of_model / WEIGHTS
    damaged.write_bytes(bytes(b ^ 0xFF for b in damaged.read_bytes()))  # same size

    assert cli_main(import_args(copy_of_model, cache, models)) == 2

    err = capsys.readouterr().err
    message = error_text(ZH, "checksum_mismatch", {"repo": BASE_REPO, "file": WEIGHTS})
    assert translate(ZH, "cli.error", message=message) in err and "Traceback" not in err
    service = store_view(tiny_repos, cache, models)
    assert state_of(service) is not ModelState.READY and not service.verify(BASE)
    assert refused_code(service) == "model_incomplete"
    snapshot = next((cache / f"models--{BASE_REPO.replace('/', '--')}").glob("snapshots/*"))
    assert not (snapshot / WEIGHTS).exists()  # the damaged copy was deleted
    assert damaged.is_file()  # the user's folder is left as it was

    shutil.copyfile(tiny_repos.pai_base / WEIGHTS, damaged)  # a good copy: now it installs
    assert cli_main(import_args(copy_of_model, cache, models)) == 0
    service = store_view(tiny_repos, cache, models)
    assert state_of(service) is ModelState.READY and service.verify(BASE)


# -- Ctrl-C ----------------------------------------------------------------------------------

# Python turns SIGINT into KeyboardInterrupt only when it starts with SIGINT at its default; a
# test run started in the background (``cmd &``, some CI runners) hands its children SIGINT
# ignored, and Ctrl-C would never arrive. A user's terminal gives the default, as this does.
WITH_CTRL_C = ("import runpy, signal, sys;"
               " signal.signal(signal.SIGINT, signal.default_int_handler);"
               " sys.argv[0] = 'engine'; runpy.run_module('engine', run_name='__main__')")


def download_command(endpoint: str, cache: Path, models: Path) -> list[str]:
    return [sys.executable, "-c", WITH_CTRL_C, "download", BASE, "--source", "custom",
            "--endpoint", endpoint, "--allow-private-endpoint", "--cache-dir", str(cache),
            "--models-dir", str(models)]


def online_environment() -> dict[str, str]:
    """This machine's environment, but online (for 127.0.0.1 only) and with no hub settings
    that could point elsewhere."""
    env = {k: v for k, v in os.environ.items()
           if k not in ("HF_ENDPOINT", "HF_TOKEN", "HF_HUB_ENABLE_HF_TRANSFER")}
    env.update(HF_HUB_OFFLINE="0", HF_HUB_DISABLE_TELEMETRY="1", PYTHONUNBUFFERED="1")
    return env


def wait_for_transfer(server: HubServer, process: subprocess.Popen, key: str) -> None:
    """Until ``BYTES_BEFORE_CTRL_C`` of ``key`` went out; fails if the process ends first."""
    deadline = time.monotonic() + START_WAIT_S
    while not server.wait_for_bytes(key, BYTES_BEFORE_CTRL_C, timeout=1):
        if process.poll() is not None:
            out, err = process.communicate()
            pytest.fail(f"the download ended ({process.returncode}) before any bytes:\n{err}")
        assert time.monotonic() < deadline, "the download never started"


def interrupt(process: subprocess.Popen) -> tuple[int | None, str, str]:
    """Ctrl-C; the exit code (None when it did not leave in EXIT_WAIT_S), stdout, stderr."""
    process.send_signal(signal.SIGINT)
    try:
        out, err = process.communicate(timeout=EXIT_WAIT_S)
    except subprocess.TimeoutExpired:
        process.kill()
        out, err = process.communicate()
        return None, out, err
    return process.returncode, out, err


@pytest.fixture
def hub(tiny_repos):
    with HubServer({BASE_REPO: tiny_repos.pai_base}) as server:
        yield server


@pytest.mark.servers
def test_ctrl_c_cancels_a_download_cleanly_and_the_next_run_completes(tiny_repos, tmp_path,
                                                                      hub):
    cache, models = tmp_path / "cache", tmp_path / "models"
    command = download_command(hub.endpoint, cache, models)
    key = f"{BASE_REPO}/{SLOW_FILE}"
    hub.file_faults[key] = Faults(throttle_bytes_per_s=SLOW_BYTES_PER_S)
    process = subprocess.Popen(command, cwd=ROOT, env=online_environment(), text=True,
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_for_transfer(hub, process, key)
        code, out, err = interrupt(process)
    finally:
        if process.poll() is None:
            process.kill()
            process.communicate()

    assert code is not None, f"still running {EXIT_WAIT_S} s after Ctrl-C:\n{err}"
    assert code == 130, err
    assert translate(ZH, "cli.download_cancelled") in err
    assert "Traceback" not in err and done_text() not in out
    service = store_view(tiny_repos, cache, models)
    assert state_of(service) is not ModelState.READY and not service.verify(BASE)
    assert refused_code(service) == "model_incomplete"

    hub.file_faults.clear()
    again = subprocess.run(command, cwd=ROOT, env=online_environment(), text=True,
                           capture_output=True, timeout=RUN_WAIT_S)
    assert again.returncode == 0, again.stderr
    assert done_text() in again.stdout
    service = store_view(tiny_repos, cache, models)
    assert state_of(service) is ModelState.READY and service.verify(BASE)
    assert refused_code(service) is None
