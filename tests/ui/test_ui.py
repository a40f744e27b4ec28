"""The WebUI through its HTTP API (``gradio_client``), as a browser session drives it.

Most tests run the real ``ImageService`` over ``engine.fake_engine.FakeEngine`` (no torch: the
engine paints solid colours, and every manifest model is on disk as placeholder files unless a
test leaves some out); the last ones run the real engine on
the tiny offline demo set. Arguments are named by the labels users see (``locales/``), since
the positional order of an endpoint is whatever Gradio made of its set of inputs.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import gradio as gr
import numpy as np
import pytest
from gradio_client import handle_file
from gradio_client.exceptions import AppError
from PIL import Image

from app_settings import Preferences, PreferencesStore
from engine.fake_engine import FakeEngine, fake_image_service
from engine.metadata.infotext import format_infotext, parse_infotext
from engine.metadata.outputs import save_generated
from engine.requests import (
    ControlNetRequest,
    Img2ImgRequest,
    InpaintRequest,
    ResizeMode,
    Txt2ImgRequest,
)
from engine.service import ImageService
from engine.settings import DEFAULT_MANIFEST
from engine.store.catalog import LoraChoice, ModelState
from engine.store.manifest import Manifest, ModelKind, Recommended, load_manifest
from locales import error_text, messages, translate
from tests.support.download_recorder import RecordingDownloader
from tests.support.model_files import model_state
from tests.support.ui_client import by_keys, call, label, parameters, running_ui, submit

ROOT = Path(__file__).resolve().parents[2]
ZH = "zh-CN"
PROMPT = "雾蒙蒙的日出在湖面上"
SMALL = dict(common__width=64, common__height=64, common__steps=2)
# For tests of a model not on disk: every other manifest model is.
ALL_BUT_FOOD = [entry.id for entry in load_manifest(DEFAULT_MANIFEST).models
                if entry.id != "pai-food-large"]


@pytest.fixture(scope="module")
def served(tmp_path_factory) -> tuple[ImageService, FakeEngine]:
    return fake_image_service(tmp_path_factory.mktemp("data"))


@pytest.fixture(scope="module")
def service(served) -> ImageService:
    """The real service the module's UI runs on."""
    return served[0]


@pytest.fixture(scope="module")
def backend(served) -> FakeEngine:
    """The fake engine under ``service``: what it ran, loaded, cancelled."""
    return served[1]


@pytest.fixture(scope="module")
def ui(service, tmp_path_factory):
    """One UI for the service, in Chinese. Tests that switch language build their own."""
    # Output folders the tests choose lie in their own tmp_path, under the base temp folder.
    with running_ui(service, tmp_path_factory.mktemp("ui"),
                    outputs_base=tmp_path_factory.getbasetemp()) as running:
        yield running


def gallery(result) -> list[tuple[Image.Image, str]]:
    """(image, caption) per gallery item of an endpoint's first output."""
    items = result[0]
    return [(Image.open(item["image"]).convert("RGB"), item["caption"]) for item in items]


def image_at(path_or_dict) -> Image.Image:
    path = path_or_dict["path"] if isinstance(path_or_dict, dict) else path_or_dict
    return Image.open(path).convert("RGB")


def template_pattern(language: str, key: str, **params) -> re.Pattern:
    """The locale text for ``key`` with the given params filled and the others matching any."""
    text = translate(language, key, **params)
    pieces = re.split(r"(\{[a-z_]+\})", text)
    return re.compile("".join(".+?" if re.fullmatch(r"\{[a-z_]+\}", piece) else re.escape(piece)
                              for piece in pieces) + r"\Z")


def png(path: Path, size=(64, 64), colour=(20, 120, 220), mode="RGB") -> str:
    Image.new(mode, size, colour if mode == "RGB" else 255).save(path)
    return str(path)


# -- no torch -------------------------------------------------------------------------------

def test_ui_and_fake_import_without_torch():
    code = ("import json, sys\n"
            "import ui.app, engine.fake_engine, tests.support.ui_client\n"
            "import tests.support.download_recorder, tests.support.model_files\n"
            "print(json.dumps(sorted(m for m in ('torch', 'diffusers', 'transformers')"
            " if m in sys.modules)))")
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


# -- 文生图 ----------------------------------------------------------------------------------

@pytest.mark.servers
def test_txt2img_returns_every_image_with_its_seed_and_the_infotext(ui):
    result = call(ui.client, "/txt2img", **by_keys(
        common__prompt=PROMPT, common__width=64, common__height=72, common__steps=3,
        common__seed=5, common__batch_count=2, common__batch_size=2))

    images = gallery(result)
    assert len(images) == 2 * 2
    assert [caption for _, caption in images] == [
        translate(ZH, "common.seed_caption", seed=seed) for seed in (5, 6, 7, 8)]
    assert all(image.size == (64, 72) for image, _ in images)
    info = result[1]
    assert info.splitlines()[0] == PROMPT
    parsed = parse_infotext(info)
    assert (parsed["seed"], parsed["steps"], parsed["width"], parsed["height"]) == (5, 3, 64, 72)


@pytest.mark.servers
def test_txt2img_sends_a_typed_request(ui, service, backend):
    assert service.active_model != "pai-general-large"
    call(ui.client, "/txt2img", **by_keys(
        common__prompt=PROMPT, common__negative_prompt="模糊", common__sampler="Euler",
        common__schedule="karras", common__steps=7, common__guidance=5.5, common__width=128,
        common__height=96, common__seed=123, common__batch_count=1, common__batch_size=2),
        **{label("app.model"): "pai-general-large"})

    request = backend.requests[-1]
    assert type(request) is Txt2ImgRequest
    assert request.model == "pai-general-large"  # the picker's, not whatever is loaded
    assert (request.prompt, request.negative_prompt) == (PROMPT, "模糊")
    assert (request.sampler, request.schedule) == ("Euler", "karras")
    for name, value in dict(steps=7, width=128, height=96, seed=123, batch_count=1,
                            batch_size=2).items():
        assert getattr(request, name) == value and type(getattr(request, name)) is int, name
    assert request.guidance == 5.5


@pytest.mark.servers
def test_the_gallery_shows_the_very_png_saved_infotext_included(tmp_path):
    """Each image is encoded once: the gallery serves the bytes written to the output folder
    (which carry the infotext), not a second encoding of the image."""
    outputs = tmp_path / "outputs"
    service, _backend = fake_image_service(tmp_path / "data", output_dir=outputs)
    with running_ui(service, tmp_path) as ui:
        result = call(ui.client, "/txt2img", **by_keys(
            common__prompt=PROMPT, common__seed=21, common__batch_size=2, **SMALL))

    saved = sorted(outputs.glob("*/*.png"))
    assert [path.name.split("-")[1] for path in saved] == ["21.png", "22.png"]
    assert [Path(item["image"]).read_bytes() for item in result[0]] == [
        path.read_bytes() for path in saved]
    with Image.open(result[0][0]["image"]) as shown:
        assert parse_infotext(shown.info["parameters"])["seed"] == 21


