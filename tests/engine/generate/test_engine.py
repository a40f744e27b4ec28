"""The engine over tiny replicas of the real repos, loaded through the real loading code."""

from __future__ import annotations

import dataclasses
import threading

import numpy as np
import pytest
import torch
from PIL import Image

from engine.errors import EngineError, JobCancelled
from engine.generate.engine import Engine
from engine.requests import ResizeMode
from engine.samplers import SAMPLERS
from tests.support.helpers import (
    PROMPT,
    controlnet,
    difference,
    img2img,
    inpaint,
    pixels,
    run,
    sample_image,
    txt2img,
)
from tests.support.tiny_repos import TINY_PAI_SIZE, make_settings


def test_pai_base_loads_without_safety_checker(engine):
    base = engine.pipelines.base("pai-artist-large")
    assert base.pipe.safety_checker is None and base.pipe.feature_extractor is None
    assert type(base.pipe.tokenizer).__name__ == "BertTokenizer"
    assert type(base.pipe.text_encoder).__name__ == "CLIPTextModel"
    assert base.text_context.length == 32
    assert (base.text_context.start_id, base.text_context.end_id) == (
        base.pipe.tokenizer.cls_token_id, base.pipe.tokenizer.sep_token_id)


def test_text_encoder_weights_come_from_the_pickle(engine, tiny_repos):
    """transformers 5 renames the old 'text_model.' keys; nothing may be left at random init."""
    saved = torch.load(tiny_repos.pai_base / "text_encoder" / "pytorch_model.bin",
                       weights_only=True)
    loaded = engine.pipelines.base("pai-artist-large").pipe.text_encoder.state_dict()
    key = "embeddings.token_embedding.weight"
    assert torch.equal(saved["text_model." + key], loaded[key])


def test_safety_checker_files_are_never_read(tiny_repos, tmp_path):
    import shutil

    folder = tmp_path / "pai"
    shutil.copytree(tiny_repos.pai_base, folder)
    (folder / "safety_checker" / "pytorch_model.bin").write_bytes(b"not a checkpoint")
    engine = Engine(make_settings(tiny_repos, allow_file_paths=True))  # as the CLI's
    result = run(engine, txt2img(model=str(folder)))
    assert result.images[0].image.size == (64, 64)
    shutil.rmtree(folder / "safety_checker")
    command_line = Engine(make_settings(tiny_repos, allow_file_paths=True))
    assert run(command_line, txt2img(model=str(folder))).images


def test_txt2img_returns_seed_and_parameters(engine):
    result = run(engine, txt2img(seed=1234))
    image = result.images[0]
    assert image.seed == 1234
    assert image.image.size == (64, 64) and image.image.mode == "RGB"
    assert image.parameters["seed"] == 1234
    assert image.parameters["prompt"] == PROMPT
    assert image.parameters["sampler"] == "DPM++ 2M"
    assert image.parameters["model"] == "pai-artist-large"
    assert result.prompt_info.context_length == 32


def test_same_request_and_seed_give_the_identical_image(engine):
    assert difference(run(engine, txt2img()), run(engine, txt2img())) == 0
    assert difference(run(engine, txt2img()), run(engine, txt2img(seed=8))) > 0


def test_random_seed_is_reported_and_reproduces(engine):
    first = run(engine, txt2img(seed=-1))
    seed = first.images[0].seed
    assert 0 <= seed < 2**32
    # Two draws from 2**32 seeds coincide once in four billion runs.
    assert run(engine, txt2img(seed=-1)).images[0].seed != seed
    assert difference(first, run(engine, txt2img(seed=seed))) == 0


def test_batch_images_use_consecutive_seeds_and_match_single_runs(engine):
    batch = run(engine, txt2img(seed=100, batch_size=2, batch_count=2))
    assert [image.seed for image in batch.images] == [100, 101, 102, 103]
    single = run(engine, txt2img(seed=102))
    assert np.abs(pixels(batch, 2) - pixels(single)).max() <= 1


def test_default_size_comes_from_the_model(engine):
    result = run(engine, txt2img(width=None, height=None, steps=1))
    assert result.images[0].image.size == (512, 512)  # the manifest's size for artist-large


def test_xlarge_default_size_is_768(engine):
    result = run(engine, txt2img(model="pai-artist-xlarge", width=None, height=None, steps=1))
    assert result.images[0].image.size == (768, 768)


