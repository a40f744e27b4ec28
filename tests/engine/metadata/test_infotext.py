"""Infotext: our parameters to A1111's text and back, real A1111 texts, reading it from images."""

from __future__ import annotations

import io

import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image, PngImagePlugin

from engine.metadata.infotext import format_infotext, parse_infotext, read_png_parameters

BASE = {
    "mode": "txt2img", "model": "pai-artist-large", "prompt": "江南水乡，小桥流水，水墨画",
    "negative_prompt": "模糊，低质量, 畸形", "sampler": "DPM++ 2M", "schedule": "karras",
    "steps": 20, "guidance": 7.0, "seed": 1234, "width": 512, "height": 768, "batch_size": 1,
    "batch_count": 1, "loras": [], "prompt_tokens": 12, "context_length": 77,
    "precision": "fp16", "version": "0.1.0",
}
TXT2IMG = BASE
IMG2IMG = {**BASE, "mode": "img2img", "strength": 0.7, "resize_mode": "just_resize",
           "schedule": "automatic", "sampler": "Euler a", "guidance": 7.5}
INPAINT = {**IMG2IMG, "mode": "inpaint", "mask_blur": 4, "invert_mask": False}
CONTROLNET = {**BASE, "mode": "controlnet", "schedule": "sgm_uniform", "control": {
    "model": "alibaba-pai/pai-diffusion-artist-large-zh-controlnet-canny", "type": "canny",
    "weight": 0.85, "start": 0.0, "end": 0.9, "low_threshold": 100, "high_threshold": 200,
    "preprocess": True}}
LORAS = {**BASE, "prompt": "一只猫，\n坐在窗台上", "negative_prompt": "",
         "loras": [{"name": "poem", "weight": 0.4}, {"name": "ink, wash: v2", "weight": 0.8}]}

# What parse_infotext gives back: the parameters A1111's format carries.
CARRIED = ("prompt", "negative_prompt", "sampler", "schedule", "steps", "guidance", "seed",
           "width", "height", "model", "strength", "mask_blur", "control", "loras")

A1111_TEXT = """masterpiece, best quality, 1girl, solo, <lora:add_detail:0.6>,
hanfu, (cherry blossoms:1.2), "red lantern", night
Negative prompt: (worst quality, low quality:1.4), lowres,
bad anatomy, watermark
Steps: 30, Sampler: DPM++ 2M Karras, CFG scale: 7.5, Seed: 123456789, Size: 512x768, \
Model hash: 6ce0161689, Model: anything-v5, Denoising strength: 0.4, Clip skip: 2, \
Lora hashes: "add_detail: 7c6bad76eb54", Version: v1.9.0"""


@pytest.mark.parametrize("parameters", [TXT2IMG, IMG2IMG, INPAINT, CONTROLNET, LORAS],
                         ids=["txt2img", "img2img", "inpaint", "controlnet", "loras"])
def test_format_then_parse_gives_the_parameters_back(parameters):
    parsed = parse_infotext(format_infotext(parameters))
    expected = {key: parameters[key] for key in CARRIED if key in parameters}
    assert {key: parsed[key] for key in expected} == expected
    assert parsed["extra"] == {"Version": "huajing-0.1.0"}


def test_format_matches_a1111_layout():
    text = format_infotext({**IMG2IMG, "schedule": "karras", "sampler": "DPM++ 2M",
                            "guidance": 7.0, "loras": LORAS["loras"][:1]})
    prompt, negative, fields = text.split("\n")
    assert prompt == IMG2IMG["prompt"]
    assert negative == "Negative prompt: 模糊，低质量, 畸形"
    assert fields == ("Steps: 20, Sampler: DPM++ 2M, Schedule type: Karras, CFG scale: 7, "
                      "Seed: 1234, Size: 512x768, Model: pai-artist-large, "
                      'Denoising strength: 0.7, Lora weights: "poem: 0.4", '
                      "Version: huajing-0.1.0")


def test_format_leaves_out_what_does_not_apply():
    text = format_infotext({**TXT2IMG, "schedule": "automatic", "negative_prompt": ""})
    assert text.count("\n") == 1
    assert "Negative prompt" not in text and "Schedule type" not in text
    assert "Denoising strength" not in text and "Lora" not in text


def test_controlnet_and_mask_blur_fields():
    fields = format_infotext(CONTROLNET).splitlines()[-1]
    assert ('ControlNet 0: "Module: canny, Model: alibaba-pai/pai-diffusion-artist-large-zh-'
            'controlnet-canny, Weight: 0.85, Guidance Start: 0.0, Guidance End: 0.9, '
            'Threshold A: 100, Threshold B: 200"') in fields
    assert "Schedule type: SGM Uniform" in fields
    assert "Mask blur: 4" in format_infotext(INPAINT)


