"""End-to-end tests in a real browser: ``app.py --demo`` in a subprocess, driven by Playwright
with the system Chromium. Every test leaves a full-page screenshot in
``test-artifacts/screenshots/<test name>.png``; the tab tour leaves ``tab-<id>.png``.

Waits are readiness loops with generous ceilings (the first job also waits for the engine to
start in the background), never assertions about time. The language switch runs last: it
saves a preference that every page opened afterwards gets.
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

import pytest
from PIL import Image
from playwright.sync_api import expect, sync_playwright

from locales import error_text, translate
from tests.support.browser_app import (
    ARTIFACTS,
    CHROMIUM,
    CHROMIUM_ARGS,
    JOB_TIMEOUT_MS,
    SCREENSHOTS,
    TAB_IDS,
    UI_TIMEOUT_MS,
    open_tab,
    output_pngs,
    plain_png,
    png_with_parameters,
    screenshot,
    set_number,
    set_slider_by_label,
    start_app,
    stop_app,
    toast,
    wait_toast_shown,
    white_pixels,
    white_square_png,
)

pytestmark = [pytest.mark.browser, pytest.mark.servers, pytest.mark.engine]

ZH_TABS = {"txt2img": "文生图", "img2img": "图生图", "controlnet": "可控生成",
           "lora": "LoRA 风格", "models": "模型管理", "pnginfo": "图片信息", "settings": "设置"}
# Something each tab shows once its content is on the page.
TAB_CONTENT = {"txt2img": "#txt2img-prompt", "img2img": "#img2img-prompt",
               "controlnet": "#controlnet-image", "lora": "#lora-apply",
               "models": "#models-table", "pnginfo": "#pnginfo-image",
               "settings": "#settings-save"}
PROMPT = "雾蒙蒙的日出在湖面上"
QUICK_STEPS = 4  # the demo base's recommended steps: enough to draw its noise


# -- fixtures --------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def app(tmp_path_factory, request):
    failed_before = request.session.testsfailed
    running = start_app(tmp_path_factory.mktemp("browser-app"))
    yield running
    stop_app(running)
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(running.log_path, ARTIFACTS / "browser-app.log")
    if request.session.testsfailed > failed_before:
        reporter = request.config.pluginmanager.get_plugin("terminalreporter")
        text = f"\n----- app.py log ({running.log_path}) -----\n{running.log()}"
        if reporter is not None:
            reporter.write_line(text)
        else:
            print(text)


@pytest.fixture(scope="module")
def browser():
    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield chromium
        chromium.close()


def new_page(browser, app):
    """A fresh context (Chinese browser, as the app's users have) on the app's page."""
    context = browser.new_context(locale="zh-CN", viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    page.goto(app.url)
    page.locator("#txt2img-prompt textarea").wait_for(state="visible", timeout=JOB_TIMEOUT_MS)
    return context, page


@pytest.fixture
def page(browser, app, request):
    context, page = new_page(browser, app)
    yield page
    try:
        screenshot(page, request.node.name)
    finally:
        context.close()


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    folder = tmp_path_factory.mktemp("browser-images")
    return {
        "square": white_square_png(folder / "square.png"),
        # Not the default 256x256, so the size the upload sets shows the upload arrived.
        "inpaint": white_square_png(folder / "inpaint.png", (320, 240)),
        "with_parameters": png_with_parameters(
            folder / "with-parameters.png",
            f"{PROMPT}\nNegative prompt: 模糊\nSteps: 7, Sampler: Euler a, CFG scale: 5, "
            "Seed: 12345, Size: 320x256, Model: demo-base"),
        "plain": plain_png(folder / "plain.png"),
    }


# -- helpers ---------------------------------------------------------------------------------

def generate_and_wait(page, prefix: str) -> str:
    """Click 生成 on ``prefix``'s tab, wait for a result image, return the generation info."""
    page.locator(f"#{prefix}-generate").click()
    expect(page.locator(f"#{prefix}-gallery img").first).to_be_visible(timeout=JOB_TIMEOUT_MS)
    info = page.locator(f"#{prefix}-info textarea")
    expect(info).not_to_have_value("", timeout=UI_TIMEOUT_MS)
    return info.input_value()


def expect_error_toast(page, text: str, timeout: int = UI_TIMEOUT_MS) -> None:
    message = toast(page, text)
    expect(message).to_be_visible(timeout=timeout)
    expect(message).to_have_class(re.compile(r"\berror\b"))
    wait_toast_shown(page, text)


def image_at(page, locator) -> Image.Image:
    import io

    source = locator.get_attribute("src")
    response = page.request.get(source)
    assert response.ok, f"cannot fetch {source}: {response.status}"
    return Image.open(io.BytesIO(response.body()))


# -- 1. the page -----------------------------------------------------------------------------

def test_page_opens_in_chinese(page):
    for tab_id, name in ZH_TABS.items():
        button = page.locator(f"#tab-{tab_id}-button")
        expect(button).to_be_visible()
        expect(button).to_have_text(name)
    expect(page.locator("#tab-txt2img-button")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#txt2img-prompt").get_by_text("正向提示词", exact=True)).to_be_visible()
    expect(page.locator("#txt2img-generate")).to_be_visible()
    expect(page.locator("#txt2img-generate")).to_have_text("生成")
    expect(page.locator("#txt2img-interrupt")).to_have_text("中止")
    banner = page.locator("#demo-banner")
    expect(banner).to_be_visible()
    expect(banner).to_contain_text("演示模式")
    expect(page.locator("#model-picker input")).to_have_value("演示底模")


# -- 2. 文生图 ------------------------------------------------------------------------------

def test_txt2img_generates_and_saves(page, app):
    before = output_pngs(app)
    page.locator("#txt2img-prompt textarea").fill(PROMPT)
    counter = page.locator("#txt2img-prompt-tokens")
    # The demo base's text encoder has a 32-token context: 30 for the prompt.
    expect(counter).to_contain_text(re.compile(r"\d+/30"), timeout=UI_TIMEOUT_MS)
    expect(counter).to_contain_text("token")

    info = generate_and_wait(page, "txt2img")
    assert PROMPT in info
    assert "Seed:" in info
    assert "Model: demo-base" in info

    deadline = time.monotonic() + 30  # saved before the result is sent; a readiness loop
    while not (output_pngs(app) - before) and time.monotonic() < deadline:
        time.sleep(0.2)
    new = output_pngs(app) - before
    assert len(new) == 1, f"expected one new PNG in {app.output_dir}, found {sorted(new)}"
    saved = Image.open(next(iter(new)))
    assert PROMPT in saved.text.get("parameters", ""), saved.text


# -- 3. LoRA 风格 -> 文生图 ----------------------------------------------------------------

def test_lora_style_applies_to_txt2img(page):
    open_tab(page, "lora")
    enable = page.locator("#lora-enable-0 input[type=checkbox]")
    enable.check()
    expect(enable).to_be_checked()
    page.locator("#lora-apply").click()

    expect(page.locator("#tab-txt2img-button")).to_have_attribute("aria-selected", "true")
    prompt = page.locator("#txt2img-prompt textarea")
    expect(prompt).to_have_value(re.compile(r"<lora:demo-[^:>]+:[\d.]+>"))
    set_number(page, "#txt2img-steps", QUICK_STEPS)
    info = generate_and_wait(page, "txt2img")
    assert "<lora:demo-" in info


def test_lora_cards_show_their_pictures(page):
    generate_and_wait(page, "txt2img")  # the demo set exists once a job has run
    page.reload()
    open_tab(page, "lora")
    for index in range(3):
        expect(page.locator(f"#lora-preview-{index} img").first).to_be_visible()
    screenshot(page, "test_lora_cards_show_their_pictures")


# -- 4. 可控生成 (Canny) --------------------------------------------------------------------

def test_controlnet_canny_preview_and_generate(page, images):
    open_tab(page, "controlnet")
    page.locator("#controlnet-image input[type=file]").set_input_files(str(images["square"]))
    expect(page.locator("#controlnet-image img").first).to_be_visible()
    page.locator("#controlnet-preview-button").click()
    preview = page.locator("#controlnet-preview img").first
    expect(preview).to_be_visible(timeout=JOB_TIMEOUT_MS)

    edges = image_at(page, preview).convert("L")
    width, height = edges.size
    histogram = edges.histogram()
    bright = sum(histogram[128:]) / (width * height)
    assert 0 < bright < 0.2, f"a Canny map of a square is thin edges, got {bright:.0%} white"
    assert edges.getpixel((width // 2, height // 2)) < 128, "the square's inside has no edge"

    page.locator("#controlnet-prompt textarea").fill("白色的小鸟")
    set_number(page, "#controlnet-steps", QUICK_STEPS)
    info = generate_and_wait(page, "controlnet")
    assert "ControlNet 0" in info and "canny" in info


# -- 5. 局部重绘 -----------------------------------------------------------------------------

def test_inpaint_with_painted_mask(page, images):
    open_tab(page, "img2img")
    page.get_by_role("tab", name="局部重绘").click()
    editor = page.locator("#inpaint-editor")
    # The editor's toolbar is there once the sub-tab's content is mounted.
    editor.locator("button").first.wait_for(state="visible")
    editor.locator("input[type=file]").set_input_files(str(images["inpaint"]))
    # The upload handler sets the size from the image: the background reached the server.
    expect(page.locator("#img2img-width input[type=number]")).to_have_value("320")
    expect(page.locator("#img2img-height input[type=number]")).to_have_value("240")

    brush = editor.locator("button:is([aria-label='Brush'], [aria-label='画笔'])")
    brush.click()
    canvas = editor.locator("canvas").first
    expect(canvas).to_be_visible()
    unpainted = white_pixels(editor.screenshot())
    # A white stroke across the middle, from the black margin on the left to the right one.
    box = canvas.bounding_box()
    left, right = box["x"] + box["width"] * 0.2, box["x"] + box["width"] * 0.8
    y = box["y"] + box["height"] * 0.55
    page.mouse.move(left, y)
    page.mouse.down()
    for step in range(1, 31):
        page.mouse.move(left + (right - left) * step / 30, y + step, steps=2)
    page.mouse.up()
    undo = editor.locator("button:is([aria-label='Undo'], [aria-label='撤销'])")
    expect(undo).to_be_enabled()  # the editor recorded the stroke
    deadline = time.monotonic() + 15  # until the stroke is drawn: a readiness loop
    while white_pixels(editor.screenshot()) <= unpainted + 500 and time.monotonic() < deadline:
        time.sleep(0.2)
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    painted = white_pixels(editor.screenshot(path=str(SCREENSHOTS / "test_inpaint_stroke.png")))
    assert painted > unpainted + 500, "the brush stroke does not show on the canvas"

    page.locator("#img2img-prompt textarea").fill("湖面上的小船")
    set_number(page, "#img2img-steps", QUICK_STEPS)
    # A job without a mask is refused, so a result means the painted mask arrived.
    info = generate_and_wait(page, "img2img")
    assert "Mask blur" in info
    assert "Size: 320x240" in info


# -- 7. 中止 -----------------------------------------------------------------------------------

def test_interrupt_long_job_then_generate_again(page):
    page.locator("#txt2img-prompt textarea").fill(PROMPT)
    set_number(page, "#txt2img-steps", 150)
    set_slider_by_label(page, "总批次数", 16)
    page.locator("#txt2img-generate").click()
    # The progress text: 第 n/2400 步，预计还需 … 秒
    progress = page.locator("#txt2img-gallery [data-testid=status-tracker]")
    expect(progress).to_contain_text(re.compile(r"第 \d+/2400 步"), timeout=JOB_TIMEOUT_MS)
    # 实时过程预览: the running job's first image, roughly, while it runs
    expect(page.locator("#txt2img-live-preview img").first).to_be_visible(timeout=UI_TIMEOUT_MS)
    screenshot(page, "test_interrupt_progress")

    page.locator("#txt2img-interrupt").click()
    expect_error_toast(page, translate("zh-CN", "errors.cancelled"), timeout=60_000)
    expect(page.locator("#txt2img-gallery img")).to_have_count(0)
    screenshot(page, "test_interrupt_cancelled", full_page=False)

    set_number(page, "#txt2img-steps", QUICK_STEPS)
    set_slider_by_label(page, "总批次数", 1)
    info = generate_and_wait(page, "txt2img")
    assert f"Steps: {QUICK_STEPS}," in info


def test_progress_text_is_chinese(page):
    """While a job runs, the progress shown on the results says 步, not Gradio's "steps"."""
    page.locator("#txt2img-prompt textarea").fill(PROMPT)
    set_number(page, "#txt2img-steps", 150)
    page.locator("#txt2img-generate").click()
    progress = page.locator("#txt2img-gallery [data-testid=status-tracker]")
    expect(progress).to_contain_text(re.compile(r"第 \d+/150 步"), timeout=JOB_TIMEOUT_MS)
    shown = progress.inner_text()
    screenshot(page, "test_progress_text", full_page=False)
    page.locator("#txt2img-interrupt").click()
    expect_error_toast(page, translate("zh-CN", "errors.cancelled"), timeout=60_000)
    assert not re.search(r"\bsteps?\b", shown), f"English progress unit in {shown!r}"


# -- 8. errors in Chinese ----------------------------------------------------------------------

def test_invalid_width_error_is_chinese(page):
    page.locator("#txt2img-prompt textarea").fill(PROMPT)
    set_number(page, "#txt2img-width", 100)  # not a multiple of 8
    page.locator("#txt2img-generate").click()
    expected = error_text("zh-CN", "invalid_size", {"step": 8, "min": 64, "max": 2048,
                                                    "value": 100})
    assert "宽度和高度必须是 8 的倍数" in expected
    expect_error_toast(page, expected, timeout=JOB_TIMEOUT_MS)
    screenshot(page, "test_invalid_width_toast", full_page=False)
    expect(page.locator("#txt2img-gallery img")).to_have_count(0)


def test_canny_thresholds_error_is_chinese(page, images):
    open_tab(page, "controlnet")
    page.locator("#controlnet-image input[type=file]").set_input_files(str(images["square"]))
    expect(page.locator("#controlnet-image img").first).to_be_visible()
    set_slider_by_label(page, translate("zh-CN", "controlnet.low_threshold"), 250)  # > 200
    page.locator("#controlnet-preview-button").click()
    expected = error_text("zh-CN", "invalid_canny_thresholds",
                          {"max": 255, "low": 250, "high": 200})
    expect_error_toast(page, expected, timeout=JOB_TIMEOUT_MS)
    screenshot(page, "test_canny_thresholds_toast", full_page=False)


# -- 图片信息 ----------------------------------------------------------------------------------

def test_pnginfo_reads_and_sends_parameters(page, images):
    open_tab(page, "pnginfo")
    page.locator("#pnginfo-image input[type=file]").set_input_files(
        str(images["with_parameters"]))
    expect(page.locator("#pnginfo-raw textarea")).to_have_value(re.compile("Seed: 12345"))
    page.locator("#pnginfo-send-txt2img").click()
    expect(page.locator("#tab-txt2img-button")).to_have_attribute("aria-selected", "true")
    expect(page.locator("#txt2img-prompt textarea")).to_have_value(PROMPT)
    expect(page.locator("#txt2img-seed input")).to_have_value("12345")
    expect(page.locator("#txt2img-steps input[type=number]")).to_have_value("7")
    expect(page.locator("#txt2img-width input[type=number]")).to_have_value("320")


def test_pnginfo_says_when_a_png_has_no_parameters(page, images):
    open_tab(page, "pnginfo")
    page.locator("#pnginfo-image input[type=file]").set_input_files(str(images["plain"]))
    expect(page.locator("#pnginfo-image img").first).to_be_visible()
    expect(toast(page, translate("zh-CN", "pnginfo.nothing"))).to_be_visible()


# -- every tab -------------------------------------------------------------------------------

def test_screenshot_every_tab(page):
    for tab_id in TAB_IDS:
        open_tab(page, tab_id)
        expect(page.locator(TAB_CONTENT[tab_id]).first).to_be_visible()
        expect(page.locator(f"#tab-{tab_id}-button")).to_have_text(ZH_TABS[tab_id])
        screenshot(page, f"tab-{tab_id}")


# -- 设置 (last: the language is saved for every page opened afterwards) ---------------------

def test_settings_save_confirms(page):
    open_tab(page, "settings")
    page.locator("#settings-save").click()
    expect(toast(page, translate("zh-CN", "settings.saved"))).to_be_visible()


def switch_language(page, choice: str) -> None:
    open_tab(page, "settings")
    page.locator("#settings-language").get_by_label(choice, exact=True).check()
    page.locator("#settings-save").click()


def test_switch_to_english_and_back(page, browser, app):
    try:
        switch_language(page, "English")
        expect(page.locator("#tab-txt2img-button")).to_have_text("txt2img")
        expect(page.locator("#tab-settings-button")).to_have_text("Settings")
        open_tab(page, "txt2img")
        expect(page.locator("#txt2img-prompt").get_by_text("Prompt", exact=True)).to_be_visible()
        expect(page.locator("#txt2img-generate")).to_have_text("Generate")
        expect(page.locator("#demo-banner")).to_contain_text("Demo mode")
        screenshot(page, "test_switch_to_english")

        # A page opened now gets the saved language at once.
        context, fresh = new_page(browser, app)
        try:
            expect(fresh.locator("#tab-txt2img-button")).to_have_text("txt2img")
            expect(fresh.locator("#txt2img-generate")).to_have_text("Generate")
            screenshot(fresh, "test_switch_to_english_new_page")
        finally:
            context.close()
    finally:
        switch_language(page, "中文")
    expect(page.locator("#tab-txt2img-button")).to_have_text("文生图")
    open_tab(page, "txt2img")
    expect(page.locator("#txt2img-generate")).to_have_text("生成")
    expect(page.locator("#txt2img-prompt").get_by_text("正向提示词", exact=True)).to_be_visible()


# -- 9. pages served by the fake engine: states the demo set never has -----------------------

@pytest.fixture
def fake_ui(tmp_path):
    """The real service over the fake engine: every manifest model on disk but one, and the
    user's own files in the models folder. A download started here finishes at once."""
    from engine.fake_engine import fake_image_service
    from engine.settings import DEFAULT_MANIFEST
    from engine.store.manifest import load_manifest
    from tests.support.download_recorder import RecordingDownloader
    from tests.support.model_files import (
        give_base_the_single_files_shape,
        sparse_file,
        write_single_file,
    )
    from tests.support.ui_client import running_ui

    all_but_food = [entry.id for entry in load_manifest(DEFAULT_MANIFEST).models
                    if entry.id != "pai-food-large"]
    service, _engine = fake_image_service(tmp_path / "data", downloaded=all_but_food)
    RecordingDownloader.install(service, completes=True)
    give_base_the_single_files_shape(service, "pai-artist-large")  # configs for the file
    checkpoints = service.settings.checkpoint_dir
    write_single_file(checkpoints / "水墨风格-v2.safetensors", size=2 * 1024**3)
    sparse_file(checkpoints / "anything-v5.ckpt", 4 * 1024**3)
    write_single_file(checkpoints / "sdxl-base.safetensors", size=6 * 1024**3,
                      extra=("conditioner.embedders.0.transformer.x",))
    sparse_file(service.settings.lora_dir / "ink.safetensors", 36 * 1024**2)
    with running_ui(service, tmp_path) as ui:
        yield ui


def test_a_model_not_on_disk_is_offered_for_download_then_used(browser, fake_ui):
    context, page = new_page(browser, fake_ui)
    try:
        picker = page.locator("#model-picker input")
        picker.click()
        page.get_by_role("option", name="PAI 中华美食（大）").click()
        offer = page.locator("#download-offer-question")  # (Gradio repeats a group's id)
        expect(offer).to_be_visible(timeout=UI_TIMEOUT_MS)
        expect(offer).to_contain_text("尚未下载")
        expect(offer).to_contain_text("4.2 GB")
        screenshot(page, "test_download_offer", full_page=False)
        assert not fake_ui.service.downloader.calls  # nothing fetched before the click
        page.locator("#download-offer-accept").click()
        expect(offer).to_be_hidden(timeout=JOB_TIMEOUT_MS)
        assert fake_ui.service.active_model == "pai-food-large"
        expect(picker).to_have_value("PAI 中华美食（大）")
    finally:
        context.close()


def test_models_tab_lists_own_models_with_reasons(browser, fake_ui):
    context, page = new_page(browser, fake_ui)
    try:
        open_tab(page, "models")
        table = page.locator("#models-local-table")
        expect(table).to_contain_text("水墨风格-v2.safetensors")
        expect(table).to_contain_text("单文件模型")
        expect(table).to_contain_text("pickle")
        expect(table).to_contain_text("SDXL")
        table.scroll_into_view_if_needed()
        screenshot(page, "test_models_tab_own_models")
    finally:
        context.close()
