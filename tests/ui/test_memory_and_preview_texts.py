"""设置's texts about memory and previews: each loaded model's memory mode in the 设备 section
(from the engine's device report), and the line that says TAESD is not downloaded yet."""

from __future__ import annotations

import pytest

from engine.device_report import DeviceReport
from engine.fake_engine import fake_image_service
from engine.memory_plan import GIB, MemoryChoice, ModelMemory
from engine.settings import MEMORY_MODES
from locales import LANGUAGES, translate
from ui.device_view import details_markdown
from ui.settings_tab import _memory_choices, taesd_note

ZH = "zh-CN"


def report(*models: ModelMemory) -> DeviceReport:
    return DeviceReport(device="cuda:0", precision="fp16", torch_version="2.7.1+cu128",
                        torch_build="CUDA 12.8", gpu_name="NVIDIA GeForce GTX 1650",
                        gpu_memory_bytes=4 * GIB, models=models)


def test_the_device_section_says_what_auto_chose_and_why():
    chosen = MemoryChoice("model_offload", "auto", free_bytes=int(3.2 * GIB),
                          needed_bytes=int(4.1 * GIB))
    text = details_markdown(report(ModelMemory("pai-artist-large", chosen)), ZH)
    assert text.endswith("pai-artist-large：自动：模型 CPU 卸载（可用显存 3.2 GB，需要 4.1 GB）")
    english = details_markdown(report(ModelMemory("pai-artist-large", chosen)), "en")
    assert english.endswith("pai-artist-large: automatic: model CPU offload "
                            "(3.2 GB free, 4.1 GB needed on the GPU)")


def test_each_loaded_model_has_its_line_fixed_modes_say_they_were_chosen():
    text = details_markdown(report(
        ModelMemory("pai-artist-large", MemoryChoice("gpu", "auto", 20 * GIB, 5 * GIB)),
        ModelMemory("pai-anime-large", MemoryChoice("sequential_offload", "sequential_offload"))),
        ZH)
    assert "pai-artist-large：自动：全部在显卡上（可用显存 20.0 GB，需要 5.0 GB）" in text
    assert "pai-anime-large：逐层 CPU 卸载（在设置中选定）" in text


def test_on_the_cpu_the_line_says_nothing_is_offloaded():
    cpu = DeviceReport(device="cpu", precision="fp32", torch_version="2.7.1+cpu",
                       torch_build="CPU", gpu_name=None, gpu_memory_bytes=None,
                       models=(ModelMemory("pai-artist-large", MemoryChoice("device", "auto")),))
    assert details_markdown(cpu, ZH).endswith("pai-artist-large：全部权重在 cpu 上（无需卸载）")


def test_no_model_loaded_no_memory_line():
    assert "卸载" not in details_markdown(report(), ZH)


@pytest.mark.parametrize("language", LANGUAGES)
def test_every_memory_mode_has_a_label_and_auto_comes_first(language):
    choices = _memory_choices(language)
    assert [mode for _, mode in choices] == list(MEMORY_MODES) and MEMORY_MODES[0] == "auto"
    assert len({label for label, _ in choices}) == len(MEMORY_MODES)


def test_the_taesd_line_shows_until_taesd_is_downloaded(tmp_path):
    without, _ = fake_image_service(tmp_path / "a", downloaded=["pai-artist-large"])
    assert taesd_note(without, ZH) == translate(ZH, "settings.taesd_missing")
    assert taesd_note(without, ZH).startswith("TAESD 未下载，预览使用近似方式")
    with_taesd, _ = fake_image_service(tmp_path / "b", downloaded=["pai-artist-large", "taesd"])
    assert taesd_note(with_taesd, ZH) == ""
