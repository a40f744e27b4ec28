"""README: ``.ckpt`` 等 pickle 文件会列出但拒绝加载 (pickled user files are listed but never
loaded). A ``.ckpt`` in ``models/checkpoints`` is listed with the reason, and naming it, to the
engine, the command line or the HTTP API, is refused with ``checkpoint_pickle`` before anything
opens it: the file here is a pickle whose unpickling would create a marker file.
"""

from __future__ import annotations

import dataclasses
import pathlib
from pathlib import Path

import pytest
import torch
from fastapi import FastAPI
from fastapi.testclient import TestClient

from api.routes import ApiOptions, install
from engine.cli import main as cli_main
from engine.errors import EngineError
from engine.generate.engine import Engine
from engine.service import ImageService
from engine.settings import DEFAULT_MANIFEST
from engine.store.catalog import LocalKind
from engine.store.manifest import load_manifest
from locales import error_text
from tests.support.helpers import run, txt2img
from tests.support.tiny_repos import make_settings

CKPT = "evil.ckpt"
SMALL = {"prompt": "山", "steps": 2, "width": 64, "height": 64}


class RunsCode:
    """Unpickling this creates ``marker``: the visible side effect of running a pickle."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (pathlib.Path.touch, (self.marker,))


def code_running_checkpoint(path: Path, marker: Path) -> Path:
    """A ``.ckpt`` as A1111 checkpoints are saved (``torch.save`` of a dict)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": RunsCode(marker)}, path)
    return path


@dataclasses.dataclass(frozen=True)
class Planted:
    models_dir: Path
    ckpt: Path
    marker: Path


@pytest.fixture
def planted(tmp_path) -> Planted:
    marker = tmp_path / "the-pickle-ran"
    ckpt = code_running_checkpoint(tmp_path / "models" / "checkpoints" / CKPT, marker)
    assert not marker.exists()
    return Planted(tmp_path / "models", ckpt, marker)


def test_the_planted_checkpoint_runs_code_when_unpickled(tmp_path):
    marker = tmp_path / "ran"
    ckpt = code_running_checkpoint(tmp_path / "probe.ckpt", marker)
    torch.load(ckpt, weights_only=False)
    assert marker.exists()  # so the tests below would see an unpickling


def test_a_ckpt_is_listed_with_the_reason_but_not_offered(tiny_repos, planted):
    service = ImageService(make_settings(tiny_repos, models_dir=planted.models_dir),
                           load_manifest(DEFAULT_MANIFEST))
    [status] = [s for s in service.local_model_statuses() if s.path.name == CKPT]
    assert (status.kind, status.problem) == (LocalKind.SINGLE_FILE, "checkpoint_pickle")
    assert CKPT not in service.local_model_names()
    assert not planted.marker.exists()


def test_the_engine_refuses_a_ckpt_without_unpickling_it(tiny_repos, planted):
    engine = Engine(make_settings(tiny_repos, models_dir=planted.models_dir))
    for reference in (CKPT, str(planted.ckpt)):
        with pytest.raises(EngineError) as caught:
            run(engine, txt2img(model=reference))
        assert not planted.marker.exists()
        assert (caught.value.code, caught.value.params) == ("checkpoint_pickle",
                                                            {"name": CKPT}), reference


def test_the_command_line_refuses_a_ckpt_path_without_unpickling_it(tiny_repos, planted,
                                                                    tmp_path, capsys):
    elsewhere = code_running_checkpoint(tmp_path / "downloads" / "other.ckpt", planted.marker)
    out = tmp_path / "out.png"
    for path, name in ((planted.ckpt, CKPT), (elsewhere, "other.ckpt")):
        code = cli_main(["txt2img", "--model", str(path), "--prompt", "山", "--out", str(out),
                         "--cache-dir", str(tiny_repos.hub_cache), "--models-dir",
                         str(planted.models_dir), "--offline", "--device", "cpu",
                         "--steps", "2", "--width", "64", "--height", "64"])
        assert not planted.marker.exists()
        assert code == 2
        assert error_text("zh-CN", "checkpoint_pickle", {"name": name}) in capsys.readouterr().err
    assert not out.exists()


def _answer(response) -> tuple[int, str, str]:
    body = response.json()
    return response.status_code, body.get("error"), body.get("detail")


def test_the_api_refuses_to_switch_to_or_generate_with_a_ckpt(tiny_repos, planted):
    service = ImageService(make_settings(tiny_repos, models_dir=planted.models_dir),
                           load_manifest(DEFAULT_MANIFEST))
    service.start(preload=False)
    app = FastAPI()
    install(app, service, ApiOptions())
    client = TestClient(app)
    active = service.active_model
    refusal = (400, "checkpoint_pickle", error_text("zh-CN", "checkpoint_pickle", {"name": CKPT}))

    assert CKPT not in {m["title"] for m in client.get("/sdapi/v1/sd-models").json()}
    switched = client.post("/sdapi/v1/options", json={"sd_model_checkpoint": CKPT})
    assert not planted.marker.exists()
    assert _answer(switched) == refusal
    generated = client.post("/sdapi/v1/txt2img", json={
        **SMALL, "override_settings": {"sd_model_checkpoint": CKPT}})
    assert _answer(generated) == refusal
    assert service.active_model == active
    assert not planted.marker.exists()
