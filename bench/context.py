"""What every measurement starts from: the demo model set in a scratch folder and one engine
over it, on CPU in fp32, offline (the tiny replicas ``app.py --demo`` serves)."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from bench.plan import Plan

DEMO_FOLDER = "demo"
CONTROLNET_ID = "demo-controlnet-canny"
LORA_IDS = ("demo-lora-ink", "demo-lora-poem")
PROMPT = "浮岛，天空，白云，城堡，幻想世界"
NEGATIVE_PROMPT = "模糊"
SEED = 1234


@dataclass
class BenchContext:
    root: Path  # scratch folder: the demo set, served apps' data
    demo_root: Path
    engine: Any  # engine.generate.engine.Engine (imported lazily: torch takes seconds)
    base_id: str
    plan: Plan


def offline_environment() -> None:
    """Before huggingface_hub is imported: a missing repo fails at once instead of retrying."""
    os.environ["HF_HUB_OFFLINE"] = "1"


def demo_engine_settings(demo_root: Path):
    """The settings ``app.py --demo`` uses, on CPU in fp32, with its manifest."""
    from engine.demo.build import build_demo, demo_settings
    from engine.settings import EngineSettings

    demo = build_demo(demo_root)
    base = EngineSettings(models_dir=demo_root.parent / "models", device="cpu",
                          precision="fp32")
    return demo_settings(demo, base), demo


def new_engine(demo_root: Path):
    """A fresh engine over the demo set (nothing loaded yet)."""
    from engine.demo.build import demo_manifest_yaml
    from engine.generate.engine import Engine
    from engine.store.manifest import parse_manifest

    settings, _ = demo_engine_settings(demo_root)
    return Engine(settings, parse_manifest(demo_manifest_yaml()))


def build_context(root: Path, plan: Plan) -> BenchContext:
    offline_environment()
    demo_root = root / DEMO_FOLDER
    _, demo = demo_engine_settings(demo_root)
    engine = new_engine(demo_root)
    engine.load(demo.base_id)
    return BenchContext(root=root, demo_root=demo_root, engine=engine, base_id=demo.base_id,
                        plan=plan)
