"""The built-in offline demo model set behind ``app.py --demo``.

``build_demo(root)`` writes, with the engine's own tiny-model factory, a hub cache holding a
tiny PAI-style base, a Canny and a depth ControlNet for it, three LoRA styles in PAI's legacy
format, the tiny DPT depth model (as ``Intel/dpt-large``) and the tiny
``lllyasviel/Annotators`` replica (filed as the main manifest's annotator weights), plus a demo
manifest listing them. Every tab then works with
no download. The weights are random: every image is noise.

The set is built in a scratch folder and moved into place; a ``complete`` marker holding
``DEMO_VERSION`` is written last. A set whose marker is missing or names another version (a
crash mid-build, an older layout) is rebuilt; a complete one is returned at once.
``demo_settings`` points an ``EngineSettings`` at the set, offline.
"""

from __future__ import annotations

import dataclasses
import logging
import shutil
import tempfile
import time
from pathlib import Path

import yaml

from engine.settings import EngineSettings

logger = logging.getLogger(__name__)

DEMO_MANIFEST_NAME = "demo_manifest.yaml"
DEMO_VERSION = 4  # 3: annotator weights filed per manifest entry; 4: a tiny TAESD
MARKER_NAME = "complete"
HUB_DIR_NAME = "hub"
SCRATCH_PREFIX = ".building-"

DEMO_ORG = "huajing-demo"
BASE_ID = "demo-base"
BASE_REPO = f"{DEMO_ORG}/tiny-base"
# sample_size 32 x the VAE's factor 8: a 256x256 default image, roomier in the UI than 64.
BASE_SAMPLE_SIZE = 32
DEFAULT_SIDE = BASE_SAMPLE_SIZE * 8
LORA_FILE = "pytorch_lora_weights.bin"
PREVIEW_FILE = "preview.png"
LICENSE = "apache-2.0"
LORA_WEIGHT = 0.8

_NOISE_ZH = "演示模型（随机权重，只会画出噪声）"
_NOISE_EN = "Demo model (random weights: it only draws noise)"


@dataclasses.dataclass(frozen=True)
class DemoSet:
    """A complete demo set on disk; ``base_id`` is the manifest id of its base model."""

    root: Path
    hub_cache: Path
    manifest_path: Path
    base_id: str = BASE_ID


@dataclasses.dataclass(frozen=True)
class _ControlNetSpec:
    id: str
    repo: str
    control_type: str
    seed: int
    zh: str
    en: str
    prompt: str


@dataclasses.dataclass(frozen=True)
class _LoraSpec:
    id: str
    repo: str
    seed: int
    zh: str
    en: str
    prompt: str


CONTROLNETS = (
    _ControlNetSpec("demo-controlnet-canny", f"{DEMO_ORG}/tiny-controlnet-canny", "canny", 11,
                    "演示：硬边缘控制（Canny）", "Demo: Canny edges", "白色的小鸟"),
    _ControlNetSpec("demo-controlnet-depth", f"{DEMO_ORG}/tiny-controlnet-depth", "depth", 12,
                    "演示：深度控制", "Demo: depth", "雪地上的帐篷"),
)
LORAS = (
    _LoraSpec("demo-lora-ink", f"{DEMO_ORG}/tiny-lora-ink", 41, "演示：水墨", "Demo: ink wash",
              "亭台楼阁，水墨绘画，中国风"),
    _LoraSpec("demo-lora-poem", f"{DEMO_ORG}/tiny-lora-poem", 42, "演示：诗意", "Demo: poetic",
              "大漠孤烟直，长河落日圆"),
    _LoraSpec("demo-lora-25d", f"{DEMO_ORG}/tiny-lora-25d", 43, "演示：2.5D", "Demo: 2.5D",
              "蓝天，白云，大草原"),
)


# -- public API ------------------------------------------------------------------------------

def demo_set_at(root: Path) -> DemoSet:
    """Where the demo set under ``root`` lives (built or not)."""
    root = Path(root)
    return DemoSet(root=root, hub_cache=root / HUB_DIR_NAME,
                   manifest_path=root / DEMO_MANIFEST_NAME)


def is_complete(root: Path) -> bool:
    """Whether ``root`` holds a finished set of this version."""
    marker = Path(root) / MARKER_NAME
    try:
        return marker.read_text(encoding="utf-8").strip() == str(DEMO_VERSION)
    except OSError:
        return False


