"""Finding and loading models: ids, hub ids, folders, and clear errors for everything else."""

from __future__ import annotations

import shutil

import pytest
import torch

from engine.errors import EngineError
from engine.generate.devices import pick_placement
from engine.generate.engine import Engine
from tests.support.helpers import run, txt2img
from tests.support.tiny_repos import make_settings


def _code(engine, **changes) -> str:
    with pytest.raises(EngineError) as caught:
        run(engine, txt2img(**changes))
    return caught.value.code


def test_hub_id_and_manifest_id_find_the_same_cached_snapshot(engine):
    by_id = engine.store.base_folder("pai-artist-large")
    by_repo = engine.store.base_folder("alibaba-pai/pai-diffusion-artist-large-zh")
    assert by_id == by_repo and by_id.parent.name == "snapshots"


def test_unknown_names_and_missing_downloads(engine, tmp_path):
    assert _code(engine, model="no such model") == "unknown_model"
    assert _code(engine, model="someone/not-cached") == "model_not_downloaded"
    assert _code(engine, model="pai-anime-large") == "model_not_downloaded"
    assert _code(engine, model=str(tmp_path)) == "unknown_model"  # not in models/checkpoints
    assert run(engine, txt2img()).images  # still usable


def test_folders_anywhere_only_from_the_command_line(tiny_repos, tmp_path):
    command_line = Engine(make_settings(tiny_repos, allow_file_paths=True))
    assert _code(command_line, model=str(tmp_path)) == "model_folder_invalid"


def test_truncated_weights_fail_cleanly(tiny_repos, tmp_path):
    command_line = Engine(make_settings(tiny_repos, allow_file_paths=True))
    folder = tmp_path / "broken"
    shutil.copytree(tiny_repos.pai_base, folder)
    weights = folder / "unet" / "diffusion_pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[:1000])
    assert _code(command_line, model=str(folder)) == "model_load_failed"
    assert run(command_line, txt2img()).images


def test_weights_only_override_refuses_to_load_pickled_models(tiny_repos, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "true")
    assert _code(Engine(make_settings(tiny_repos))) == "weights_only_disabled"


def test_placement_defaults_and_overrides():
    assert pick_placement("cpu", "auto").dtype == torch.float32
    assert pick_placement("cpu", "bf16").dtype == torch.bfloat16
    if not torch.cuda.is_available():
        assert pick_placement("auto", "auto").device.type == "cpu"
        with pytest.raises(EngineError) as caught:
            pick_placement("cuda", "auto")
        assert caught.value.code == "device_unavailable"
    for device, precision, code in [("tpu", "auto", "unknown_device"),
                                    ("cpu", "fp8", "unknown_precision")]:
        with pytest.raises(EngineError) as caught:
            pick_placement(device, precision)
        assert caught.value.code == code


def test_bf16_engine_generates(tiny_repos):
    engine = Engine(make_settings(tiny_repos, precision="bf16"))
    result = run(engine, txt2img())
    assert result.images[0].parameters["precision"] == "bf16"
    assert engine.pipelines.base("pai-artist-large").pipe.unet.dtype == torch.bfloat16
