"""Every bad request fails with its own stable code, before any model is touched."""

from __future__ import annotations

import math

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from engine.errors import EngineError, InvalidRequest
from engine.images import fit_to_limits
from engine.limits import Limits
from engine.prompt_syntax import parse_prompt
from engine.requests import ControlSpec, LoraWeight
from engine.validation import (
    canonical_request,
    normalise_sampler,
    prepare_request,
    validate_request,
)
from tests.support.helpers import controlnet, img2img, inpaint, sample_image, txt2img

LIMITS = Limits()
CONTROL_TYPES = ("canny", "depth")


def code_of(request, **kwargs) -> str:
    with pytest.raises(EngineError) as caught:
        validate_request(request, LIMITS, control_types=CONTROL_TYPES, **kwargs)
    return caught.value.code


def test_good_requests_pass():
    for request in (txt2img(), img2img(), inpaint(), controlnet(),
                    txt2img(width=None, height=None, seed=-1)):
        validate_request(request, LIMITS, control_types=CONTROL_TYPES)


@pytest.mark.parametrize("changes, code", [
    (dict(model=""), "missing_model"),
    (dict(prompt="山" * 5000), "prompt_too_long"),
    (dict(prompt="a\x00b"), "prompt_invalid_characters"),
    (dict(negative_prompt=None), "invalid_prompt"),
    (dict(sampler="Euler b"), "unknown_sampler"),
    (dict(schedule="cosine"), "unknown_schedule"),
    (dict(sampler="DDIM", schedule="karras"), "schedule_not_supported"),
    (dict(steps=0), "invalid_steps"),
    (dict(steps=151), "invalid_steps"),
    (dict(steps=2.5), "invalid_steps"),
    (dict(steps=True), "invalid_steps"),
    (dict(guidance=float("nan")), "invalid_guidance"),
    (dict(guidance=math.inf), "invalid_guidance"),
    (dict(guidance=-1), "invalid_guidance"),
    (dict(seed=-2), "invalid_seed"),
    (dict(seed=2**32), "invalid_seed"),
    (dict(seed="42"), "invalid_seed"),
    (dict(seed=1.5), "invalid_seed"),
    (dict(width=513), "invalid_size"),
    (dict(height=4096), "invalid_size"),
    (dict(width=32), "invalid_size"),
    (dict(batch_size=0), "invalid_batch_size"),
    (dict(batch_count=17), "invalid_batch_count"),
    (dict(width=2048, height=2048, batch_size=2), "too_many_pixels"),
    (dict(loras=tuple(LoraWeight(f"l{i}") for i in range(9))), "too_many_loras"),
    (dict(loras=(LoraWeight("poem", float("nan")),)), "invalid_lora_weight"),
    (dict(loras=(LoraWeight("poem", 3.0),)), "invalid_lora_weight"),
    (dict(loras=(LoraWeight(" "),)), "unknown_lora"),
])
def test_bad_txt2img(changes, code):
    assert code_of(txt2img(**changes)) == code


def test_unknown_lora_is_checked_against_the_catalog():
    request = txt2img(loras=(LoraWeight("missing", 1.0),))
    assert code_of(request, lora_exists=lambda name: False) == "unknown_lora"
    validate_request(request, LIMITS, lora_exists=lambda name: True)


@pytest.mark.parametrize("changes, code", [
    (dict(init_image=None), "missing_image"),
    (dict(init_image=b"png bytes"), "missing_image"),
    (dict(init_image=Image.new("RGB", (4, 64))), "image_too_small"),
    (dict(init_image=Image.new("RGB", (8, 512))), "image_aspect_extreme"),
    (dict(strength=1.5), "invalid_strength"),
    (dict(strength=float("nan")), "invalid_strength"),
    (dict(resize_mode="stretch"), "invalid_resize_mode"),
])
def test_bad_img2img(changes, code):
    assert code_of(img2img(**changes)) == code


def test_huge_input_image_is_refused():
    small = Limits(max_input_pixels=100 * 100)
    with pytest.raises(InvalidRequest) as caught:
        validate_request(img2img(init_image=Image.new("RGB", (200, 200))), small)
    assert caught.value.code == "image_too_large"


@pytest.mark.parametrize("changes, code", [
    (dict(mask=None), "missing_image"),
    (dict(mask_blur=-1), "invalid_mask_blur"),
    (dict(mask_blur=65), "invalid_mask_blur"),
])
def test_bad_inpaint(changes, code):
    assert code_of(inpaint(**changes)) == code


@pytest.mark.parametrize("control_changes, code", [
    (dict(image=None), "missing_control_image"),
    (dict(model=""), "missing_controlnet"),
    (dict(control_type="scribble"), "unknown_control_type"),
    (dict(weight=2.5), "invalid_control_weight"),
    (dict(start=0.6, end=0.4), "invalid_control_range"),
    (dict(start=0.0, end=1.5), "invalid_control_range"),
    (dict(low_threshold=200, high_threshold=100), "invalid_canny_thresholds"),
    (dict(high_threshold=300), "invalid_canny_thresholds"),
])
def test_bad_controlnet(control_changes, code):
    assert code_of(controlnet(control_changes)) == code


def test_missing_control_unit():
    import dataclasses

    assert code_of(dataclasses.replace(controlnet(), control=None)) == "missing_control_image"


def test_ready_map_needs_no_known_control_type():
    validate_request(controlnet({"control_type": "anything", "preprocess": False}), LIMITS)