def test_local_folder_default_size_comes_from_the_unet(tiny_repos):
    command_line = Engine(make_settings(tiny_repos, allow_file_paths=True))
    result = run(command_line, txt2img(model=str(tiny_repos.pai_base), width=None,
                                           height=None))
    assert result.images[0].image.size == (TINY_PAI_SIZE, TINY_PAI_SIZE)


def test_taiyi_style_bert_text_encoder(engine):
    result = run(engine, txt2img(model="taiyi-1b-chinese", prompt="飞流直下三千尺，油画"))
    base = engine.pipelines.base("taiyi-1b-chinese")
    assert type(base.pipe.text_encoder).__name__ == "BertModel"
    assert base.text_context.length == 512
    assert result.images[0].image.size == (64, 64)


@pytest.mark.parametrize("sampler", list(SAMPLERS))
def test_every_sampler_runs_and_keeps_the_model_betas(engine, sampler):
    result = run(engine, txt2img(sampler=sampler, steps=4))
    assert result.images[0].parameters["sampler"] == sampler
    scheduler = engine.pipelines.base("pai-artist-large").pipe.scheduler
    assert type(scheduler).__name__ == SAMPLERS[sampler].scheduler_class
    assert scheduler.config.beta_schedule == "scaled_linear"
    assert scheduler.config.beta_end == pytest.approx(0.012)
    assert not np.isnan(pixels(result)).any()


@pytest.mark.parametrize("schedule", ["karras", "exponential", "beta", "sgm_uniform"])
def test_schedule_types_change_the_sampling(engine, schedule):
    plain = run(engine, txt2img(sampler="Euler", steps=4))
    scheduled = run(engine, txt2img(sampler="Euler", schedule=schedule, steps=4))
    assert difference(plain, scheduled) > 0


def test_legacy_combined_sampler_name(engine):
    result = run(engine, txt2img(sampler="DPM++ 2M Karras"))
    assert result.images[0].parameters["schedule"] == "karras"
    assert engine.pipelines.base("pai-artist-large").pipe.scheduler.config.use_karras_sigmas


def test_long_chinese_prompt_is_chunked_not_truncated(engine):
    long_prompt = "浮岛，天空，白云，城堡，幻想世界，" * 3 + "雪山下的红色小屋，湖面倒影，晨雾"
    first_thirty = long_prompt[:30]
    long_result = run(engine, txt2img(prompt=long_prompt))
    assert long_result.prompt_info.chunks == 3  # 67 characters, 30 per chunk
    assert long_result.prompt_info.tokens == len(long_prompt)
    assert difference(long_result, run(engine, txt2img(prompt=first_thirty))) > 0


def test_prompt_weighting_changes_the_image(engine):
    plain = run(engine, txt2img(prompt="雪山，湖泊"))
    weighted = run(engine, txt2img(prompt="(雪山:1.6)，湖泊"))
    assert difference(plain, weighted) > 0


def test_prompt_info_counts_tokens(engine):
    info = engine.prompt_info("pai-artist-large", "亭台楼阁 (曲径通幽:1.2) <lora:x:0.5>")
    assert (info.tokens, info.context_length, info.chunks) == (8, 32, 1)


def test_img2img_follows_the_init_image_and_strength(engine):
    base = run(engine, img2img())
    other_image = run(engine, img2img(init_image=sample_image(seed=5).rotate(90)))
    weaker = run(engine, img2img(strength=0.3))
    assert difference(base, other_image) > 0 and difference(base, weaker) > 0
    assert base.images[0].parameters["strength"] == pytest.approx(0.7)


def test_img2img_size_defaults_to_the_init_image(engine):
    result = run(engine, img2img(init_image=sample_image(100, 76), width=None, height=None))
    assert result.images[0].image.size == (96, 72)


@pytest.mark.parametrize("mode", list(ResizeMode))
def test_img2img_resize_modes(engine, mode):
    request = img2img(init_image=sample_image(96, 64), resize_mode=mode)
    assert run(engine, request).images[0].image.size == (64, 64)


def square_ring(inner: int, outer: int, size: int = 64) -> np.ndarray:
    """True where a pixel lies ``inner`` to ``outer`` pixels outside the centre mask's square
    (rows and columns 16 to 47 of 64); a large ``outer`` reaches the image's edges."""
    index = np.arange(size)
    away = np.maximum(np.maximum(16 - index, index - 47), 0)  # distance outside, per axis
    distance = np.maximum(away[:, None], away[None, :])
    return (distance >= inner) & (distance <= outer)


