"""LoRAs in all three formats: each changes the image, follows its weight, and unloads exactly."""

from __future__ import annotations

import shutil

import numpy as np
import pytest
import torch

from engine.errors import EngineError
from engine.generate.engine import Engine
from engine.generate.lora import LoraFormat, detect_format, read_lora_file
from engine.requests import LoraWeight
from tests.support.helpers import difference, run, txt2img
from tests.support.tiny_repos import make_settings

POEM = "pai-artist-large-lora-poem"


@pytest.fixture
def fresh_engine(tiny_repos):
    """Its own engine, so adapter state and load counts start from nothing."""
    return Engine(make_settings(tiny_repos))


def _unet_weights(engine) -> dict[str, torch.Tensor]:
    unet = engine.pipelines.base("pai-artist-large").pipe.unet
    return {name: value.clone() for name, value in unet.state_dict().items()}


def _lora_names(repos) -> dict[str, str]:
    return {"pai_legacy": POEM, "diffusers": "ink", "kohya": "kohya-style"}


def test_formats_are_detected_from_the_keys(tiny_repos):
    legacy_file = tiny_repos.hub_cache.glob("models--*lora-poem/snapshots/*/*.bin")
    found = {
        "pai": detect_format(list(read_lora_file(next(legacy_file), "poem", True))),
        "diffusers": detect_format(list(read_lora_file(tiny_repos.diffusers_lora, "d", False))),
        "kohya": detect_format(list(read_lora_file(tiny_repos.kohya_lora, "k", False))),
    }
    assert found == {"pai": LoraFormat.PAI_LEGACY, "diffusers": LoraFormat.DIFFUSERS,
                     "kohya": LoraFormat.KOHYA}


@pytest.mark.parametrize("lora_format", ["pai_legacy", "diffusers", "kohya"])
def test_lora_changes_follows_weight_and_unloads_exactly(fresh_engine, tiny_repos, lora_format):
    name = _lora_names(tiny_repos)[lora_format]
    plain = run(fresh_engine, txt2img())
    base_weights = _unet_weights(fresh_engine)
    strong = run(fresh_engine, txt2img(loras=(LoraWeight(name, 1.0),)))
    weak = run(fresh_engine, txt2img(loras=(LoraWeight(name, 0.1),)))
    assert difference(plain, strong) > difference(plain, weak) > 0
    assert difference(plain, run(fresh_engine, txt2img())) == 0  # not asked for: off
    fresh_engine.unload_loras()
    after = _unet_weights(fresh_engine)
    assert after.keys() == base_weights.keys()
    assert all(torch.equal(after[k], base_weights[k]) for k in after)


def test_prompt_tag_equals_the_lora_field(fresh_engine):
    by_tag = run(fresh_engine, txt2img(prompt=f"雾蒙蒙的日出在湖面上 <lora:{POEM}:0.4>"))
    by_field = run(fresh_engine, txt2img(loras=(LoraWeight(POEM, 0.4),)))
    assert difference(by_tag, by_field) == 0


def test_several_loras_at_once(fresh_engine, tiny_repos):
    one = run(fresh_engine, txt2img(loras=(LoraWeight(POEM, 0.8),)))
    both = run(fresh_engine, txt2img(loras=(
        LoraWeight(POEM, 0.8), LoraWeight("kohya-style", 0.8))))
    assert difference(one, both) > 0
    assert len(fresh_engine.pipelines.base("pai-artist-large").loras.loaded) == 2


def test_changing_weights_and_switching_never_reloads(fresh_engine, monkeypatch):
    run(fresh_engine, txt2img(loras=(LoraWeight(POEM, 0.5),)))
    base = fresh_engine.pipelines.base("pai-artist-large")
    loads = []
    monkeypatch.setattr(fresh_engine.pipelines, "_load_base",
                        lambda *a: loads.append(a) or pytest.fail("base reloaded"))
    lora_loads = []
    original = base.loras._load
    monkeypatch.setattr(base.loras, "_load", lambda *a: (lora_loads.append(a), original(*a)))
    for weight in (0.2, 0.9, -0.5):
        run(fresh_engine, txt2img(loras=(LoraWeight(POEM, weight),)))
    run(fresh_engine, txt2img(loras=(LoraWeight("kohya-style", 1.0),)))
    run(fresh_engine, txt2img(loras=(LoraWeight(POEM, 1.0),)))
    assert fresh_engine.pipelines.base("pai-artist-large") is base
    assert len(lora_loads) == 1 and not loads  # only kohya-style was new