def test_control_map_given_directly_round_trips():
    control = {**CONTROLNET["control"], "preprocess": False}
    parsed = parse_infotext(format_infotext({**CONTROLNET, "control": control}))
    assert parsed["control"] == control


def test_values_with_separators_are_quoted_and_never_break_the_line():
    parameters = {**TXT2IMG, "model": 'C:\\models\\my "best", model.safetensors',
                  "sampler": "Euler\nSteps: 99", "extra": {"Note": "a\u2028b"}}
    text = format_infotext(parameters)
    assert len(text.splitlines()) == 3
    assert 'Model: "C:\\\\models\\\\my \\"best\\", model.safetensors"' in text
    parsed = parse_infotext(text)
    assert parsed["model"] == parameters["model"]
    assert parsed["sampler"] == "Euler Steps: 99"
    assert parsed["steps"] == 20
    assert parsed["extra"]["Note"] == "a b"


def test_parses_a_real_a1111_infotext():
    parsed = parse_infotext(A1111_TEXT)
    assert parsed["prompt"] == ("masterpiece, best quality, 1girl, solo, <lora:add_detail:0.6>,"
                                '\nhanfu, (cherry blossoms:1.2), "red lantern", night')
    assert parsed["negative_prompt"] == ("(worst quality, low quality:1.4), lowres,"
                                         "\nbad anatomy, watermark")
    assert (parsed["steps"], parsed["sampler"], parsed["schedule"]) == (30, "DPM++ 2M", "karras")
    assert (parsed["guidance"], parsed["seed"]) == (7.5, 123456789)
    assert (parsed["width"], parsed["height"]) == (512, 768)
    assert (parsed["model"], parsed["strength"]) == ("anything-v5", 0.4)
    assert parsed["loras"] == []  # the tag stays in the prompt, where the prompt parser reads it
    assert parsed["extra"] == {"Model hash": "6ce0161689", "Clip skip": "2",
                               "Lora hashes": "add_detail: 7c6bad76eb54", "Version": "v1.9.0"}


def test_parses_current_a1111_schedule_field_and_controlnet_unit():
    text = ("a lake\r\nSteps: 25, Sampler: Euler a, Schedule type: Automatic, CFG scale: 6, "
            "Seed: 7, Size: 768x512, Model: sd15, ControlNet 0: \"Module: none, "
            "Model: control_v11p_sd15_canny [d14c016b], Weight: 1, Guidance Start: 0, "
            "Guidance End: 1, Threshold A: 100.0, Threshold B: 200.0, Pixel Perfect: False\"")
    parsed = parse_infotext(text)
    assert (parsed["prompt"], parsed["sampler"], parsed["schedule"]) == ("a lake", "Euler a",
                                                                         "automatic")
    assert parsed["control"] == {
        "type": "none", "preprocess": False, "model": "control_v11p_sd15_canny [d14c016b]",
        "weight": 1.0, "start": 0.0, "end": 1.0, "low_threshold": 100, "high_threshold": 200}


def test_a_schedule_field_wins_over_a_legacy_sampler_suffix():
    parsed = parse_infotext("x\nSteps: 5, Sampler: DPM++ 2M Karras, Schedule type: Exponential,"
                            " Seed: 1")
    assert (parsed["sampler"], parsed["schedule"]) == ("DPM++ 2M", "exponential")


def test_unknown_names_and_bad_numbers_go_to_extra():
    parsed = parse_infotext("x\nSteps: many, Sampler: DPM++ 3M SDE, Schedule type: Align Your "
                            "Steps, Seed: 12, Size: big, Hires upscale: 2")
    assert parsed["sampler"] == "DPM++ 3M SDE" and parsed["schedule"] == "automatic"
    assert "steps" not in parsed and "width" not in parsed and parsed["seed"] == 12
    assert parsed["extra"] == {"Steps": "many", "Schedule type": "Align Your Steps",
                               "Size": "big", "Hires upscale": "2"}


def test_text_without_a_parameters_line_is_all_prompt():
    assert parse_infotext("只有提示词\n第二行")["prompt"] == "只有提示词\n第二行"
    assert parse_infotext("Negative prompt: 模糊")["negative_prompt"] == "模糊"
    assert parse_infotext("") == {"prompt": "", "negative_prompt": "", "schedule": "automatic",
                                  "loras": [], "extra": {}}


def test_extra_fields_are_written_back():
    parsed = parse_infotext(A1111_TEXT)
    again = parse_infotext(format_infotext(parsed))
    assert again == parsed