def changed(result, original, where: np.ndarray) -> np.ndarray:
    """Per pixel in ``where``: does the result differ from the original in any channel?"""
    return (pixels(result) != np.asarray(original, dtype=np.int16)).any(axis=-1)[where]


INSIDE = square_ring(0, 0)  # distance 0: the square itself
CORE = np.zeros((64, 64), bool)
CORE[24:40, 24:40] = True


def test_inpaint_keeps_every_pixel_outside_the_blurred_mask(engine):
    init = sample_image()
    for request in (inpaint(init_image=init, mask_blur=2, strength=1.0),
                    inpaint(init_image=init, mask_blur=2, strength=0.5, batch_size=2)):
        result = run(engine, request)
        for index in range(len(result.images)):
            out = pixels(result, index)
            outside = square_ring(7, 64)  # past the blur's reach (about 2.5 x its radius)
            assert np.array_equal(out[outside], np.asarray(init, dtype=np.int16)[outside])
            assert (out[CORE] != np.asarray(init, dtype=np.int16)[CORE]).any(axis=-1).mean() > 0.9


def test_inpaint_repaints_according_to_the_mask(engine):
    """The pipeline itself gets the mask: the kept area's latents shape what is painted in."""
    init = sample_image()
    half = run(engine, inpaint(init_image=init, mask_blur=0))
    whole = run(engine, inpaint(init_image=init, mask_blur=0,
                                    mask=Image.new("L", (64, 64), 255)))
    assert not np.array_equal(pixels(half)[INSIDE], pixels(whole)[INSIDE])
    assert changed(whole, init, square_ring(8, 64)).mean() > 0.9


def test_mask_blur_softens_the_edge_of_the_repainted_area(engine):
    init, edge = sample_image(), square_ring(1, 3)
    sharp = run(engine, inpaint(init_image=init, mask_blur=0))
    soft = run(engine, inpaint(init_image=init, mask_blur=8))
    assert not changed(sharp, init, edge).any()
    assert changed(soft, init, edge).mean() > 0.5
    assert not changed(soft, init, square_ring(30, 64)).any()


def test_inverted_mask_keeps_the_white_area(engine):
    init = sample_image()
    result = run(engine, inpaint(init_image=init, mask_blur=0, invert_mask=True))
    assert not changed(result, init, INSIDE).any()
    assert changed(result, init, square_ring(2, 64)).mean() > 0.9
    assert result.images[0].parameters["invert_mask"] is True


def test_controlnet_control_image_changes_the_output(engine):
    first = run(engine, controlnet())
    moved = sample_image(seed=3).transpose(0)
    second = run(engine, controlnet({"image": moved}))
    assert difference(first, second) > 0
    assert first.control_map.size == (64, 64)
    edges = np.asarray(first.control_map)
    assert set(np.unique(edges)) <= {0, 255} and edges.max() == 255


def test_controlnet_weight_and_thresholds_matter(engine):
    base = run(engine, controlnet())
    assert difference(base, run(engine, controlnet({"weight": 0.2}))) > 0
    loose = run(engine, controlnet({"low_threshold": 250, "high_threshold": 255}))
    assert not np.array_equal(np.asarray(base.control_map), np.asarray(loose.control_map))


def test_controlnet_guidance_start_and_end_matter(engine):
    """With 3 steps, start 0.5 drops the control from the first step, end 0.5 from the last."""
    whole = run(engine, controlnet())
    late = run(engine, controlnet({"start": 0.5}))
    early = run(engine, controlnet({"end": 0.5}))
    assert difference(whole, late) > 0 and difference(whole, early) > 0
    assert difference(late, early) > 0
    assert late.images[0].parameters["control"]["start"] == 0.5


def test_controlnet_depth_uses_dpt(engine):
    result = run(engine, controlnet({"model": "pai-artist-large-controlnet-depth",
                                         "control_type": "depth"}))
    depth = np.asarray(result.control_map)
    assert depth.shape == (64, 64, 3)
    assert np.array_equal(depth[..., 0], depth[..., 1]) and depth.max() > depth.min()


def test_controlnet_with_a_ready_map_skips_preprocessing(engine):
    ready = sample_image(seed=9)
    result = run(engine, controlnet({"image": ready, "preprocess": False}))
    assert np.array_equal(np.asarray(result.control_map), np.asarray(ready))


def test_controlnet_on_another_base_warns(engine):
    result = run(engine, controlnet(model="pai-general-large"))
    assert [w.code for w in result.warnings] == ["controlnet_base_mismatch"]
    assert result.warnings[0].params["expected"] == "pai-artist-large"