@pytest.mark.servers
def test_random_seed_shows_the_seed_used(ui, backend):
    result = call(ui.client, "/txt2img", **by_keys(common__prompt=PROMPT, **SMALL))

    assert backend.requests[-1].seed == -1
    (_, caption), = gallery(result)
    seed = parse_infotext(result[1])["seed"]
    assert caption == translate(ZH, "common.seed_caption", seed=seed)


@pytest.mark.servers
def test_a_size_the_validator_refuses_comes_back_in_chinese(ui):
    # The slider's step is not enforced on the server: the validator's message is what users see.
    with pytest.raises(AppError) as caught:
        call(ui.client, "/txt2img", **by_keys(common__prompt=PROMPT, common__width=100,
                                               common__height=64, common__steps=2))
    assert str(caught.value) == error_text(ZH, "invalid_size", {
        "value": "100", "min": 64, "max": 2048, "step": 8})


@pytest.mark.servers
def test_a_nul_in_the_prompt_comes_back_in_chinese(ui, backend):
    with pytest.raises(AppError) as caught:
        call(ui.client, "/txt2img", **by_keys(common__prompt="山\x00", **SMALL))
    # The field is named by its label, not by the request's field name.
    assert str(caught.value) == error_text(ZH, "prompt_invalid_characters", {"field": "prompt"})
    assert label("common.prompt") in str(caught.value) and "prompt" not in str(caught.value)
    assert all(request.prompt != "山\x00" for request in backend.requests)  # never queued


@pytest.mark.servers
def test_an_unknown_lora_tag_comes_back_in_chinese(ui):
    with pytest.raises(AppError) as caught:
        call(ui.client, "/txt2img", **by_keys(common__prompt="山 <lora:no-such-style:0.5>",
                                               **SMALL))
    assert str(caught.value) == error_text(ZH, "unknown_lora", {"name": "no-such-style"})


@pytest.mark.servers
def test_a_known_lora_tag_reaches_the_infotext(ui):
    result = call(ui.client, "/txt2img", **by_keys(
        common__prompt=f"{PROMPT} <lora:pai-artist-large-lora-poem:0.4>", **SMALL))
    assert parse_infotext(result[1])["loras"] == [
        {"name": "pai-artist-large-lora-poem", "weight": 0.4}]


# -- 图生图 and 局部重绘 -------------------------------------------------------------------------

@pytest.mark.servers
def test_img2img_with_an_uploaded_init_image(ui, backend, tmp_path):
    init = png(tmp_path / "init.png", size=(96, 80))
    result = call(ui.client, "/img2img", **by_keys(
        common__prompt=PROMPT, img2img__init_image=handle_file(init), img2img__strength=0.5,
        img2img__resize_mode="crop_and_resize", common__seed=9, **SMALL))

    request = backend.requests[-1]
    assert type(request) is Img2ImgRequest
    assert request.init_image.size == (96, 80)
    assert request.init_image.convert("RGB").getpixel((0, 0)) == (20, 120, 220)
    assert (request.strength, request.resize_mode) == (0.5, ResizeMode.CROP_AND_RESIZE)
    (image, caption), = gallery(result)
    assert image.size == (64, 64) and caption == translate(ZH, "common.seed_caption", seed=9)
    assert parse_infotext(result[1])["strength"] == 0.5


@pytest.mark.servers
def test_an_init_image_sets_the_size_from_it(ui, tmp_path):
    init = png(tmp_path / "big.png", size=(1001, 603))
    upload = ui.api_name_of(ui.component_with_elem_id("img2img-init"), "change")

    width, height = call(ui.client, upload, **by_keys(img2img__init_image=handle_file(init)))

    assert (width, height) == (1000, 600)


@pytest.mark.servers
def test_the_size_from_an_init_image_leaves_room_for_the_batch(ui, service, tmp_path):
    """The suggestion counts the batch size set, as the validator and the engine count it
    (``Limits.pixels_per_image``): a suggested size is one the validator accepts."""
    from engine.validation import validate_request

    init = png(tmp_path / "square.png", size=(2000, 2000))
    upload = ui.api_name_of(ui.component_with_elem_id("img2img-init"), "change")

    width, height = call(ui.client, upload, **by_keys(img2img__init_image=handle_file(init),
                                                      common__batch_size=4))

    assert width * height * 4 <= service.limits.max_batch_pixels
    validate_request(Txt2ImgRequest(model=service.active_model, prompt=PROMPT, width=int(width),
                                    height=int(height), batch_size=4), service.limits)


@pytest.mark.servers
def test_img2img_without_an_init_image_asks_for_one(ui):
    with pytest.raises(AppError) as caught:
        call(ui.client, "/img2img", **by_keys(common__prompt=PROMPT, **SMALL))
    assert template_pattern(ZH, "errors.missing_image").match(str(caught.value))


def _sub_tab(ui, key: str):
    """图生图's sub-tab (the main tab 图生图 has the same label, and an elem_id)."""
    (tab,) = [block for block in ui.demo.blocks.values() if isinstance(block, gr.Tab)
              and block.label == label(key) and not block.elem_id]
    return tab


