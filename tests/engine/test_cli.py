"""``python -m engine``: generates, prints the seed, fails with exit 2 and a clear message."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from engine.cli import main
from tests.support.helpers import sample_image

ROOT = Path(__file__).resolve().parents[2]


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


def _pixels(path: Path) -> np.ndarray:
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.int16)


def test_img2img_starts_from_the_init_image(tiny_repos, tmp_path):
    """Two init images, one seed: two different pictures, each at the size asked for."""
    inits = {"square": sample_image(80, 64), "red": Image.new("RGB", (80, 64), (200, 40, 40))}
    outputs = {}
    for name, image in inits.items():
        image.save(tmp_path / f"{name}.png")
        outputs[name] = tmp_path / f"i2i-{name}.png"
        assert main(["img2img", "--model", "pai-artist-large", "--prompt", "山", "--init-image",
                     str(tmp_path / f"{name}.png"), "--strength", "0.3", "--seed", "5",
                     "--width", "64", "--height", "80", "--lang", "en",
                     *_common(tiny_repos, outputs[name])]) == 0
    assert {Image.open(path).size for path in outputs.values()} == {(64, 80)}
    assert "Denoising strength: 0.3" in Image.open(outputs["square"]).info["parameters"]
    # The random VAE squeezes any difference to a few grey levels; one picture made twice
    # differs by none.
    assert np.abs(_pixels(outputs["square"]) - _pixels(outputs["red"])).mean() > 0.5


def test_inpaint_repaints_the_masked_half_and_keeps_the_rest(tiny_repos, tmp_path, capsys):
    """White on the right half of the mask: the right half is repainted; the left, clear of
    the blurred edge (the default blur of 4 reaches 10 px past it), is the init image's, pixel
    for pixel, as the engine pastes the original back outside the mask."""
    init, mask, out = tmp_path / "init.png", tmp_path / "mask.png", tmp_path / "inp.png"
    sample_image(80, 64).save(init)
    right_half = Image.new("L", (80, 64), 0)
    right_half.paste(255, (40, 0, 80, 64))
    right_half.save(mask)
    assert main(["img2img", "--model", "pai-artist-large", "--prompt", "山", "--init-image",
                 str(init), "--mask", str(mask), "--strength", "0.9", "--seed", "5",
                 "--width", "80", "--height", "64", "--lang", "en",
                 *_common(tiny_repos, out)]) == 0
    assert "seed" in capsys.readouterr().out
    painted, original = _pixels(out), _pixels(init)
    assert painted.shape == original.shape == (64, 80, 3)
    assert np.array_equal(painted[:, :20], original[:, :20])
    assert np.abs(painted[:, 60:] - original[:, 60:]).mean() > 10


def test_controlnet_from_the_command_line_uses_the_control_image(tiny_repos, tmp_path,
                                                                monkeypatch):
    """Canny edges of a square, and of a plain grey picture. The tiny ControlNet's random
    weights move the picture by a grey level at most, so the control image shows in the
    control map the engine makes of what the command line read: edges, and none."""
    from engine.generate.engine import Engine

    made = []
    generate = Engine.generate

    def recording(self, prepared, *args, **kwargs):
        result = generate(self, prepared, *args, **kwargs)
        made.append((prepared.request, result))
        return result

    monkeypatch.setattr(Engine, "generate", recording)
    controls = {"edges": sample_image(), "plain": Image.new("RGB", (64, 64), (90, 90, 90))}
    outputs = {}
    for name, image in controls.items():
        image.save(tmp_path / f"{name}.png")
        outputs[name] = tmp_path / f"cn-{name}.png"
        assert main(["txt2img", "--model", "pai-artist-large", "--prompt", "白色的小鸟",
                     "--controlnet", "pai-artist-large-controlnet-canny", "--control-type",
                     "canny", "--control-image", str(tmp_path / f"{name}.png"),
                     "--control-weight", "0.7", "--canny-low", "50", "--canny-high", "150",
                     "--seed", "5", "--width", "80", "--height", "64",
                     *_common(tiny_repos, outputs[name])]) == 0

    assert {Image.open(path).size for path in outputs.values()} == {(80, 64)}
    parameters = Image.open(outputs["edges"]).info["parameters"]
    assert "Module: canny" in parameters and "Weight: 0.7" in parameters
    assert "Threshold A: 50" in parameters and "Threshold B: 150" in parameters
    for (request, _), image in zip(made, controls.values(), strict=True):
        read = np.asarray(request.control.image.convert("RGB"))
        assert np.array_equal(read, np.asarray(image))
    (_, edges), (_, plain) = made
    assert edges.control_map.size == plain.control_map.size == (80, 64)
    assert np.asarray(edges.control_map).max() == 255
    assert np.asarray(plain.control_map).max() == 0


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
        [sys.executable, "-m", "engine", "txt2img", "--model", "pai-artist-large",
         "--prompt", "山", "--seed", "9", "--width", "64", "--height", "64",
         *_common(tiny_repos, out)],
        cwd=ROOT, env=env, capture_output=True, text=True, timeout=300)
    assert completed.returncode == 0, completed.stderr
    assert "随机数种子 9" in completed.stdout and out.is_file()