def test_derived_pipelines_share_the_base_weights(engine):
    run(engine, img2img())
    run(engine, inpaint())
    run(engine, controlnet())
    base = engine.pipelines.base("pai-artist-large")
    unet_weight = base.pipe.unet.conv_in.weight
    assert len(base.derived) >= 3
    for pipe in base.derived.values():
        assert pipe.unet.conv_in.weight.data_ptr() == unet_weight.data_ptr()
        assert pipe.vae is base.pipe.vae and pipe.text_encoder is base.pipe.text_encoder


def test_progress_reports_every_step(engine):
    updates = []
    run(engine, txt2img(steps=5, batch_count=2), on_progress=updates.append)
    assert [(u.step, u.batch_index) for u in updates] == [
        (step, batch) for batch in range(2) for step in range(1, 6)]
    assert {u.total_steps for u in updates} == {5}


def test_cancel_stops_the_job_and_the_engine_stays_usable(engine):
    cancel = threading.Event()

    def cancel_after_two(update):
        if update.step == 2:
            cancel.set()

    seen = []
    with pytest.raises(JobCancelled):
        run(engine, txt2img(steps=20), cancel=cancel,
                        on_progress=lambda u: (seen.append(u.step), cancel_after_two(u)))
    assert seen == [1, 2]
    assert run(engine, txt2img()).images


def test_lru_keeps_a_bounded_number_of_bases(tiny_repos):
    engine = Engine(make_settings(tiny_repos, max_loaded_models=1))
    run(engine, txt2img())
    run(engine, txt2img(model="pai-general-large"))
    assert engine.pipelines.loaded_models == ("pai-general-large",)