@pytest.mark.servers
def test_inpaint_with_an_uploaded_mask_after_selecting_its_tab(ui, backend, tmp_path):
    session = ui.connect()  # the mode is per session: leave the shared client in 图生图
    inpaint_tab, img2img_tab = (_sub_tab(ui, key) for key in ("img2img.mode_inpaint",
                                                              "img2img.mode_img2img"))
    init = png(tmp_path / "init.png")
    # The editor's composite is the picture with the strokes painted on (here its left half).
    composite = Image.open(init)
    composite.paste((255, 255, 255), (0, 0, 32, 64))
    composite.save(tmp_path / "composite.png")
    right_half = Image.new("L", (64, 64), 0)
    right_half.paste(255, (32, 0, 64, 64))
    right_half.save(tmp_path / "mask.png")
    editor = {"background": handle_file(init), "layers": [],
              "composite": handle_file(str(tmp_path / "composite.png"))}
    values = by_keys(common__prompt=PROMPT, img2img__inpaint_canvas=editor,
                     img2img__mask_upload=handle_file(str(tmp_path / "mask.png")),
                     img2img__mask_blur=8, img2img__invert_mask=True, common__seed=3, **SMALL)

    session.predict(api_name=ui.api_name_of(inpaint_tab, "select"))
    result = call(session, "/img2img", **values)

    request = backend.requests[-1]
    assert type(request) is InpaintRequest
    assert request.init_image.size == (64, 64) and request.mask.size == (64, 64)
    # The picture without the strokes, and the uploaded mask as it was drawn.
    assert request.init_image.convert("RGB").getpixel((10, 10)) == (20, 120, 220)
    mask = request.mask.convert("L")
    assert (mask.getpixel((10, 10)), mask.getpixel((50, 10))) == (0, 255)
    assert (request.mask_blur, request.invert_mask) == (8, True)
    assert type(request.mask_blur) is int
    assert len(gallery(result)) == 1
    assert parse_infotext(result[1])["mask_blur"] == 8

    # Another session never selected 局部重绘: its job is plain img2img.
    call(ui.client, "/img2img", **by_keys(common__prompt=PROMPT,
                                          img2img__init_image=handle_file(init), **SMALL))
    assert type(backend.requests[-1]) is Img2ImgRequest
    # Back to 图生图 in the first session.
    session.predict(api_name=ui.api_name_of(img2img_tab, "select"))
    call(session, "/img2img", **by_keys(common__prompt=PROMPT,
                                        img2img__init_image=handle_file(init), **SMALL))
    assert type(backend.requests[-1]) is Img2ImgRequest


def test_mask_from_editor_takes_painted_strokes_of_any_layer():
    from ui.img2img_tab import mask_from_editor

    background = Image.new("RGBA", (32, 16), (10, 20, 30, 255))
    empty = Image.new("RGBA", (32, 16), (0, 0, 0, 0))
    stroke = empty.copy()
    stroke.paste((255, 255, 255, 255), (4, 4, 12, 8))
    faint = empty.copy()
    faint.putpixel((30, 14), (255, 255, 255, 1))

    mask = mask_from_editor({"background": background, "layers": [stroke, None, faint],
                             "composite": background})

    assert mask.mode == "L" and mask.size == (32, 16)
    pixels = np.asarray(mask)
    assert pixels[5, 5] == 255 and pixels[14, 30] == 255 and pixels[0, 0] == 0
    assert int((pixels == 255).sum()) == 8 * 4 + 1
    assert set(np.unique(pixels)) == {0, 255}
    assert mask_from_editor({"background": background, "layers": [empty]}) is None
    assert mask_from_editor({"background": background, "layers": []}) is None
    assert mask_from_editor(None) is None


@pytest.mark.servers
def test_seed_buttons_reuse_the_last_seed_of_the_session(ui):
    session = ui.connect()
    reuse = ui.api_name_of(ui.component_with_elem_id("txt2img-reuse"), "click")
    dice = ui.api_name_of(ui.component_with_elem_id("txt2img-random"), "click")
    assert session.predict(api_name=reuse) == -1  # nothing generated yet in this session

    result = call(session, "/txt2img", **by_keys(common__prompt=PROMPT, **SMALL))
    seed = parse_infotext(result[1])["seed"]

    assert session.predict(api_name=reuse) == seed
    assert ui.connect().predict(api_name=reuse) == -1  # other sessions keep their own
    assert session.predict(api_name=dice) == -1


# -- 可控生成 --------------------------------------------------------------------------------

@pytest.mark.servers
def test_controlnet_preview_returns_the_map(ui, backend, tmp_path):
    control = png(tmp_path / "control.png", size=(80, 80))
    result = call(ui.client, "/controlnet_preview", **by_keys(
        controlnet__image=handle_file(control), controlnet__low_threshold=50,
        controlnet__high_threshold=150, common__width=64, common__height=72))

    assert image_at(result).size == (64, 72)
    spec = backend.preprocessed[-1]
    assert (spec.control_type, spec.model) == ("canny", "pai-artist-large-controlnet-canny")
    assert (spec.low_threshold, spec.high_threshold) == (50, 150)
    assert type(spec.low_threshold) is int and spec.preprocess is True
    assert spec.image.size == (80, 80)


@pytest.mark.servers
def test_controlnet_preview_without_an_image_is_refused_in_chinese(ui):
    with pytest.raises(AppError) as caught:
        call(ui.client, "/controlnet_preview", **by_keys(common__width=64, common__height=64))
    assert str(caught.value) == error_text(ZH, "missing_control_image")


@pytest.mark.servers
def test_controlnet_generation_returns_the_map_and_the_images(ui, backend, tmp_path):
    control = png(tmp_path / "control.png")
    result = call(ui.client, "/controlnet", **by_keys(
        common__prompt="白色的小鸟", controlnet__image=handle_file(control),
        controlnet__control_type="depth", controlnet__weight=0.8, common__batch_size=2,
        **SMALL))

    control_map, items, info = result
    assert image_at(control_map).size == (64, 64)
    assert len(items) == 2
    request = backend.requests[-1]
    assert type(request) is ControlNetRequest
    assert (request.control.control_type, request.control.weight) == ("depth", 0.8)
    assert request.sampler == "Euler a"  # the ControlNet tab's own default
    control = parse_infotext(info)["control"]
    assert (control["type"], control["weight"]) == ("depth", 0.8)


def _with_recommended(manifest: Manifest, **by_id: dict) -> Manifest:
    models = tuple(entry.model_copy(update={"recommended": Recommended(**by_id[entry.id])})
                   if entry.id in by_id else entry for entry in manifest.models)
    return manifest.model_copy(update={"models": models})


def test_controlnet_tab_starts_at_the_manifests_recommended_settings(tmp_path):
    """The ControlNet offered first sets sampler, steps and guidance; what it leaves out (the
    schedule) comes from the active base. None of them is a widget's built-in default."""
    from ui.app import UiOptions, build_ui

    manifest = _with_recommended(
        load_manifest(DEFAULT_MANIFEST),
        **{"pai-artist-large": {"sampler": "DPM++ 2M", "schedule": "karras", "steps": 25},
           "pai-artist-large-controlnet-canny": {"sampler": "DDIM", "steps": 33,
                                                 "guidance": 4.5}})
    service, _backend = fake_image_service(tmp_path / "data", manifest=manifest,
                                           active_model="pai-artist-large")
    demo = build_ui(service, UiOptions(Preferences()), PreferencesStore(tmp_path / "s.json"))
    shown = {block.elem_id: block.value for block in demo.blocks.values()
             if str(getattr(block, "elem_id", None)).startswith("controlnet-")
             and hasattr(block, "value")}

    assert shown["controlnet-model"] == "pai-artist-large-controlnet-canny"
    assert (shown["controlnet-sampler"], shown["controlnet-steps"],
            shown["controlnet-guidance"], shown["controlnet-schedule"]) == ("DDIM", 33, 4.5,
                                                                           "karras")


