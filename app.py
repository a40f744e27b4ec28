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

from app_settings import (
    AppSettings,
    PreferencesStore,
    SettingsError,
    output_folder,
    parse_settings,
)
from engine.settings import SpeedSettings

logger = logging.getLogger("huajing")

QUEUE_SIZE = 32  # waiting jobs beyond this are refused rather than piling up
MAX_UPLOAD = "50mb"


def configure_logging(verbose: bool) -> None:
    from engine.logging_setup import configure_logging as configure_engine_logging

    configure_engine_logging(verbose, quiet_now=False)
    logging.getLogger("huajing").setLevel(logging.INFO)


def engine_settings(settings: AppSettings, memory_mode: str,
                    speed: SpeedSettings | None = None):
    from engine.settings import EngineSettings

    return EngineSettings(models_dir=settings.models_dir, hub_cache_dir=settings.cache_dir,
                          offline=settings.offline, device=settings.device,
                          precision=settings.precision, memory_mode=memory_mode,
                          convert_downloads=settings.convert_downloads,
                          speed=speed or SpeedSettings())


def build_service(settings: AppSettings, memory_mode: str, output_dir: Path,
                  speed: SpeedSettings | None = None):
    """The image service; its engine (and, with --demo, the demo models) start in the
    background, so the page is served before torch is even imported."""
    from engine.service import ImageService, default_engine_factory
    from engine.store.manifest import load_manifest, parse_manifest

    config = engine_settings(settings, memory_mode, speed)
    if not settings.demo:
        return ImageService(config, load_manifest(config.manifest_path), output_dir=output_dir)
    from engine.demo.build import build_demo, demo_manifest_yaml, demo_set_at, demo_settings

    root = settings.data_dir / "demo"
    demo_set = demo_set_at(root)

    def build_then_start(engine_config, manifest):
        from engine.logging_setup import quiet_libraries

        quiet_libraries()
        build_demo(root)  # seconds on the first run; at once when the set is complete
        return default_engine_factory(engine_config, manifest)

    return ImageService(demo_settings(demo_set, config), parse_manifest(demo_manifest_yaml()),
                        output_dir=output_dir, active_model=demo_set.base_id,
                        engine_factory=build_then_start)


def log_device_report(service, language: str) -> None:
    """Once the engine has started: one line saying what generation runs on, and a warning in
    the app's language naming the command that fixes it when torch cannot use the GPU."""
    from locales import warning_text

    report = service.device_report()
    if report is None:
        return
    logger.info("device: %s", report.summary())
    if report.problem is not None:
        logger.warning("%s", warning_text(language, report.problem.code, report.problem.params))


def gpu_decorator():
    """ZeroGPU on Hugging Face Spaces lends a GPU per call to functions wrapped by spaces.GPU."""
    try:
        import spaces
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
    outputs_base = settings.outputs_base.resolve()  # fixed now, whatever the cwd becomes
    preferences_store = PreferencesStore(settings.data_dir / "settings.json", outputs_base)
    preferences = preferences_store.load()
    if settings.language:
        preferences = dataclasses.replace(preferences, language=settings.language)
    service = build_service(settings, preferences.memory_mode,
                            output_folder(preferences.output_dir, outputs_base),
                            speed=preferences.speed)
    from api.guard import LoginThrottle
    from ui.access import Access
    from ui.app import UiOptions, build_ui

    throttle = LoginThrottle()  # one back-off for wrong passwords: login, Basic auth and 设置
    options = UiOptions(preferences, settings.demo, gpu_decorator(), source_flag=settings.source,
                        hf_endpoint=settings.hf_endpoint,
                        access=Access.from_settings(settings, throttle),
                        outputs_base=outputs_base,
                        allow_private_endpoint=settings.allow_private_endpoint)
    ui = build_ui(service, options, preferences_store)
    # PIL refuses larger images before decoding them (decompression bombs).
    from PIL import Image

    Image.MAX_IMAGE_PIXELS = service.limits.max_input_pixels
    ui.queue(max_size=QUEUE_SIZE, default_concurrency_limit=1)
    service.after_start(lambda: log_device_report(service, preferences.language))
    service.start(preload=True)
    return serve(build_http_app(ui, service, settings, throttle), settings)


def build_http_app(ui, service, settings: AppSettings, throttle=None):
    """One app on one port: the API's routes, then the WebUI, all behind the request guard
    (host, origin, credentials and body size are checked before any route runs)."""
    from fastapi import FastAPI

    from api.guard import GuardPolicy, LoginThrottle, RequestGuard
    from api.routes import ApiOptions, install
    from api.server import allowed_hosts_for
    from ui.hosting import login_cookie_user, mount_ui

    app = FastAPI(docs_url=None, redoc_url=None, openapi_url=None)
    install(app, service, ApiOptions(auth=settings.auth, single_user=settings.single_user,
                                     admins=frozenset(settings.admins)))
    gradio_app = mount_ui(app, ui, list(settings.auth) or None, MAX_UPLOAD, settings.host,
                          settings.port)
    hosts = allowed_hosts_for(settings.host, settings.allowed_hosts, dict(os.environ))
    policy = GuardPolicy(allowed_hosts=hosts, users=dict(settings.auth),
                         session_user=login_cookie_user(gradio_app),
                         throttle=throttle or LoginThrottle())
    return RequestGuard(app, policy)


def serve(guarded_app, settings: AppSettings) -> int:
    """Serve until Ctrl-C; with --share, also through a public link (its host is allowed)."""
    from api.server import build_server, install_repeat_filter

    install_repeat_filter()
    server = build_server(guarded_app, settings.host, settings.port)
    thread = server.start_in_thread()
    logger.info("serving on http://%s:%d", settings.host, settings.port)
    if settings.share:
        from ui.hosting import open_share_link

        try:
            public = open_share_link(settings.host, settings.port)
            guarded_app.policy.allowed_hosts.add(public.split("://", 1)[1])
        except Exception as error:  # noqa: BLE001 - the local server goes on without it
            logger.error("could not open a share link: %s", type(error).__name__)
    try:
        while thread.is_alive():
            thread.join(0.5)
    except KeyboardInterrupt:
        server.should_exit = True
        thread.join(10)
    return 0


if __name__ == "__main__":
    sys.exit(main())