def test_lora_for_another_architecture_is_refused_cleanly(fresh_engine):
    plain = run(fresh_engine, txt2img())
    with pytest.raises(EngineError) as caught:
        run(fresh_engine, txt2img(loras=(LoraWeight("sd2-style", 1.0),)))
    assert caught.value.code == "lora_incompatible"
    assert fresh_engine.pipelines.base("pai-artist-large").loras.loaded == ()
    assert difference(plain, run(fresh_engine, txt2img())) == 0


def test_unknown_lora(engine):
    with pytest.raises(EngineError) as caught:
        run(engine, txt2img(loras=(LoraWeight("no-such-style", 1.0),)))
    assert caught.value.code == "unknown_lora"


def test_user_pickle_lora_is_refused(engine, tiny_repos):
    path = tiny_repos.lora_dir / "renamed.bin"
    torch.save({"lora_unet_x.lora_down.weight": torch.zeros(1)}, path)
    with pytest.raises(EngineError) as caught:
        run(engine, txt2img(loras=(LoraWeight("renamed.bin", 1.0),)))
    assert caught.value.code == "lora_pickle_refused"


def test_pickle_renamed_to_safetensors_is_corrupt(engine, tiny_repos):
    path = tiny_repos.lora_dir / "fake.safetensors"
    torch.save({"a": torch.zeros(1)}, path)
    with pytest.raises(EngineError) as caught:
        run(engine, txt2img(loras=(LoraWeight("fake", 1.0),)))
    assert caught.value.code == "lora_corrupt"


def test_safetensors_with_an_absurd_header_is_corrupt(engine, tiny_repos):
    path = tiny_repos.lora_dir / "huge-header.safetensors"
    path.write_bytes((2**60).to_bytes(8, "little") + b"{}")
    with pytest.raises(EngineError) as caught:
        run(engine, txt2img(loras=(LoraWeight("huge-header", 1.0),)))
    assert caught.value.code == "lora_corrupt"


def test_weights_only_override_in_the_environment_refuses_pickles(engine, monkeypatch):
    monkeypatch.setenv("TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "1")
    with pytest.raises(EngineError) as caught:
        run(engine, txt2img(loras=(LoraWeight("pai-artist-large-lora-25d", 1.0),)))
    assert caught.value.code == "weights_only_disabled"


def test_lora_made_for_another_base_warns(engine):
    result = run(engine, txt2img(model="pai-general-large", loras=(LoraWeight(POEM, 0.4),)))
    assert [w.code for w in result.warnings] == ["lora_base_mismatch"]


def test_legacy_lora_through_load_lora_weights_alone_would_load_nothing(engine, tiny_repos):
    """Why PAI's files need their own path: the cards' usual call silently ignores them."""
    from diffusers import StableDiffusionPipeline

    pipe = StableDiffusionPipeline.from_pretrained(
        tiny_repos.pai_base, safety_checker=None, feature_extractor=None,
        requires_safety_checker=False)
    legacy = next(tiny_repos.hub_cache.glob("models--*lora-poem/snapshots/*/*.bin"))
    before = {k: v.clone() for k, v in pipe.unet.state_dict().items()}
    try:
        pipe.load_lora_weights(str(legacy.parent), weight_name=legacy.name, adapter_name="x")
    except (ValueError, KeyError):
        pass
    assert not getattr(pipe.unet, "peft_config", None)
    assert all(torch.equal(before[k], v) for k, v in pipe.unet.state_dict().items())
    assert np.isfinite(next(iter(before.values())).numpy()).all()


def test_adapters_beyond_capacity_are_unloaded_oldest_first(fresh_engine):
    base = fresh_engine.pipelines.base("pai-artist-large")
    base.loras.capacity = 1
    run(fresh_engine, txt2img(loras=(LoraWeight(POEM, 0.5),)))
    run(fresh_engine, txt2img(loras=(LoraWeight("kohya-style", 0.5),)))
    assert len(base.loras.loaded) == 1
    plain = run(fresh_engine, txt2img())
    fresh_engine.unload_loras()
    assert difference(plain, run(fresh_engine, txt2img())) == 0


@pytest.mark.parametrize("name", ["../outside", "../lora/ink", "/etc/passwd", "sub/ink", ".."])
def test_prompts_cannot_reach_files_outside_the_lora_folder(engine, tiny_repos, name):
    outside = tiny_repos.models_dir / "outside.safetensors"
    shutil.copy(tiny_repos.diffusers_lora, outside)
    with pytest.raises(EngineError) as caught:
        run(engine, txt2img(prompt=f"山 <lora:{name}:1>"))
    assert caught.value.code == "unknown_lora"


def test_file_paths_work_where_allowed(tiny_repos):
    engine = Engine(make_settings(tiny_repos, allow_file_paths=True))
    path = str(tiny_repos.diffusers_lora)
    plain = run(engine, txt2img())
    assert difference(plain, run(engine, txt2img(loras=(LoraWeight(path, 1.0),)))) > 0