def test_txt2img_and_img2img_start_at_the_active_models_recommended_settings(tmp_path):
    """The active base model's manifest entry sets where sampler, schedule, steps, guidance
    and size start; none of them is a widget's built-in default."""
    from ui.app import UiOptions, build_ui

    manifest = _with_recommended(
        load_manifest(DEFAULT_MANIFEST),
        **{"pai-artist-large": {"sampler": "DDIM", "schedule": "karras", "steps": 37,
                                "guidance": 4.5}})
    service, _backend = fake_image_service(tmp_path / "data", manifest=manifest,
                                           active_model="pai-artist-large")
    demo = build_ui(service, UiOptions(Preferences()), PreferencesStore(tmp_path / "s.json"))
    shown = {block.elem_id: block.value for block in demo.blocks.values()
             if getattr(block, "elem_id", None) and hasattr(block, "value")}

    for tab in ("txt2img", "img2img"):
        assert (shown[f"{tab}-sampler"], shown[f"{tab}-schedule"], shown[f"{tab}-steps"],
                shown[f"{tab}-guidance"]) == ("DDIM", "karras", 37, 4.5), tab
        assert ((shown[f"{tab}-width"], shown[f"{tab}-height"])
                == tuple(service.default_size("pai-artist-large"))), tab


# -- token counter ---------------------------------------------------------------------------

@pytest.mark.servers
def test_token_counter(ui):
    prompt_box = ui.component_with_elem_id("txt2img-prompt")
    api_name = ui.api_name_of(prompt_box, "change")
    prompt_label = label("common.prompt")

    short = call(ui.client, api_name, **{prompt_label: "雾蒙蒙的日出"})
    long = call(ui.client, api_name, **{prompt_label: "山" * 40})

    assert short == translate(ZH, "common.tokens", tokens=6, context=30, chunks=1)
    assert long == translate(ZH, "common.tokens_over", tokens=40, context=30, chunks=2)


# -- progress and interrupt ------------------------------------------------------------------

def test_job_runner_turns_engine_progress_into_gradio_progress_with_eta(monkeypatch, tmp_path):
    """Each step takes 10 s on a clock the test moves, and waits until the runner has shown it:
    the first report of step k of 6 says 60 - 10k seconds are left (elapsed / done * rest)."""
    from types import SimpleNamespace

    from engine import jobs
    from ui import job_runner
    from ui.job_runner import JobRunner
    from ui.texts import Texts

    step_s, start = 10.0, 1000.0
    clock = SimpleNamespace(now=start)
    monkeypatch.setattr(jobs, "time", SimpleNamespace(time=lambda: clock.now))
    monkeypatch.setattr(job_runner, "POLL_SECONDS", 0.01)
    service, _backend = fake_image_service(tmp_path / "data")
    runner = JobRunner(service, Texts(ZH))
    shown = threading.Condition()
    reported, units, first_shown = [], [], {}
    run_steps = service.generate

    def one_step_at_a_time(request, on_progress=None, cancel=None):
        def step(update):
            done = update.batch_index * update.total_steps + update.step
            clock.now = start + step_s * done
            on_progress(update)
            with shown:  # the clock stands still until the runner has shown this step
                assert shown.wait_for(lambda: done in first_shown, timeout=30)

        return run_steps(request, on_progress=step, cancel=cancel)

    def progress(value, desc=None, unit="steps"):
        reported.append((value, desc))
        units.append(unit)
        if isinstance(value, tuple):
            with shown:
                first_shown.setdefault(value[0], desc)
                shown.notify_all()

    service.generate = one_step_at_a_time
    result = runner.run(Txt2ImgRequest(model=service.active_model, prompt=PROMPT, steps=3,
                                       batch_count=2, width=64, height=64, seed=1),
                        "session", progress)

    assert len(result.images) == 2
    stepped = [(value, desc) for value, desc in reported if isinstance(value, tuple)]
    assert [value for value, _ in stepped] == sorted(value for value, _ in stepped)
    assert {total for (_, total), _ in stepped} == {6}
    assert first_shown == {done: translate(ZH, "common.progress", done=done, total=6,
                                           eta=f"{60 - 10 * done:.0f}")
                           for done in range(1, 7)}
    for (done, total), desc in stepped:  # later reports of a step: a number all the same
        expected = re.escape(translate(ZH, "common.progress", done=done, total=total,
                                       eta="ETA")).replace("ETA", r"\d+")
        assert re.fullmatch(expected, desc), desc
    assert set(units) == {"步"}


def test_job_runner_says_when_the_first_step_compiles(tmp_path, monkeypatch):
    from engine.requests import PHASE_COMPILING, ProgressUpdate
    from ui import job_runner
    from ui.job_runner import JobRunner
    from ui.texts import Texts

    monkeypatch.setattr(job_runner, "POLL_SECONDS", 0.01)
    service, _backend = fake_image_service(tmp_path / "data")
    runner = JobRunner(service, Texts(ZH))
    compiling = translate(ZH, "common.compiling")
    shown: list = []
    run_steps = service.generate

    def compile_first(request, on_progress=None, cancel=None):
        on_progress(ProgressUpdate(0, 2, 0, 1, phase=PHASE_COMPILING))
        deadline = time.monotonic() + 10
        while compiling not in shown and time.monotonic() < deadline:
            time.sleep(0.01)
        return run_steps(request, on_progress=on_progress, cancel=cancel)

    service.generate = compile_first
    runner.run(Txt2ImgRequest(model=service.active_model, prompt=PROMPT, steps=2, width=64,
                              height=64), "session",
               lambda value, desc=None, unit="steps": shown.append(desc))
    assert "首次编译" in compiling
    assert compiling in shown  # not "step 0 of 2" for what may take minutes


def test_job_runner_reports_engine_errors_as_translated_gradio_errors(tmp_path):
    from ui.job_runner import JobRunner
    from ui.texts import Texts

    service, _backend = fake_image_service(tmp_path / "data")
    runner = JobRunner(service, Texts("en"))
    with pytest.raises(gr.Error) as caught:
        runner.run(Txt2ImgRequest(model=service.active_model, prompt=PROMPT, steps=0),
                   "session", lambda *args, **kwargs: None)
    assert caught.value.message == error_text("en", "invalid_steps", {
        "value": "0", "min": 1, "max": 150})


