"""Both languages have the same keys, and every registered code has a text (and every
error or warning text a registered code): the registries, not a scan of the source, say which
codes exist, so a code built in a variable cannot escape."""

from __future__ import annotations

import json
import re

import pytest

from api.guard import GuardCode
from engine.downloads.jobs import DownloadState
from engine.errors import (
    ErrorCode,
    JobCancelled,
    ModelError,
    SkipImage,
    UnregisteredCode,
    WarningCode,
)
from engine.requests import EngineWarning
from engine.store.catalog import ModelState
from engine.store.manifest import ManifestError
from locales import LANGUAGES, error_text, language_of, messages, translate, warning_text


def registered_texts() -> set[str]:
    """The locale key of every registered code: errors, the guard's refusals, warnings."""
    return ({f"errors.{code}" for code in ErrorCode}
            | {f"errors.guard_{code}" for code in GuardCode}
            | {f"warnings.{code}" for code in WarningCode})


def test_languages_have_the_same_keys():
    assert set(messages("zh-CN")) == set(messages("en"))


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_registered_code_has_a_text(language):
    assert sorted(registered_texts() - set(messages(language))) == []


def test_every_error_and_warning_text_belongs_to_a_registered_code():
    texts = {key for key in messages("zh-CN") if key.startswith(("errors.", "warnings."))}
    assert sorted(texts - registered_texts()) == []  # a text whose code is gone


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_download_and_model_state_has_a_text(language):
    # The models tab builds these keys from the states (models.download_<state>).
    keys = {f"models.download_{state.value}" for state in DownloadState} | {
        f"models.state_{state.value}" for state in ModelState}
    assert sorted(keys - set(messages(language))) == []


def test_an_unregistered_code_fails_when_the_error_is_built():
    with pytest.raises(UnregisteredCode, match="no_such_code"):
        ModelError("no_such_code", name="x")
    with pytest.raises(UnregisteredCode, match="no_such_warning"):
        EngineWarning("no_such_warning")
    error = ModelError("unknown_model", name="x")
    assert error.code is ErrorCode.UNKNOWN_MODEL and error.code == "unknown_model"
    assert json.dumps({"error": error.code}) == '{"error": "unknown_model"}'
    assert EngineWarning("save_failed").code is WarningCode.SAVE_FAILED
    # The subclasses that set their own code set a registered one.
    assert {JobCancelled().code, SkipImage().code, ManifestError("x", "y").code} == {
        "cancelled", "skipped", "manifest_invalid"}


@pytest.mark.parametrize(("header", "language"), [
    (None, "zh-CN"), ("", "zh-CN"), ("en", "en"), ("en-US,en;q=0.9", "en"), ("EN-gb", "en"),
    ("zh-CN,zh;q=0.9,en;q=0.8", "zh-CN"), ("zh-TW", "zh-CN"), ("fr-FR,fr;q=0.9,en;q=0.8", "en"),
    ("de", "zh-CN"), ("en;q=0.1, zh;q=0.5", "zh-CN"), ("en;q=0, fr", "zh-CN"),
    ("en;q=high", "zh-CN"), ("fr, en ; q=0.5", "en"),
])
def test_the_answer_language_is_the_clients_first_choice_that_we_have(header, language):
    assert language_of(header) == language


def test_a_header_naming_none_of_ours_gets_the_apps_language():
    assert language_of("de", default="en") == language_of(None, default="en") == "en"


def test_texts_are_filled_with_parameters():
    text = error_text("zh-CN", "invalid_size", {"value": "513", "min": 64, "max": 2048,
                                                "step": 8})
    assert text == "宽度和高度必须是 8 的倍数，范围 64 到 2048（收到 513）。"
    assert "{name}" in error_text("en", "unknown_lora", {})  # a missing parameter stays visible
    assert warning_text("en", "lora_base_mismatch", {"lora": "a", "expected": "b", "base": "c"})


def test_unknown_language_falls_back_to_chinese_and_unknown_key_to_itself():
    assert translate("fr", "errors.cancelled") == "生成已中止。"
    assert translate("en", "errors.no_such_code") == "errors.no_such_code"


# Names stay as they are in Chinese UIs too (the glossary keeps them); so do file names,
# environment variables and sites.
NAMES = ["Stable Diffusion", "Schedule type", "CFG Scale", "ControlNet", "LoRA", "CFG", "VAE",
         "PNG", "Canny", "DPT", "MiDaS", "Lineart coarse", "Lineart", "HED", "PiDiNet", "MLSD",
         "Shuffle", "Sampler", "Steps", "Seed", "Huajing", "token", "NaN", "NUL", "fp32", "PAI",
         "diffusers", "kohya", "pickle", "safetensors", "model_index.json", "hf-mirror.com",
         "hub", "id", "models/lora", "TORCH_FORCE_NO_WEIGHTS_ONLY_LOAD", "lora", "Automatic",
         "python -m engine download", "Hugging Face", "SHA-256", "http(s)", "HTTP", "GB",
         "MB", "HF_ENDPOINT", "https://hf-mirror.com", "fp16", "MB/s",
         "pai-diffusion-artist-large-zh", "PAI-Diffusion", "SD", "models/checkpoints", ".ckpt",
         ".pt", ".bin", "ModelScope", "modelscope.cn", "/sdapi/v2/jobs", "X-Job-Token",
         "PyTorch", "CUDA", "NVIDIA", "CPU", "README", "channels-last", "QKV", "UNet",
         "torch.compile", "DeepCache", "TAESD"]


def test_chinese_texts_leave_only_names_in_english():
    for key, text in messages("zh-CN").items():
        rest = re.sub(r"\{[a-z_]+\}", "", text)
        for name in sorted(NAMES, key=len, reverse=True):
            rest = rest.replace(name, "")
        assert not re.search(r"[A-Za-z]{2,}", rest), (key, text)


def test_field_names_are_translated_in_errors():
    assert (error_text("zh-CN", "missing_image", {"field": "init_image"})
            == "缺少初始图像，或无法读取为图片。")
    assert "inpainting mask" in error_text("en", "missing_image", {"field": "mask"})
    assert "/tmp/a.png" in error_text("en", "image_too_large", {"field": "/tmp/a.png"})