def test_error_params_name_the_bad_value():
    with pytest.raises(InvalidRequest) as caught:
        validate_request(txt2img(width=513), LIMITS)
    assert caught.value.params == {"value": "513", "min": 64, "max": 2048, "step": 8}


@pytest.mark.parametrize("given_name, schedule, expected", [
    ("DPM++ 2M Karras", "automatic", ("DPM++ 2M", "karras")),
    ("k_euler_a", "Automatic", ("Euler a", "automatic")),
    ("euler", "SGM Uniform", ("Euler", "sgm_uniform")),
    ("DPM++ 2M Karras", "exponential", ("DPM++ 2M", "exponential")),
    ("Nonsense", "Karras", ("Nonsense", "karras")),
])
def test_sampler_names_are_normalised(given_name, schedule, expected):
    assert normalise_sampler(given_name, schedule) == expected


anything = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(), st.text(max_size=20))


@settings(max_examples=300, deadline=None)
@given(steps=anything, guidance=anything, seed=anything, width=anything, height=anything,
       batch_size=anything, sampler=anything, schedule=anything)
def test_validator_only_ever_raises_invalid_request(steps, guidance, seed, width, height,
                                                    batch_size, sampler, schedule):
    request = txt2img(steps=steps, guidance=guidance, seed=seed, width=width, height=height,
                      batch_size=batch_size, sampler=sampler, schedule=schedule)
    try:
        validate_request(request, LIMITS)
    except InvalidRequest:
        return
    # Accepted: then every value really is inside the limits.
    assert 1 <= steps <= 150 and 0 <= guidance <= 30 and 1 <= batch_size <= 8
    assert seed == -1 or 0 <= seed < 2**32


@settings(max_examples=200, deadline=None)
@given(weight=anything, start=anything, end=anything, low=anything, high=anything)
def test_control_validator_only_ever_raises_invalid_request(weight, start, end, low, high):
    control = ControlSpec(model="m", control_type="canny", image=sample_image(), weight=weight,
                          start=start, end=end, low_threshold=low, high_threshold=high)
    request = controlnet()
    import dataclasses

    try:
        validate_request(dataclasses.replace(request, control=control), LIMITS,
                         control_types=CONTROL_TYPES)
    except InvalidRequest:
        return
    assert 0 <= start < end <= 1 and 0 <= low <= high <= 255


# -- one request path: prepare_request --------------------------------------------------------

def prepare(request):
    return prepare_request(request, LIMITS, control_types=CONTROL_TYPES)


def test_prepare_moves_lora_tags_out_of_the_prompt_and_keeps_what_was_written():
    written = "山水 <lora:ink:0.5>，小桥 <lyco:poem>"
    prepared = prepare(txt2img(prompt=written, sampler="DPM++ 2M Karras"))

    assert "<lora" not in prepared.request.prompt and "<lyco" not in prepared.request.prompt
    assert prepared.request.prompt == "山水 ，小桥 "
    assert prepared.request.loras == (LoraWeight("ink", 0.5), LoraWeight("poem", 1.0))
    assert (prepared.request.sampler, prepared.request.schedule) == ("DPM++ 2M", "karras")
    assert prepared.written_prompt == written  # what the image's parameters show


def test_prepare_does_not_double_a_lora_given_twice():
    request = txt2img(prompt="山 <lora:ink:0.5> <lora:ink:0.5>", loras=(LoraWeight("ink", 0.5),))
    assert prepare(request).request.loras == (LoraWeight("ink", 0.5),)


def test_prepare_validates():
    with pytest.raises(InvalidRequest) as caught:
        prepare(txt2img(prompt="山 <lora:ink:9>"))
    assert caught.value.code == "invalid_lora_weight"


lora_tags = st.sampled_from(["<lora:ink:0.5>", "<lyco:poem>", "<lora: ink :1>", "<lora:<lora:a>b>",
                             "<lora:x:abc>", "<lora: :1>", "(山:1.2)", "，", " "])


@settings(max_examples=300, deadline=None)
@given(pieces=st.lists(st.one_of(lora_tags, st.text(max_size=8)), max_size=8),
       sampler=st.sampled_from(["DPM++ 2M Karras", "k_euler_a", "Euler"]),
       loras=st.lists(st.sampled_from([LoraWeight("ink", 0.5), LoraWeight("b", 1.0)]),
                      max_size=2))
def test_prepare_is_idempotent(pieces, sampler, loras):
    request = txt2img(prompt="".join(pieces), sampler=sampler, loras=tuple(loras))
    try:
        once = prepare(request)
    except InvalidRequest:
        return
    assert prepare(once) == once
    assert prepare(once.request).request == once.request
    assert parse_prompt(once.request.prompt).loras == ()  # a second pass finds no tag
    assert canonical_request(once.request, LIMITS) == once.request


# -- one pixel budget: Limits.pixels_per_image ------------------------------------------------

@pytest.mark.parametrize("batch_size", range(1, LIMITS.max_batch_size + 1))
def test_the_fitted_size_is_one_the_validator_accepts(batch_size):
    """The engine's size fitting and the UI's suggestion (fit_to_limits) and the validator
    count the same budget: what is fitted for a batch passes, one size step more does not."""
    width, height = fit_to_limits(3000, 3000, LIMITS, batch_size)
    assert width * height * batch_size <= LIMITS.max_batch_pixels
    validate_request(txt2img(width=width, height=height, batch_size=batch_size), LIMITS)
    step = LIMITS.size_step
    if width + step <= LIMITS.max_size:
        bigger = txt2img(width=width + step, height=height + step, batch_size=batch_size)
        assert code_of(bigger) == "too_many_pixels"