def test_an_interrupt_after_a_job_does_not_cancel_the_next_one(tmp_path):
    from ui.job_runner import JobRunner
    from ui.texts import Texts

    service, backend = fake_image_service(tmp_path / "data")
    runner = JobRunner(service, Texts(ZH))
    request = Txt2ImgRequest(model=service.active_model, prompt=PROMPT, steps=2, width=64,
                             height=64)
    runner.run(request, "session", lambda *args, **kwargs: None)
    runner.interrupt("session")
    assert len(runner.run(request, "session", lambda *args, **kwargs: None).images) == 1
    assert backend.cancelled == []


@pytest.fixture
def gated(backend):
    """Jobs wait at the engine's gate until the test opens it."""
    backend.gate = threading.Event()
    backend.started.clear()
    yield backend.gate
    backend.gate.set()
    backend.gate = None


@pytest.mark.servers
def test_interrupt_stops_the_job_of_the_same_session(ui, backend, gated):
    job = submit(ui.client, "/txt2img", **by_keys(common__prompt="慢慢画", **SMALL))
    assert backend.started.wait(30)

    ui.client.predict(api_name="/interrupt")
    gated.set()

    with pytest.raises(AppError) as caught:
        job.result(timeout=60)
    assert str(caught.value) == error_text(ZH, "cancelled")
    assert backend.cancelled and backend.cancelled[-1].prompt == "慢慢画"


@pytest.mark.servers
def test_interrupt_from_another_session_leaves_the_job_running(ui, backend, gated):
    cancelled_before = len(backend.cancelled)
    job = submit(ui.client, "/txt2img", **by_keys(common__prompt="别停", common__seed=4,
                                                  **SMALL))
    assert backend.started.wait(30)

    other = ui.connect()
    other.predict(api_name="/interrupt")
    gated.set()

    (_, caption), = gallery(job.result(timeout=60))
    assert caption == translate(ZH, "common.seed_caption", seed=4)
    assert len(backend.cancelled) == cancelled_before


# -- 设置 ------------------------------------------------------------------------------------

def _save_settings(client, language: str, output_dir: str, memory_mode: str = "auto",
                   sampler: str = "DPM++ 2M"):
    return call(client, "/save_settings", **by_keys(
        settings__language=language, settings__output_dir=output_dir,
        settings__memory_mode=memory_mode, settings__default_sampler=sampler))


def _updates_labelled(client, api_name: str, result, key: str) -> list[dict]:
    """The updates an endpoint returned for the components labelled ``key`` (in Chinese)."""
    api = client.view_api(return_format="dict", print_info=False)
    labels = [item["label"] for item in api["named_endpoints"][api_name]["returns"]]
    found = [result[index] for index, text in enumerate(labels) if text == label(key)]
    assert found, labels
    return found


@pytest.mark.servers
def test_saving_settings_in_english_persists_them_and_relabels_the_page(tmp_path):
    service, backend = fake_image_service(tmp_path / "data")
    pictures = tmp_path / "pictures"
    with running_ui(service, tmp_path) as ui:
        result = _save_settings(ui.client, "en", str(pictures), "model_offload", "Euler a")

        saved = json.loads((tmp_path / "settings.json").read_text(encoding="utf-8"))
        assert saved == {"language": "en", "output_dir": str(pictures),
                         "memory_mode": "model_offload",
                         "default_sampler": "Euler a", "download_source": "",
                         "custom_endpoint": "", "channels_last": False, "fuse_qkv": False,
                         "compile_unet": False, "step_cache_interval": 0,
                         "preview_method": "approx"}
        assert ui.store.load() == Preferences("en", str(pictures), "model_offload", "Euler a")
        prompt_updates = _updates_labelled(ui.client, "/save_settings", result, "common.prompt")
        assert {update["label"] for update in prompt_updates} == {"Prompt"}
        assert translate("en", "common.prompt") == "Prompt"
        assert backend.memory_modes == ["model_offload"] and service.output_dir == pictures
        assert not list(tmp_path.glob("*.tmp"))

        # Errors are now in English, and new images are saved with their infotext.
        with pytest.raises(AppError) as caught:
            call(ui.client, "/txt2img", **by_keys(common__prompt=PROMPT, common__width=100,
                                                   common__height=64, common__steps=2))
        assert str(caught.value) == error_text("en", "invalid_size", {
            "value": "100", "min": 64, "max": 2048, "step": 8})
        result = call(ui.client, "/txt2img", **by_keys(common__prompt=PROMPT, common__seed=11,
                                                       **SMALL))
        (saved_png,) = pictures.glob("*/*.png")
        assert saved_png.name.endswith("-11.png")
        text = call(ui.client, "/png_info", **by_keys(pnginfo__image=handle_file(str(saved_png))))
        assert text == result[1]


@pytest.mark.servers
def test_a_page_opened_after_switching_language_gets_the_saved_language(tmp_path):
    PreferencesStore(tmp_path / "settings.json").save(Preferences(language="en"))
    with running_ui(fake_image_service(tmp_path / "data")[0], tmp_path, Preferences()) as ui:
        result = ui.client.predict(api_name="/on_load")
        updates = _updates_labelled(ui.client, "/on_load", result, "common.prompt")
    assert {update["label"] for update in updates} == {"Prompt"}


@pytest.mark.servers
def test_a_damaged_settings_file_loads_as_defaults(tmp_path):
    (tmp_path / "settings.json").write_text("{not json", encoding="utf-8")
    service, backend = fake_image_service(tmp_path / "data")
    with running_ui(service, tmp_path) as ui:
        assert ui.store.load() == Preferences()
        result = ui.client.predict(api_name="/on_load")  # must not fail
        labels = {update.get("label") for update in result if isinstance(update, dict)}
        assert "Prompt" not in labels  # the page stays in the default language
        _save_settings(ui.client, ZH, str(tmp_path / "outputs"))
    assert ui.store.load() == Preferences(output_dir=str(tmp_path / "outputs"))
    assert backend.memory_modes == []  # "auto" was already the mode


@pytest.mark.servers
def test_an_unwritable_output_folder_is_refused_in_chinese(ui, tmp_path):
    blocker = tmp_path / "a-file"
    blocker.write_text("", encoding="utf-8")
    folder = blocker / "pictures"
    with pytest.raises(AppError) as caught:
        _save_settings(ui.client, ZH, str(folder))
    assert str(caught.value) == translate(ZH, "settings.output_unwritable", folder=str(folder))
    assert not ui.store.path.exists()


# -- 图片信息 --------------------------------------------------------------------------------

