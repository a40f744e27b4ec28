"""Layer boundaries: the engine works without gradio; its request types work without torch."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def _modules_after(statement: str) -> set[str]:
    code = f"{statement}\nimport sys\nprint(' '.join(sorted(sys.modules)))"
    output = subprocess.run([sys.executable, "-c", code], cwd=ROOT, check=True,
                            capture_output=True, text=True).stdout
    return {name.split(".")[0] for name in output.split()}


def test_engine_does_not_import_gradio():
    loaded = _modules_after("import engine.generate.engine, engine.cli, engine.demo.tiny_models")
    assert "torch" in loaded and "gradio" not in loaded


def test_request_types_import_without_torch():
    loaded = _modules_after(
        "import engine.requests, engine.validation, engine.limits, engine.errors, "
        "engine.samplers, engine.store.manifest, engine.settings, engine.prompt_syntax, locales")
    assert not loaded & {"torch", "diffusers", "transformers", "gradio", "controlnet_aux"}