def build_demo(root: Path) -> DemoSet:
    """The demo set under ``root``: returned at once when complete, (re)built otherwise."""
    root = Path(root)
    demo = demo_set_at(root)
    if is_complete(root):
        logger.debug("demo model set at %s is complete", root)
        return demo
    root.mkdir(parents=True, exist_ok=True)
    _remove_leftover_scratch(root)
    started = time.perf_counter()
    scratch = Path(tempfile.mkdtemp(prefix=SCRATCH_PREFIX, dir=root))
    try:
        _build_into(scratch)
        _move_into_place(scratch, demo)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    _write_marker(root)
    logger.info("built the demo model set at %s in %.1f s", root, time.perf_counter() - started)
    return demo


def demo_settings(demo: DemoSet, base: EngineSettings) -> EngineSettings:
    """``base`` pointed at the demo set's hub cache and manifest, offline."""
    return dataclasses.replace(base, hub_cache_dir=demo.hub_cache,
                               manifest_path=demo.manifest_path, offline=True)


# -- building --------------------------------------------------------------------------------

def _build_into(scratch: Path) -> None:
    """Write every demo repo into ``scratch/hub`` and the manifest beside it."""
    import torch

    made, hub = scratch / "made", scratch / HUB_DIR_NAME
    # The factory seeds torch's global generator; leave the caller's random state as it was.
    with torch.random.fork_rng(devices=[]):
        repos = _write_repos(made)
    for folder, repo in repos:
        _place(folder, repo, hub)
    _place_annotators(made, hub)
    shutil.rmtree(made)
    (scratch / DEMO_MANIFEST_NAME).write_text(demo_manifest_yaml(), encoding="utf-8")


def _write_repos(made: Path) -> list[tuple[Path, str]]:
    """(folder, repo id) for every repo of the set, written under ``made``."""
    from engine.demo import tiny_models as tiny
    from engine.generate.preprocessors import DEPTH_MODEL_REPO

    base = tiny.write_base_model(made / "base", tiny.TinyBaseSpec(sample_size=BASE_SAMPLE_SIZE))
    repos = [(base, BASE_REPO)]
    for spec in CONTROLNETS:
        repos.append((tiny.write_controlnet(made / spec.id, base, seed=spec.seed), spec.repo))
    for lora in LORAS:
        tiny.write_pai_legacy_lora(made / lora.id / LORA_FILE, base, seed=lora.seed)
        _write_preview(made / lora.id / PREVIEW_FILE, lora.seed)
        repos.append((made / lora.id, lora.repo))
    repos.append((tiny.write_depth_model(made / "dpt"), DEPTH_MODEL_REPO))
    repos.append((tiny.write_taesd(made / "taesd"), _taesd_entry().repo))
    return repos


def _place_annotators(made: Path, hub: Path) -> None:
    from engine.demo.tiny_annotators import (
        place_annotators_in_hub_cache,
        write_tiny_annotators_repo,
    )

    folder = write_tiny_annotators_repo(made / "annotators")
    place_annotators_in_hub_cache(folder, _annotator_entries(), hub)


def _annotator_entries():
    """The main manifest's preprocessor weights: the same detectors, the same files."""
    from engine.settings import DEFAULT_MANIFEST
    from engine.store.manifest import ModelKind, load_manifest

    return load_manifest(DEFAULT_MANIFEST).of_kind(ModelKind.ANNOTATOR)


def _taesd_entry():
    """The main manifest's live preview decoder: the demo's is tiny and draws noise."""
    from engine.settings import DEFAULT_MANIFEST, TAESD_MODEL
    from engine.store.manifest import load_manifest

    entry = load_manifest(DEFAULT_MANIFEST).get(TAESD_MODEL)
    assert entry is not None  # the manifest test checks it is there
    return entry


def _write_preview(path: Path, seed: int) -> None:
    """A style card picture: a soft two-colour gradient, different for each style."""
    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(seed)
    first, second = rng.integers(40, 230, 3), rng.integers(40, 230, 3)
    ramp = np.linspace(0.0, 1.0, 128)[:, None, None]
    pixels = first * (1 - ramp) + second * ramp
    Image.fromarray(np.repeat(pixels, 192, axis=1).astype(np.uint8)).save(path)


def _remove_leftover_scratch(root: Path) -> None:
    """Scratch folders of a build that crashed (one set is built by one process at a time)."""
    for leftover in root.glob(SCRATCH_PREFIX + "*"):
        logger.info("removing %s, left by an unfinished build", leftover)
        _remove(leftover)


def _place(folder: Path, repo: str, hub: Path) -> None:
    from engine.demo.tiny_models import place_in_hub_cache

    place_in_hub_cache(folder, repo, hub)
    logger.debug("placed %s", repo)