@pytest.mark.servers
def test_png_info_reads_the_parameters_of_a_saved_image(ui, service, tmp_path):
    result = service.generate(Txt2ImgRequest(model=service.active_model, prompt=PROMPT,
                                          negative_prompt="模糊", steps=2, width=64, height=64,
                                          seed=42))
    (path,) = save_generated(result.images, tmp_path)

    text = call(ui.client, "/png_info", **by_keys(pnginfo__image=handle_file(str(path))))

    assert text == format_infotext(result.images[0].parameters)
    assert text.startswith(PROMPT) and "Seed: 42" in text


@pytest.mark.servers
def test_png_info_sends_its_parameters_to_txt2img(ui, service, tmp_path):
    result = service.generate(Txt2ImgRequest(model=service.active_model, prompt=PROMPT,
                                          negative_prompt="模糊", sampler="Euler",
                                          schedule="karras", steps=12, guidance=6.5,
                                          width=64, height=72, seed=42))
    (path,) = save_generated(result.images, tmp_path)
    session = ui.connect()  # the parsed parameters are kept per session
    send = ui.api_name_of(ui.component_with_elem_id("pnginfo-send-txt2img"), "click")

    call(session, "/png_info", **by_keys(pnginfo__image=handle_file(str(path))))
    sent = session.predict(api_name=send)

    api = session.view_api(return_format="dict", print_info=False)["named_endpoints"][send]
    values = dict(zip((item["label"] for item in api["returns"]), sent, strict=True))
    assert values[label("common.prompt")] == PROMPT
    assert values[label("common.negative_prompt")] == "模糊"
    assert (values[label("common.sampler")], values[label("common.schedule")]) == (
        "Euler", "karras")
    assert values[label("common.steps")] == 12 and values[label("common.guidance")] == 6.5
    assert values[label("common.seed")] == 42
    assert (values[label("common.width")], values[label("common.height")]) == (64, 72)


@pytest.mark.servers
def test_png_info_of_a_png_without_parameters_is_empty(ui, tmp_path):
    plain = png(tmp_path / "plain.png")
    assert call(ui.client, "/png_info", **by_keys(pnginfo__image=handle_file(plain))) == ""


# -- LoRA 风格 and 模型管理 --------------------------------------------------------------------

def _choice(name: str, words: tuple[str, ...] = (), weight: float = 0.8) -> LoraChoice:
    return LoraChoice(name=name, title_zh=name, title_en=name, description_zh="",
                      description_en="", base=None, weight=weight, trigger_words=words)


def test_apply_styles_replaces_known_tags_keeps_unknown_and_adds_trigger_words():
    from ui.lora_tab import apply_styles

    ink, poem = _choice("ink", ("水墨",)), _choice("poem", ("诗意", "山水"))
    prompt = "山水 <lora:ink:1> 小桥 <lora:mine:0.3>"

    styled = apply_styles(prompt, [(poem, 0.6)], known={"ink", "poem"})

    assert "<lora:ink" not in styled
    assert "<lora:mine:0.3>" in styled
    assert styled.count("山水") == 1  # a trigger word already there is not repeated
    assert "诗意" in styled and styled.endswith("<lora:poem:0.6>")
    assert styled.startswith("山水")
    assert apply_styles("", [(ink, 1.0)], known={"ink"}) == "水墨 <lora:ink:1>"
    assert apply_styles("花 <lora:ink:0.5>", [], known={"ink"}) == "花"


@pytest.mark.parametrize("tag", ["<lora:ink:0.5>", "<lyco:ink>", "<lora: ink :1>",
                                 "<lora:ink: 0.5 >", "<lora:ink:abc>", "<lora:ink:0.5:te=1>"])
def test_apply_styles_replaces_exactly_the_tags_the_engine_reads(tag):
    """One definition of a tag (``engine.prompt_syntax.LORA_TAG``): a style's tag the engine
    would apply is replaced, text the engine reads as text is left alone."""
    from engine.prompt_syntax import parse_prompt
    from ui.lora_tab import apply_styles

    styled = apply_styles(f"花 {tag}", [], known={"ink"})

    if parse_prompt(tag).loras:
        assert styled == "花"
    else:
        assert styled == f"花 {tag}"


@pytest.mark.servers
def test_applying_styles_through_the_ui_updates_the_prompt(ui):
    """Every card ticked, every weight slider moved off its default (0.4): the tags carry the
    weights the sliders show, in the order of the cards."""
    api = ui.client.view_api(return_format="dict", print_info=False)["named_endpoints"]
    api_name = ui.api_name_of(ui.component_with_elem_id("lora-apply"), "click")
    chosen = {label("common.prompt"): "山 <lora:x:1>", label("lora.enable"): True,
              label("lora.weight"): 0.7}
    values = [chosen.get(param["label"], param["parameter_default"]
                         if param["parameter_has_default"] else None)
              for param in parameters(ui.client, api_name)]
    assert api[api_name]["returns"][0]["label"] == label("common.prompt")

    result = ui.client.predict(*values, api_name=api_name)

    prompt = result[0] if isinstance(result, (list, tuple)) else result
    cards = load_manifest(DEFAULT_MANIFEST).of_kind(ModelKind.LORA)
    assert [card.id for card in cards[:2]] == ["pai-artist-large-lora-poem",
                                               "pai-artist-large-lora-25d"]
    assert prompt == " ".join(["山 <lora:x:1>", *(f"<lora:{card.id}:0.7>" for card in cards)])


def test_status_rows_show_states_and_the_active_model(tmp_path):
    from ui.models_tab import status_rows

    active_id = load_manifest(DEFAULT_MANIFEST).of_kind(ModelKind.BASE)[0].id
    service, _backend = fake_image_service(tmp_path / "data", downloaded=[active_id])
    # Only the active model is on disk; its weights are 1 GiB (less its few config bytes).
    folder = service.store.base_folder(active_id)
    on_disk = sum(path.stat().st_size for path in folder.rglob("*") if path.is_file())
    weights = folder / "unet" / "diffusion_pytorch_model.safetensors"
    os.truncate(weights, weights.stat().st_size + 1024**3 - on_disk)  # sparse: no disk used
    rows = status_rows(service.model_statuses(), ZH)
    by_id = {row[-1]: row for row in rows}
    active = by_id[service.active_model]
    assert active[1] == translate(ZH, "models.kind_base")
    assert (active[2], active[3], active[4], active[5]) == ("已就绪", "1.00 GB", "-", "✔")
    others = [row for model_id, row in by_id.items() if model_id != service.active_model]
    assert others and all((row[2], row[3], row[5]) == ("未下载", "-", "") for row in others)
    kinds = {row[1] for row in rows}
    assert {"基础模型", "ControlNet", "LoRA 风格"} <= kinds
    english = status_rows(service.model_statuses(), "en")
    assert {row[2] for row in english} == {"Ready", "Not downloaded"}