def test_one_job_at_a_time(engine):
    """Two threads generate at once; the UNet must never run for both simultaneously."""
    unet = engine.pipelines.base("pai-artist-large").pipe.unet
    running, overlaps = [0], []
    original_forward = unet.forward

    def guarded_forward(*args, **kwargs):
        running[0] += 1
        overlaps.append(running[0])
        try:
            return original_forward(*args, **kwargs)
        finally:
            running[0] -= 1

    unet.forward = guarded_forward
    try:
        results = []
        threads = [threading.Thread(target=lambda s=s: results.append(
            run(engine, txt2img(seed=s, steps=6)))) for s in (1, 2)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    finally:
        del unet.forward
    assert len(results) == 2 and max(overlaps) == 1


def test_out_of_memory_is_an_error_and_the_next_job_works(engine, monkeypatch):
    unet = engine.pipelines.base("pai-artist-large").pipe.unet

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(unet, "forward", no_memory)
    with pytest.raises(EngineError) as caught:
        run(engine, txt2img())
    assert caught.value.code == "out_of_memory"
    monkeypatch.undo()
    assert run(engine, txt2img()).images


class _Fp16OverflowVae:
    """A VAE that overflows to NaN in fp16 and decodes fine in fp32, like SD's at times."""

    def __init__(self):
        self.dtype = torch.float16
        self.config = type("Config", (), {"scaling_factor": 0.18215})()
        self.casts = []

    def to(self, dtype):
        self.casts.append(dtype)
        self.dtype = dtype
        return self

    def decode(self, latents):
        sample = torch.zeros(latents.shape[0], 3, 16, 16)
        sample[:, 0] = float("nan") if self.dtype == torch.float16 else 0.5
        return type("Output", (), {"sample": sample})()


def test_nan_from_an_fp16_vae_is_decoded_again_in_fp32(engine):
    vae = _Fp16OverflowVae()
    base = type("Base", (), {"pipe": type("Pipe", (), {"vae": vae, "vae_scale_factor": 8})()})()
    images = engine._decode(base, torch.zeros(2, 4, 2, 2))
    assert len(images) == 2 and np.asarray(images[0])[0, 0, 0] == 191  # (0.5/2+0.5)*255
    assert vae.casts[0] == torch.float32


def test_nan_in_fp32_is_an_error_not_a_black_image(engine):
    vae = _Fp16OverflowVae()
    vae.to = lambda dtype: vae  # stays fp16: the retry cannot help
    base = type("Base", (), {"pipe": type("Pipe", (), {"vae": vae, "vae_scale_factor": 8})()})()
    with pytest.raises(EngineError) as caught:
        engine._decode(base, torch.zeros(1, 4, 2, 2))
    assert caught.value.code == "nan_output"


def test_request_is_not_changed_by_the_engine(engine):
    request = txt2img(prompt="山水 <lora:pai-artist-large-lora-poem:0.4>")
    frozen = dataclasses.asdict(request)
    run(engine, request)
    assert dataclasses.asdict(request) == frozen


def test_img2img_with_few_steps_still_denoises(engine):
    init = sample_image()
    result = run(engine, img2img(init_image=init, strength=0.2, steps=2))
    assert np.abs(pixels(result) - np.asarray(init, dtype=np.int16)).max() > 0


def test_img2img_strength_zero_returns_the_init_image(engine):
    init = sample_image()
    result = run(engine, img2img(init_image=init, strength=0.0, batch_size=2))
    assert np.array_equal(pixels(result, 1), np.asarray(init, dtype=np.int16))


@pytest.mark.parametrize("control_type", ["lineart", "softedge_hed", "depth_midas"])
def test_controlnet_with_controlnet_aux_preprocessors(engine, control_type):
    result = run(engine, controlnet({"control_type": control_type}))
    assert result.control_map.size == (64, 64) and result.control_map.mode == "RGB"
    assert result.images[0].parameters["control"]["type"] == control_type


def test_preview_of_a_small_control_image(engine):
    from engine.requests import ControlSpec

    control = ControlSpec(model="pai-artist-large-controlnet-canny", control_type="lineart",
                          image=sample_image(40, 30))
    assert engine.preprocess(control).size == (40, 30)


def test_img2img_size_follows_exif_rotation(engine):
    import io

    from PIL import Image

    stored = sample_image(96, 64)
    exif = stored.getexif()
    exif[0x0112] = 6  # shown rotated: 64 wide, 96 tall
    buffer = io.BytesIO()
    stored.save(buffer, format="JPEG", exif=exif)
    result = run(engine, img2img(init_image=Image.open(buffer), width=None, height=None))
    assert result.images[0].image.size == (64, 96)


def test_half_an_emoji_is_refused_not_crashed(engine):
    with pytest.raises(EngineError) as caught:
        run(engine, txt2img(prompt="猫\ud83d"))
    assert caught.value.code == "prompt_invalid_characters"
    with pytest.raises(EngineError):
        engine.prompt_info("pai-artist-large", "猫\ud83d")


def test_out_of_memory_while_loading_is_not_a_broken_model(tiny_repos, monkeypatch):
    from engine.service import ImageService
    from engine.settings import DEFAULT_MANIFEST
    from engine.store.catalog import ModelState
    from engine.store.manifest import load_manifest

    service = ImageService(make_settings(tiny_repos), load_manifest(DEFAULT_MANIFEST))

    def no_memory(*args, **kwargs):
        raise torch.OutOfMemoryError("CUDA out of memory")

    monkeypatch.setattr(service.engine.pipelines, "_load_base", no_memory)
    with pytest.raises(EngineError) as caught:
        service.activate("pai-general-large")
    assert caught.value.code == "out_of_memory"
    state = {s.entry.id: s.state for s in service.model_statuses()}["pai-general-large"]
    assert state is ModelState.READY
    with pytest.raises(EngineError) as caught:
        service.generate(txt2img(model="pai-general-large"))
    assert caught.value.code == "out_of_memory"


def test_model_and_lora_hashes_are_in_the_parameters(engine, tiny_repos):
    import hashlib

    result = run(engine, txt2img(prompt="山 <lora:ink:0.5>"))
    parameters = result.images[0].parameters
    unet = tiny_repos.pai_base / "unet" / "diffusion_pytorch_model.bin"
    assert parameters["model_hash"] == hashlib.sha256(unet.read_bytes()).hexdigest()[:10]
    lora = hashlib.sha256(tiny_repos.diffusers_lora.read_bytes()).hexdigest()[:12]
    assert parameters["loras"] == [{"name": "ink", "weight": 0.5, "hash": lora}]


def test_a_batch_of_four_is_one_unet_call_per_step(engine):
    """batch_size=4 runs the UNet once per step on all four latents (eight with guidance), not
    four times: the speed a batch is for."""
    unet = engine.pipelines.base("pai-artist-large").pipe.unet
    batches = []
    hook = unet.register_forward_hook(lambda _m, args, _out: batches.append(args[0].shape[0]))
    try:
        result = run(engine, txt2img(steps=3, batch_size=4))
    finally:
        hook.remove()
    assert len(result.images) == 4
    assert batches == [8, 8, 8]  # 3 steps, each 4 latents x (unconditional + prompt)