def _move_into_place(scratch: Path, demo: DemoSet) -> None:
    """Replace any leftover hub cache and manifest with the freshly built ones."""
    _remove(demo.root / MARKER_NAME)
    for name in (HUB_DIR_NAME, DEMO_MANIFEST_NAME):
        _remove(demo.root / name)
        (scratch / name).rename(demo.root / name)


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    elif path.exists() or path.is_symlink():
        path.unlink()


def _write_marker(root: Path) -> None:
    """Written last, through a rename, so a marker is never half written."""
    partial = root / (MARKER_NAME + ".tmp")
    partial.write_text(f"{DEMO_VERSION}\n", encoding="utf-8")
    partial.replace(root / MARKER_NAME)


# -- manifest --------------------------------------------------------------------------------

def _text(zh: str, en: str) -> dict:
    return {"zh": zh, "en": en}


def _noise_description(zh: str, en: str) -> dict:
    return _text(f"{_NOISE_ZH}：{zh}", f"{_NOISE_EN}: {en}")


def _base_entry() -> dict:
    return {
        "id": BASE_ID, "kind": "base", "repo": BASE_REPO,
        "name": _text("演示底模", "Demo base"),
        "description": _noise_description(
            "离线内置的微型底模，用来试用每个页面，无需下载。",
            "a tiny built-in offline base for trying every tab with no download."),
        "license": LICENSE,
        "default_size": {"width": DEFAULT_SIDE, "height": DEFAULT_SIDE},
        "recommended": {"sampler": "DPM++ 2M", "schedule": "automatic", "steps": 4,
                        "guidance": 7.0, "strength": 0.8},
        "examples": [{"prompt": "浮岛，天空，白云，城堡，幻想世界",
                      "negative_prompt": "油画，模糊，雾蒙蒙"},
                     {"prompt": "雾蒙蒙的日出在湖面上"}],
    }


def _controlnet_entry(spec: _ControlNetSpec) -> dict:
    return {
        "id": spec.id, "kind": "controlnet", "repo": spec.repo, "base": BASE_ID,
        "control_type": spec.control_type, "name": _text(spec.zh, spec.en),
        "description": _noise_description(
            f"{spec.control_type} 控制，只配合演示底模使用。",
            f"{spec.control_type} control, for the demo base only."),
        "license": LICENSE,
        "recommended": {"sampler": "Euler a", "schedule": "automatic", "steps": 4,
                        "guidance": 5.0},
        "examples": [{"prompt": spec.prompt}],
    }


def _lora_entry(spec: _LoraSpec) -> dict:
    return {
        "id": spec.id, "kind": "lora", "repo": spec.repo, "base": BASE_ID,
        "weight_file": LORA_FILE, "preview_image": PREVIEW_FILE,
        "name": _text(spec.zh, spec.en),
        "description": _noise_description(
            "PAI 旧格式的 LoRA 风格，只配合演示底模使用。",
            "a LoRA style in PAI's legacy format, for the demo base only."),
        "license": LICENSE,
        "recommended": {"lora_weight": LORA_WEIGHT},
        "examples": [{"prompt": spec.prompt}],
    }


def _annotator_entry(entry) -> dict:
    """The main manifest's entry (the id the preprocessor asks for, its files), as a demo one."""
    return {
        "id": entry.id, "kind": "annotator", "repo": entry.repo, "files": list(entry.files),
        "name": _text(f"演示：{entry.name.zh}", f"Demo: {entry.name.en}"),
        "description": _noise_description(
            "微型预处理器权重，画出的控制图是噪声。",
            "tiny preprocessor weights that draw noise as the control map."),
        "license": LICENSE,
    }


def demo_manifest() -> dict:
    """The demo manifest as plain data, in the schema of ``models_manifest.yaml``."""
    models = [_base_entry()]
    models += [_controlnet_entry(spec) for spec in CONTROLNETS]
    models += [_lora_entry(spec) for spec in LORAS]
    models += [_annotator_entry(entry) for entry in _annotator_entries()]
    taesd = _taesd_entry()
    models.append({
        "id": taesd.id, "kind": taesd.kind.value, "repo": taesd.repo,
        "name": _text(f"演示：{taesd.name.zh}", f"Demo: {taesd.name.en}"),
        "description": _noise_description("微型预览解码器，预览是噪声。",
                                          "a tiny preview decoder that draws noise."),
        "license": LICENSE})
    return {"version": 1, "models": models}


def demo_manifest_yaml() -> str:
    header = (f"# The built-in demo model set (version {DEMO_VERSION}), written by "
              "engine/demo/build.py.\n# Random weights: every image is noise.\n")
    body = yaml.safe_dump(demo_manifest(), allow_unicode=True, sort_keys=False, width=100)
    return header + body