@pytest.mark.servers
def test_switching_model_sets_sizes_and_the_models_table(ui, service):
    before = service.active_model
    try:
        *sizes, question, status = call(ui.client, "/switch_model",
                                        **{label("app.model"): "pai-anime-large"})
        assert sizes == [512, 768] * 3 and status == ""
        assert service.active_model == "pai-anime-large"
        table, _, _ = ui.client.predict("pai-anime-large", api_name="/refresh_models")
        rows = table["data"] if isinstance(table, dict) else table
        (active,) = [row for row in rows if row[5] == "✔"]
        assert active[-1] == "pai-anime-large" and active[2] == "已就绪"
    finally:
        call(ui.client, "/switch_model", **{label("app.model"): before})
    assert service.active_model == before


# -- locales ---------------------------------------------------------------------------------

def test_every_text_the_ui_uses_exists_in_both_languages(tmp_path, monkeypatch):
    import locales
    import ui.app
    import ui.texts

    seen: set[str] = set()
    real_translate = locales.translate

    def recording(language, key, **params):
        seen.add(key)
        return real_translate(language, key, **params)

    monkeypatch.setattr(locales, "translate", recording)
    monkeypatch.setattr(ui.texts, "translate", recording)
    made = []

    class RecordingTexts(ui.texts.Texts):
        def __init__(self, *args, **kwargs):
            super().__init__(*args, **kwargs)
            made.append(self)

    monkeypatch.setattr(ui.app, "Texts", RecordingTexts)
    service, _backend = fake_image_service(tmp_path / "data")
    ui.app.build_ui(service, ui.app.UiOptions(Preferences(), demo=True),
                    PreferencesStore(tmp_path / "settings.json"))
    (texts,) = made
    texts.updates("en")
    texts.updates(ZH)

    used = texts.used_keys | seen
    assert {"common.prompt", "models.state_ready", "controlnet.type_canny",
            "img2img.resize_just_resize", "app.demo_banner"} <= used
    for language in (ZH, "en"):
        assert sorted(used - set(messages(language))) == [], language


# -- the real engine on the demo set ---------------------------------------------------------

@pytest.fixture(scope="module")
def real_ui(tmp_path_factory):
    from engine.demo.build import build_demo, demo_manifest_yaml, demo_settings
    from engine.service import ImageService
    from engine.settings import EngineSettings
    from engine.store.manifest import parse_manifest

    root = tmp_path_factory.mktemp("real-ui")
    demo = build_demo(root / "demo")
    service = ImageService(demo_settings(demo, EngineSettings(device="cpu", precision="fp32")),
                           parse_manifest(demo_manifest_yaml()), active_model=demo.base_id)
    service.start(preload=False)
    with running_ui(service, root, demo_mode=True) as running:
        yield running


@pytest.mark.engine
@pytest.mark.servers
def test_real_engine_txt2img_through_the_ui(real_ui):
    result = call(real_ui.client, "/txt2img", **by_keys(
        common__prompt=PROMPT, common__seed=7, **SMALL))

    (image, caption), = gallery(result)
    assert image.size == (64, 64)
    assert caption == translate(ZH, "common.seed_caption", seed=7)
    parsed = parse_infotext(result[1])
    assert (parsed["seed"], parsed["steps"], parsed["model"]) == (7, 2, "demo-base")


@pytest.mark.engine
@pytest.mark.servers
def test_real_engine_lora_tag_in_the_prompt(real_ui):
    plain = call(real_ui.client, "/txt2img", **by_keys(common__prompt=PROMPT, common__seed=7,
                                                       **SMALL))
    styled = call(real_ui.client, "/txt2img", **by_keys(
        common__prompt=f"{PROMPT} <lora:demo-lora-ink:0.8>", common__seed=7, **SMALL))

    assert parse_infotext(styled[1])["loras"] == [{"name": "demo-lora-ink", "weight": 0.8}]
    (plain_image, _), = gallery(plain)
    (styled_image, _), = gallery(styled)
    difference = np.abs(np.asarray(plain_image, dtype=np.int16)
                        - np.asarray(styled_image, dtype=np.int16))
    assert difference.max() > 0


@pytest.mark.servers
def test_download_source_is_saved_and_a_bad_custom_address_refused(tmp_path):
    service, _backend = fake_image_service(tmp_path / "data")
    with running_ui(service, tmp_path) as ui:
        call(ui.client, "/save_settings", **by_keys(
            settings__language=ZH, settings__output_dir=str(tmp_path / "out"),
            settings__source="hf-mirror"))
        assert ui.store.load().download_source == "hf-mirror"
        with pytest.raises(Exception) as caught:
            call(ui.client, "/save_settings", **by_keys(
                settings__language=ZH, settings__output_dir=str(tmp_path / "out"),
                settings__source="custom", settings__custom_endpoint="ftp://example"))
        assert error_text(ZH, "invalid_endpoint", {"value": "ftp://example"}) in str(caught.value)
        assert ui.store.load().download_source == "hf-mirror"


@pytest.mark.servers
def test_models_tab_starts_downloads_from_the_chosen_source_and_guards_delete(tmp_path):
    from app_settings import Preferences as Prefs

    service, _backend = fake_image_service(tmp_path / "data")
    downloads = RecordingDownloader.install(service)
    with running_ui(service, tmp_path) as ui:
        ui.store.save(Prefs(download_source="hf-mirror"))  # as 设置 saves it
        rows, status, _ = ui.client.predict("pai-food-large", api_name="/download_model")
        assert downloads.calls[0][0] == "pai-food-large"
        assert downloads.calls[0][1].endpoint == "https://hf-mirror.com"
        assert status.startswith("下载中 0.0%")
        with pytest.raises(Exception) as caught:
            ui.client.predict("pai-food-large", False, api_name="/delete_model")
        assert translate(ZH, "models.confirm_first") in str(caught.value)
        assert model_state(service, "pai-food-large") is ModelState.DOWNLOADING
        ui.client.predict("pai-food-large", True, api_name="/delete_model")
        assert downloads.deleted == ["pai-food-large"]
        assert model_state(service, "pai-food-large") is ModelState.MISSING  # files gone


