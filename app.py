"""画境 Huajing: the composition root. Reads the settings, builds the image service and the
WebUI, and launches. Nothing else wires things together.

    python app.py [--demo] [--lang en] [--host 0.0.0.0 --auth user:pass] [--share ...]
"""

from __future__ import annotations

import dataclasses
import logging
import os
import sys
from pathlib import Path

from app_settings import AppSettings, PreferencesStore, SettingsError, parse_settings

logger = logging.getLogger("huajing")

QUEUE_SIZE = 32  # waiting jobs beyond this are refused rather than piling up


def configure_logging(verbose: bool) -> None:
    logging.basicConfig(level=logging.INFO if verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("huajing").setLevel(logging.INFO)
    for noisy in ("httpx", "urllib3", "huggingface_hub"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def engine_settings(settings: AppSettings, memory_mode: str):
    from engine.settings import EngineSettings

    return EngineSettings(models_dir=settings.models_dir, hub_cache_dir=settings.cache_dir,
                          offline=settings.offline, device=settings.device,
                          precision=settings.precision, memory_mode=memory_mode)


def build_service(settings: AppSettings, memory_mode: str, output_dir: Path):
    from engine.manifest import load_manifest
    from engine.service import ImageService

    config = engine_settings(settings, memory_mode)
    active = None
    if settings.demo:
        from engine.demo import build_demo, demo_settings

        demo_set = build_demo(settings.data_dir / "demo")
        config, active = demo_settings(demo_set, config), demo_set.base_id
    return ImageService(config, load_manifest(config.manifest_path), output_dir=output_dir,
                        active_model=active)


def gpu_decorator():
    """ZeroGPU on Hugging Face Spaces lends a GPU per call to functions wrapped by spaces.GPU."""
    try:
        import spaces  # type: ignore[import-not-found]
    except ImportError:
        return None
    return spaces.GPU


def main(argv: list[str] | None = None) -> int:
    try:
        settings = parse_settings(argv, os.environ)
    except SettingsError as error:
        print(error, file=sys.stderr)
        return 2
    configure_logging(settings.verbose)
    preferences_store = PreferencesStore(settings.data_dir / "settings.json")
    preferences = preferences_store.load()
    if settings.language:
        preferences = dataclasses.replace(preferences, language=settings.language)
    service = build_service(settings, preferences.memory_mode, Path(preferences.output_dir))
    from ui.app import UiOptions, build_ui

    ui = build_ui(service, UiOptions(preferences, settings.demo, gpu_decorator()),
                  preferences_store)
    ui.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    service.start(preload=True)
    logger.info("serving on %s:%d", settings.host, settings.port)
    ui.launch(server_name=settings.host, server_port=settings.port, share=settings.share,
              auth=list(settings.auth) or None, show_error=False, inbrowser=False,
              theme=None, css=None, footer_links=["api", "gradio"])
    return 0


if __name__ == "__main__":
    sys.exit(main())
