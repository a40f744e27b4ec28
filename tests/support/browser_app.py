"""Helpers for the browser tests: the real app (``app.py --demo``) as a subprocess, and a few
Playwright conveniences. The pytest fixtures themselves live in ``test_browser.py``.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts"
SCREENSHOTS = ARTIFACTS / "screenshots"

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update",
                 "--disable-sync"]

READY_TIMEOUT_S = 60
# Every wait in the tests is a readiness loop with one of these ceilings, never an assertion
# about how long something took. The first job also waits for the engine to start.
JOB_TIMEOUT_MS = 90_000
UI_TIMEOUT_MS = 15_000

TAB_IDS = ("txt2img", "img2img", "controlnet", "lora", "models", "pnginfo", "settings")


@dataclass
class RunningApp:
    process: subprocess.Popen
    url: str
    data_dir: Path
    output_dir: Path
    log_path: Path

    def log(self) -> str:
        try:
            return self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def app_environment(data_dir: Path) -> dict[str, str]:
    env = dict(os.environ)
    for name in ("GRADIO_SERVER_NAME", "GRADIO_SERVER_PORT", "PORT"):
        env.pop(name, None)
    env.update(HF_HUB_OFFLINE="1", PYTHONUNBUFFERED="1", GRADIO_ANALYTICS_ENABLED="False",
               GRADIO_TEMP_DIR=str(data_dir / "gradio-temp"))
    return env


def start_app(data_dir: Path) -> RunningApp:
    """Start ``app.py --demo`` with its data (settings, demo models) and outputs under
    ``data_dir``; returns once the page answers."""
    data_dir.mkdir(parents=True, exist_ok=True)
    output_dir = data_dir / "outputs"
    (data_dir / "settings.json").write_text(
        json.dumps({"output_dir": str(output_dir)}, ensure_ascii=False), encoding="utf-8")
    port = free_port()
    log_path = data_dir / "app.log"
    with open(log_path, "wb") as log:
        process = subprocess.Popen(
            [sys.executable, "app.py", "--demo", "--data-dir", str(data_dir),
             "--outputs-base", str(data_dir), "--host", "127.0.0.1", "--port", str(port)],
            cwd=REPO_ROOT, env=app_environment(data_dir), stdout=log,
            stderr=subprocess.STDOUT)
    app = RunningApp(process, f"http://127.0.0.1:{port}/", data_dir, output_dir, log_path)
    try:
        wait_until_ready(app)
    except BaseException:
        stop_app(app)
        raise
    return app


def wait_until_ready(app: RunningApp, timeout_s: float = READY_TIMEOUT_S) -> None:
    """Poll the page until it answers; fail early, with the log, if the app exits."""
    deadline = time.monotonic() + timeout_s
    last_error = "no answer yet"
    while time.monotonic() < deadline:
        if app.process.poll() is not None:
            raise RuntimeError(f"app.py exited with {app.process.returncode} before serving:\n"
                               f"{app.log()}")
        try:
            with urllib.request.urlopen(app.url, timeout=5) as response:
                if response.status == 200:
                    return
                last_error = f"HTTP {response.status}"
        except (urllib.error.URLError, OSError) as error:
            last_error = str(error)
        time.sleep(0.5)
    raise RuntimeError(f"app.py did not answer on {app.url} within {timeout_s} s "
                       f"({last_error}):\n{app.log()}")


def stop_app(app: RunningApp) -> None:
    """Terminate, then kill if it does not go."""
    if app.process.poll() is not None:
        return
    app.process.terminate()
    try:
        app.process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        app.process.kill()
        app.process.wait(timeout=15)


def output_pngs(app: RunningApp) -> set[Path]:
    return set(app.output_dir.rglob("*.png")) if app.output_dir.exists() else set()


# -- images to upload ------------------------------------------------------------------------

def white_square_png(path: Path, size: tuple[int, int] = (256, 256)) -> Path:
    """A white square on black: Canny finds its edges."""
    from PIL import Image, ImageDraw

    width, height = size
    image = Image.new("RGB", size, "black")
    ImageDraw.Draw(image).rectangle([width // 4, height // 4, width * 3 // 4, height * 3 // 4],
                                    fill="white")
    image.save(path)
    return path


def png_with_parameters(path: Path, parameters: str) -> Path:
    from PIL import Image, PngImagePlugin

    info = PngImagePlugin.PngInfo()
    info.add_text("parameters", parameters)
    Image.new("RGB", (64, 64), "gray").save(path, pnginfo=info)
    return path


def plain_png(path: Path) -> Path:
    from PIL import Image

    Image.new("RGB", (64, 64), "teal").save(path)
    return path


# -- page helpers ----------------------------------------------------------------------------

def screenshot(page, name: str, full_page: bool = True) -> Path:
    """Full page by default. Chromium's full-page capture drops fixed toasts and the image
    editor's WebGL strokes, so those are also captured with ``full_page=False``."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{safe_name(name)}.png"
    page.screenshot(path=str(path), full_page=full_page)
    return path


def safe_name(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name)


def open_tab(page, tab_id: str) -> None:
    from playwright.sync_api import expect

    button = page.locator(f"#tab-{tab_id}-button")
    button.click()
    expect(button).to_have_attribute("aria-selected", "true", timeout=UI_TIMEOUT_MS)


def set_number(page, container: str, value: float | int) -> None:
    """Type into the number box of a slider or number component (``container`` is a CSS
    selector for its ``elem_id``) and commit it."""
    from playwright.sync_api import expect

    box = page.locator(f"{container} input[type=number]")
    box.fill(str(value))
    box.press("Enter")
    expect(box).to_have_value(str(value), timeout=UI_TIMEOUT_MS)


def set_slider_by_label(page, label: str, value: float | int) -> None:
    """The number box of a slider without an ``elem_id``, found by its (Chinese) label."""
    from playwright.sync_api import expect

    box = page.get_by_label(f"number input for {label}", exact=True)
    box.fill(str(value))
    box.press("Enter")
    expect(box).to_have_value(str(value), timeout=UI_TIMEOUT_MS)


def toast(page, text: str):
    """The toast message that contains ``text`` (Gradio's toasts stay for about 10 s)."""
    return page.locator("[data-testid=toast-text]", has_text=text).first


def wait_toast_shown(page, text: str, timeout: int = UI_TIMEOUT_MS) -> None:
    """Wait for the toast with ``text`` to finish fading in (for a screenshot that shows it)."""
    body = page.locator("[data-testid=toast-body]", has_text=text).first
    body.wait_for(state="visible", timeout=timeout)
    page.wait_for_function("element => getComputedStyle(element).opacity === '1'",
                           arg=body.element_handle(), timeout=timeout)


def white_pixels(png: bytes) -> int:
    """How many near-white pixels a screenshot has."""
    import io

    from PIL import Image

    gray = Image.open(io.BytesIO(png)).convert("L")
    return sum(gray.histogram()[240:])
