"""``python -m engine``: generates, prints the seed, fails with exit 2 and a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from engine.cli import main
from helpers import sample_image

ROOT = Path(__file__).resolve().parent.parent


def _common(repos, out: Path) -> list[str]:
    return ["--cache-dir", str(repos.hub_cache), "--models-dir", str(repos.models_dir),
            "--offline", "--device", "cpu", "--steps", "3", "--out", str(out)]


def test_txt2img_writes_png_and_prints_seeds(tiny_repos, tmp_path, capsys):
    out = tmp_path / "out.png"
    code = main(["txt2img", "--model", "pai-artist-large", "--prompt", "雾蒙蒙的日出在湖面上",
                 "--seed", "42", "--width", "64", "--height", "64", "--batch-size", "2",
                 "--lora", "pai-artist-large-lora-poem:0.4", *_common(tiny_repos, out)])
    printed = capsys.readouterr().out
    assert code == 0
    assert "随机数种子 42" in printed and "随机数种子 43" in printed
    assert Image.open(tmp_path / "out-2.png").size == (64, 64)
    # Like the app's, the PNG says how it was made (A1111's infotext).
    parameters = Image.open(tmp_path / "out-2.png").info["parameters"]
    assert parameters.startswith("雾蒙蒙的日出在湖面上") and "Seed: 43" in parameters


def test_same_seed_same_file(tiny_repos, tmp_path):
    paths = [tmp_path / "a.png", tmp_path / "b.png"]
    for path in paths:
        assert main(["txt2img", "--model", "pai-artist-large", "--prompt", "山", "--seed", "5",
                     "--width", "64", "--height", "64", *_common(tiny_repos, path)]) == 0
    assert np.array_equal(*(np.asarray(Image.open(p)) for p in paths))


def test_img2img_and_inpaint(tiny_repos, tmp_path, capsys):
    init, mask = tmp_path / "init.png", tmp_path / "mask.png"
    sample_image(80, 64).save(init)
    Image.new("L", (80, 64), 255).save(mask)
    args = ["img2img", "--model", "pai-artist-large", "--prompt", "山", "--init-image",
            str(init), "--strength", "0.6", "--lang", "en"]
    assert main([*args, *_common(tiny_repos, tmp_path / "i2i.png")]) == 0
    assert main([*args, "--mask", str(mask), *_common(tiny_repos, tmp_path / "inp.png")]) == 0
    assert Image.open(tmp_path / "inp.png").size == (80, 64)
    assert "seed" in capsys.readouterr().out


def test_controlnet_from_the_command_line(tiny_repos, tmp_path):
    control = tmp_path / "control.png"
    sample_image().save(control)
    assert main(["txt2img", "--model", "pai-artist-large", "--prompt", "白色的小鸟",
                 "--controlnet", "pai-artist-large-controlnet-canny", "--control-type", "canny",
                 "--control-image", str(control), "--width", "64", "--height", "64",
                 *_common(tiny_repos, tmp_path / "cn.png")]) == 0


def test_bad_input_exits_2_with_a_translated_message(tiny_repos, tmp_path, capsys):
    code = main(["txt2img", "--model", "pai-artist-large", "--prompt", "山", "--width", "65",
                 *_common(tiny_repos, tmp_path / "x.png")])
    assert code == 2
    assert "宽度和高度必须是 8 的倍数" in capsys.readouterr().err
    code = main(["txt2img", "--model", "pai-food-large", "--prompt", "番茄炒蛋", "--lang", "en",
                 *_common(tiny_repos, tmp_path / "x.png")])
    assert code == 2
    assert "not downloaded" in capsys.readouterr().err
    assert not (tmp_path / "x.png").exists()


def test_unreadable_image_file(tiny_repos, tmp_path, capsys):
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG not really")
    code = main(["img2img", "--model", "pai-artist-large", "--prompt", "山", "--init-image",
                 str(broken), *_common(tiny_repos, tmp_path / "x.png")])
    assert code == 2 and "无法把文件" in capsys.readouterr().err


def test_python_dash_m_engine(tiny_repos, tmp_path):
    out = tmp_path / "cli.png"
    env = {**os.environ, "HF_HUB_OFFLINE": "1"}
    completed = subprocess.run(
        [sys.executable, "-m", "engine", "txt2img", "--model", "pai-artist-large", "--prompt", "山", "--seed", "9",
         "--width", "64", "--height", "64", *_common(tiny_repos, out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "随机数种子 9" in completed.stdout and out.is_file()