@given(st.text())
def test_parse_never_raises(text):
    parsed = parse_infotext(text)
    assert isinstance(parsed["prompt"], str)


@given(st.lists(st.sampled_from(["Steps", "Size", "Sampler", ":", ",", '"', "\\", "\n",
                                 "Negative prompt:", "ControlNet 0", "Lora weights", " ", "x",
                                 "12", "3x4", "9" * 5000, "Karras", "\u2028", "\r"]),
                max_size=40).map("".join))
def test_parse_never_raises_on_infotext_like_noise(text):
    assert isinstance(parse_infotext(text)["prompt"], str)


@given(st.text(min_size=1).map(str.strip).filter(bool),
       st.text().map(lambda text: text.strip()),
       st.integers(min_value=0, max_value=2**32 - 1))
def test_any_prompt_round_trips(prompt, negative, seed):
    prompt = "\n".join(prompt.splitlines()).strip()
    negative = "\n".join(negative.splitlines()).strip()
    if any(line.strip().startswith("Negative prompt:") for line in prompt.splitlines()):
        return  # A1111's format cannot tell such a prompt from a negative prompt either
    parsed = parse_infotext(format_infotext({**TXT2IMG, "prompt": prompt,
                                             "negative_prompt": negative, "seed": seed}))
    assert (parsed["prompt"], parsed["negative_prompt"], parsed["seed"]) == (prompt, negative,
                                                                             seed)


def _png_with_text(text: str, itxt: bool) -> Image.Image:
    info = PngImagePlugin.PngInfo()
    (info.add_itxt if itxt else info.add_text)("parameters", text)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="PNG", pnginfo=info)
    return Image.open(io.BytesIO(buffer.getvalue()))


@pytest.mark.parametrize("itxt", [False, True])
def test_reads_the_png_parameters_chunk(itxt):
    text = format_infotext(TXT2IMG if itxt else {**TXT2IMG, "prompt": "ink", "negative_prompt": ""})
    found = read_png_parameters(_png_with_text(text, itxt))
    assert found == text and type(found) is str


@pytest.mark.parametrize("image_format", ["JPEG", "WEBP"])
@pytest.mark.parametrize("encoding", ["utf-16-be", "utf-16-le"])
def test_reads_the_exif_user_comment_a1111_writes(image_format, encoding):
    text = format_infotext(TXT2IMG)
    exif = Image.Exif()
    exif.get_ifd(0x8769)[0x9286] = b"UNICODE\0" + text.encode(encoding)
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format=image_format, exif=exif.tobytes())
    assert read_png_parameters(Image.open(io.BytesIO(buffer.getvalue()))) == text


def test_an_image_without_parameters_gives_none():
    buffer = io.BytesIO()
    Image.new("RGB", (8, 8)).save(buffer, format="JPEG")
    assert read_png_parameters(Image.open(io.BytesIO(buffer.getvalue()))) is None
    assert read_png_parameters(Image.new("RGB", (8, 8))) is None


_NO_LINE_BREAK = st.text(min_size=1).filter(lambda text: len(text.splitlines()) == 1
                                            and text.splitlines()[0] == text)


@given(_NO_LINE_BREAK, _NO_LINE_BREAK.filter(str.strip))
def test_any_field_value_round_trips(model, note):
    text = format_infotext({**TXT2IMG, "model": model, "extra": {"Note": note}})
    assert len(text.splitlines()) == 3
    parsed = parse_infotext(text)
    assert (parsed["model"], parsed["extra"]["Note"]) == (model, note)


def test_image_parameters_show_the_prompt_as_written_with_its_lora_tags():
    """A1111 writes the prompt with its ``<lora:...>`` tags; the prepared request has them in
    ``loras`` only, so the one parameters builder writes what the user wrote."""
    from engine.limits import Limits
    from engine.metadata.parameters import image_parameters
    from engine.requests import PromptInfo, Txt2ImgRequest
    from engine.validation import prepare_request

    written = "江南水乡 <lora:poem:0.4>"
    prepared = prepare_request(Txt2ImgRequest(model="pai-artist-large", prompt=written),
                               Limits())
    parameters = image_parameters(prepared, model="pai-artist-large", seed=7, width=64,
                                  height=64, prompt_info=PromptInfo(4, 77, 1),
                                  precision="fp16", version="0")

    assert parameters["prompt"] == written
    assert parameters["loras"] == [{"name": "poem", "weight": 0.4, "hash": None}]
    text = format_infotext(parameters)
    assert text.splitlines()[0] == written and 'Lora weights: "poem: 0.4"' in text
    assert parse_infotext(text)["prompt"] == written
