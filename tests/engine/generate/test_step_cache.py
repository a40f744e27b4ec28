"""The step cache on a bare UNet: a shallow call answers as the full UNet would on the inputs
of the last full call (so its skips, embeddings and residuals are put together right), the
schedule is uniform per run, and the UNet's own forward comes back whatever happens."""

from __future__ import annotations

import pytest
import torch

from engine.generate.step_cache import step_cache, usable_interval

pytestmark = pytest.mark.engine

BATCH, SIDE, TOKENS, WIDTH = 2, 16, 5, 32


@pytest.fixture(scope="module")
def unet():
    """SD 1.5's layout in miniature: two resnets per block, so the first down block pushes a
    downsampler output the last up block must not read."""
    from diffusers import UNet2DConditionModel

    torch.manual_seed(0)
    model = UNet2DConditionModel(
        sample_size=SIDE, in_channels=4, out_channels=4, layers_per_block=2,
        block_out_channels=(32, 64, 64),
        down_block_types=("CrossAttnDownBlock2D", "CrossAttnDownBlock2D", "DownBlock2D"),
        up_block_types=("UpBlock2D", "CrossAttnUpBlock2D", "CrossAttnUpBlock2D"),
        cross_attention_dim=WIDTH, attention_head_dim=8, norm_num_groups=32)
    return model.eval()


def _inputs(seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {"sample": torch.randn(BATCH, 4, SIDE, SIDE, generator=generator),
            "timestep": torch.tensor(900 - 100 * seed),
            "encoder_hidden_states": torch.randn(BATCH, TOKENS, WIDTH, generator=generator)}


def _controlnet_residuals(unet, seed: int) -> dict:
    """Residuals shaped as a ControlNet's for this UNet: one per skip, then the mid block's."""
    shapes = []
    with torch.no_grad():
        hooks = [block.register_forward_hook(
            lambda _m, _a, out: shapes.extend(t.shape for t in out[1]))
            for block in unet.down_blocks]
        unet(**_inputs(0))
        for hook in hooks:
            hook.remove()
    generator = torch.Generator().manual_seed(seed)
    conv_in = (BATCH, unet.config.block_out_channels[0], SIDE, SIDE)
    down = tuple(torch.randn(shape, generator=generator) for shape in [conv_in, *shapes])
    mid = torch.randn(BATCH, unet.config.block_out_channels[-1], SIDE // 4, SIDE // 4,
                      generator=generator)
    return {"down_block_additional_residuals": down, "mid_block_additional_residual": mid}


def _count_calls(module) -> list[int]:
    calls = [0]
    module.register_forward_hook(lambda *_: calls.__setitem__(0, calls[0] + 1))
    return calls


@pytest.mark.parametrize("controlnet", [False, True], ids=["plain", "controlnet"])
@torch.no_grad()
def test_a_shallow_call_on_the_full_calls_inputs_answers_as_the_full_unet(unet, controlnet):
    cases = []
    for seed in (1, 2):  # the second pair would see stale features if the first were kept
        extra = _controlnet_residuals(unet, seed + 10) if controlnet else {}
        inputs = {**_inputs(seed), **extra}
        cases.append((inputs, unet(**inputs).sample))
    with step_cache(unet, 2) as cache:
        for inputs, expected in cases:
            full = unet(**inputs).sample
            shallow = unet(**inputs, return_dict=False)[0]
            torch.testing.assert_close(full, expected)
            torch.testing.assert_close(shallow, expected, rtol=1e-4, atol=1e-5)
    assert (cache.full_calls, cache.shallow_calls) == (2, 2)


@torch.no_grad()
def test_the_cache_differs_from_the_full_unet_on_later_steps(unet):
    """What it is for: a shallow call on new inputs reuses the old deep features (how close
    that comes on a real denoising run is the engine tests' business: these are unrelated)."""
    first, later = _inputs(1), _inputs(2)
    expected = unet(**later).sample
    with step_cache(unet, 2):
        unet(**first)
        cached = unet(**later).sample
    difference = (cached - expected).abs().mean() / expected.abs().mean()
    assert difference > 0.01


@torch.no_grad()
def test_deep_blocks_run_on_every_nth_call_and_shallow_ones_on_every_call(unet):
    mid, first_down = _count_calls(unet.mid_block), _count_calls(unet.down_blocks[0])
    last_up, deep_up = _count_calls(unet.up_blocks[-1]), _count_calls(unet.up_blocks[-2])
    with step_cache(unet, 3) as cache:
        for step in range(9):
            unet(**_inputs(step % 3))
    assert (mid[0], deep_up[0]) == (3, 3)
    assert (first_down[0], last_up[0]) == (9, 9)
    assert (cache.full_calls, cache.shallow_calls) == (3, 6)


@torch.no_grad()
def test_each_run_starts_with_a_full_call(unet):
    mid = _count_calls(unet.mid_block)
    for _run in range(2):
        with step_cache(unet, 3):
            unet(**_inputs(1))
            unet(**_inputs(2))
    assert mid[0] == 2


@torch.no_grad()
def test_a_batch_of_another_size_runs_the_full_unet(unet):
    """Features kept for two latents cannot answer for one."""
    inputs = _inputs(1)
    single = {key: value[:1] if value.ndim else value for key, value in inputs.items()}
    with step_cache(unet, 5) as cache:
        unet(**inputs)
        torch.testing.assert_close(unet(**single).sample, unet.__class__.forward(unet, **single)
                                   .sample)
    assert cache.full_calls == 2


def test_the_unets_own_forward_comes_back_after_an_error(unet):
    class Stop(Exception):
        pass

    with pytest.raises(Stop), step_cache(unet, 2):
        assert "forward" in vars(unet)
        raise Stop
    assert "forward" not in vars(unet)


def test_a_wrapped_forward_is_used_for_full_calls_and_put_back(unet):
    """accelerate's CPU offload puts its own forward on the instance: it must stay."""
    seen = []
    original = unet.forward

    def wrapper(*args, **kwargs):
        seen.append(1)
        return original(*args, **kwargs)

    unet.forward = wrapper
    try:
        with torch.no_grad(), step_cache(unet, 2):
            unet(**_inputs(1))
            unet(**_inputs(2))
        assert seen == [1]
        assert vars(unet)["forward"] is wrapper
    finally:
        del unet.forward


def test_the_cache_is_off_below_two_and_on_a_compiled_unet(unet, monkeypatch):
    assert [usable_interval(unet, n) for n in (0, 1, 2, 5)] == [0, 0, 2, 5]
    monkeypatch.setattr(unet, "_compiled_call_impl", lambda *a, **k: None, raising=False)
    assert usable_interval(unet, 3) == 0