def test_interrupt_cancels_a_job_still_waiting_in_the_queue_but_not_a_later_one(tmp_path):
    import gradio as gr

    from ui.job_runner import JobRunner
    from ui.texts import Texts

    service, backend = fake_image_service(tmp_path / "data")
    backend.gate = threading.Event()
    runner = JobRunner(service, Texts(ZH))
    request = Txt2ImgRequest(model=service.active_model, prompt=PROMPT, steps=1, width=64,
                             height=64)
    runner.interrupt("me")  # nothing of mine is queued: this must not touch later jobs
    outcomes: dict[str, object] = {}

    def run(session: str) -> None:
        try:
            outcomes[session] = runner.run(request, session, lambda *a, **k: None)
        except gr.Error as error:
            outcomes[session] = error

    first = threading.Thread(target=run, args=("other",))
    first.start()
    assert backend.started.wait(30)  # the other session's job holds the device
    second = threading.Thread(target=run, args=("me",))
    second.start()
    deadline = time.monotonic() + 30
    while service.jobs.waiting == 0 and time.monotonic() < deadline:
        time.sleep(0.01)
    runner.interrupt("me")  # mine still waits in line
    second.join(30)
    assert isinstance(outcomes["me"], gr.Error)
    assert outcomes["me"].message == error_text(ZH, "cancelled")
    backend.gate.set()
    first.join(30)
    assert outcomes["other"].images


@pytest.mark.servers
def test_models_tab_imports_from_a_folder(tmp_path):
    service, _backend = fake_image_service(tmp_path / "data")
    downloads = RecordingDownloader.install(service)
    with running_ui(service, tmp_path) as ui:
        ui.client.predict("pai-artist-large", str(tmp_path), api_name="/import_folder")
        assert downloads.calls == [("pai-artist-large", tmp_path)]
        with pytest.raises(Exception) as caught:
            ui.client.predict("pai-artist-large", "  ", api_name="/import_folder")
        assert translate(ZH, "models.import_folder_missing") in str(caught.value)


def test_skip_drops_the_current_batch_of_my_job(tmp_path):
    from ui.job_runner import JobRunner
    from ui.texts import Texts

    service, _backend = fake_image_service(tmp_path / "data", step_delay=0.05)
    runner = JobRunner(service, Texts(ZH))
    request = Txt2ImgRequest(model=service.active_model, prompt=PROMPT, steps=10,
                             batch_count=2, width=64, height=64, seed=10)
    skipped = threading.Event()

    def progress(value, desc=None, unit="steps"):
        if isinstance(value, tuple) and not skipped.is_set():
            runner.skip("me")  # while the first batch runs
            skipped.set()

    result = runner.run(request, "me", progress)
    assert [image.seed for image in result.images] == [11]


@pytest.mark.servers
def test_models_placed_in_the_folder_are_listed_with_why_they_cannot_load(tmp_path):
    from tests.support.model_files import give_base_the_single_files_shape, write_single_file

    service, _backend = fake_image_service(tmp_path / "data")
    # The downloaded PAI base can give the single file its configs: it is usable.
    give_base_the_single_files_shape(service, "pai-artist-large")
    with running_ui(service, tmp_path) as ui:
        # Dropped in after the page was built:
        checkpoints = service.settings.checkpoint_dir
        write_single_file(checkpoints / "水墨.safetensors", size=2 * 1024**3)  # sparse
        (checkpoints / "old.ckpt").write_bytes(b"a pickle")  # never opened
        lora_dir = service.settings.lora_dir
        lora_dir.mkdir(parents=True, exist_ok=True)
        (lora_dir / "ink.safetensors").write_bytes(b"\0" * 1024**2)
        _, local, picker = ui.client.predict(service.active_model, api_name="/refresh_models")
        rows = {row[0]: row for row in (local["data"] if isinstance(local, dict) else local)}
        assert rows["水墨.safetensors"][1:4] == ["单文件模型", "可用", "2.00 GB"]
        assert rows["old.ckpt"][2] == error_text(ZH, "checkpoint_pickle", {"name": "old.ckpt"})
        assert rows["ink.safetensors"][1] == "LoRA"
        assert picker["value"] == service.active_model  # refreshing keeps the chosen model
        offered = {label: value for label, value in picker["choices"]}
        # Named as inside the checkpoints folder, as the API does: no server path is shown.
        assert offered["水墨.safetensors（本地）"] == "水墨.safetensors"
        assert not any(str(tmp_path) in value for value in offered.values())
        assert not any("old.ckpt" in label or "ink" in label for label in offered)


@pytest.mark.servers
def test_picking_a_model_not_on_disk_offers_a_download_and_switches_after_consent(tmp_path):
    from app_settings import Preferences as Prefs

    service, _backend = fake_image_service(tmp_path / "data", downloaded=ALL_BUT_FOOD)
    # A download the test starts finishes at once: the model's files are then on disk.
    downloads = RecordingDownloader.install(service, completes=True)
    with running_ui(service, tmp_path) as ui:
        ui.store.save(Prefs(download_source="hf-mirror"))
        before = service.active_model
        # (the client sees no layout blocks: the box's visibility is checked in the browser)
        *sizes, question, status = ui.client.predict("pai-food-large", api_name="/switch_model")
        assert all(size == {"__type__": "update"} for size in sizes) and status == ""
        assert "PAI 中华美食（大）" in question and "4.2 GB" in question
        assert "hf-mirror.com" in question
        assert service.active_model == before and not downloads.calls  # asked, not fetched
        *sizes, status = ui.client.predict(api_name="/accept_download")
        assert downloads.calls[0][0] == "pai-food-large"
        assert downloads.calls[0][1].endpoint == "https://hf-mirror.com"
        assert service.active_model == "pai-food-large" and status == ""
        assert sizes == [512, 512] * 3
        assert model_state(service, "pai-food-large") is ModelState.READY


@pytest.mark.servers
def test_declining_the_download_offer_keeps_the_model_in_use(tmp_path):
    service, backend = fake_image_service(tmp_path / "data", downloaded=ALL_BUT_FOOD)
    downloads = RecordingDownloader.install(service)
    with running_ui(service, tmp_path) as ui:
        before = service.active_model
        ui.client.predict("pai-food-large", api_name="/switch_model")
        picker = ui.client.predict(api_name="/decline_download")
        assert picker == before
        assert not downloads.calls and service.active_model == before
        assert "pai-food-large" not in backend.loaded
        assert model_state(service, "pai-food-large") is ModelState.MISSING


def test_rest_callers_without_a_session_never_share_one():
    from types import SimpleNamespace

    from ui.job_runner import session_of, user_of

    no_session = SimpleNamespace(session_hash=None, username=None)
    assert session_of(no_session) != session_of(no_session)
    assert user_of(SimpleNamespace(session_hash="abc", username=None)) == "session:abc"
    assert user_of(SimpleNamespace(session_hash="abc", username="alice")) == "user:alice"
