"""Both languages have the same keys, and every error code the engine raises has a text."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from locales import LANGUAGES, error_text, messages, translate, warning_text

ROOT = Path(__file__).resolve().parent.parent
RAISED = re.compile(
    r"(?:InvalidRequest|ModelError|ResourceError|EngineError|EngineWarning)\(\s*\"([a-z_]+)\"")


def codes_in_engine() -> set[str]:
    codes = {"cancelled", "manifest_invalid"}  # set inside JobCancelled and ManifestError
    for folder in ("engine", "api", "ui"):  # wherever an error code is raised
        for path in (ROOT / folder).rglob("*.py"):
            codes |= set(RAISED.findall(path.read_text(encoding="utf-8")))
    return codes


def test_languages_have_the_same_keys():
    assert set(messages("zh-CN")) == set(messages("en"))


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_engine_code_has_a_text(language):
    known = messages(language)
    missing = [code for code in codes_in_engine()
               if f"errors.{code}" not in known and f"warnings.{code}" not in known]
    assert codes_in_engine() >= {"invalid_size", "lora_incompatible", "unknown_sampler",
                                 "job_timeout"}
    assert missing == []


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
         ".pt", ".bin", "ModelScope", "modelscope.cn", "/sdapi/v2/jobs"]


def test_chinese_texts_leave_only_names_in_english():
    for key, text in messages("zh-CN").items():
        rest = re.sub(r"\{[a-z_]+\}", "", text)
        for name in sorted(NAMES, key=len, reverse=True):
            rest = rest.replace(name, "")
        assert not re.search(r"[A-Za-z]{2,}", rest), (key, text)


def test_field_names_are_translated_in_errors():
    assert error_text("zh-CN", "missing_image", {"field": "init_image"}) == "缺少初始图像，或无法读取为图片。"
    assert "inpainting mask" in error_text("en", "missing_image", {"field": "mask"})
    assert "/tmp/a.png" in error_text("en", "image_too_large", {"field": "/tmp/a.png"})
