"""Settings that change the server are for admins (issue 9, item 3), driven as a hostile client
would: through the handlers' API names with ``gradio_client``, whatever the page shows.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from gradio_client.exceptions import AppError

from app_settings import Preferences
from engine.fake_engine import FakeEngine, fake_image_service
from engine.service import ImageService
from engine.settings import DEFAULT_MANIFEST, SpeedSettings
from engine.store.catalog import ModelState
from engine.store.manifest import load_manifest
from locales import error_text, translate
from tests.support.download_recorder import RecordingDownloader
from tests.support.model_files import model_state
from tests.support.ui_client import RunningUi, by_keys, call, running_ui
from ui.access import Access

pytestmark = pytest.mark.servers

ZH = "zh-CN"
ALICE, BOB = ("alice", "alice-pw"), ("bob", "bob-pw")
ADMIN_PASSWORD = "s3cret-admin"


FOOD = "pai-food-large"  # on disk unless a test leaves it out; never the active model


@dataclass
class Shared:
    """A running install: the admin's session (``ui.client``), bob's, the fake engine under the
    real service, and the double in the service's downloader's place."""

    ui: RunningUi
    bob: Any
    engine: FakeEngine
    downloads: RecordingDownloader

    @property
    def service(self) -> ImageService:
        return self.ui.service


@contextlib.contextmanager
def shared_install(tmp_path: Path, downloaded: list[str] | None = None) -> Iterator[Shared]:
    """A LAN install with two accounts: alice is the admin, bob is not."""
    service, engine = fake_image_service(tmp_path / "data", downloaded=downloaded)
    downloads = RecordingDownloader.install(service)
    access = Access(admins=frozenset({"alice"}), local_admin=False)
    with running_ui(service, tmp_path, auth=[ALICE, BOB], access=access) as ui:
        ui.store.save(Preferences(output_dir=str(tmp_path / "outputs")))
        yield Shared(ui, ui.connect(auth=BOB), engine, downloads)


def served(tmp_path: Path) -> tuple[ImageService, FakeEngine, RecordingDownloader]:
    """The real service over the fake engine, every model on disk, downloads recorded."""
    service, engine = fake_image_service(tmp_path / "data")
    return service, engine, RecordingDownloader.install(service)


DEFAULT_SPEED = SpeedSettings()


def save(client, output_dir: str, language: str = ZH, memory_mode: str = "auto",
         source: str = "", endpoint: str = "", sampler: str = "DPM++ 2M",
         speed: SpeedSettings = DEFAULT_SPEED):
    return call(client, "/save_settings", **by_keys(
        settings__language=language, settings__output_dir=output_dir,
        settings__memory_mode=memory_mode, settings__default_sampler=sampler,
        settings__source=source, settings__custom_endpoint=endpoint,
        settings__channels_last=speed.channels_last, settings__fuse_qkv=speed.fuse_qkv,
        settings__compile_unet=speed.compile_unet,
        settings__step_cache_interval=speed.step_cache_interval,
        settings__preview_method=speed.preview_method))


def refused_as(code: str, caught: pytest.ExceptionInfo, **params) -> bool:
    return str(caught.value) == error_text(ZH, code, params)


def file_text(path: Path) -> str | None:
    return path.read_text(encoding="utf-8") if path.exists() else None


@pytest.fixture
def shared(tmp_path):
    with shared_install(tmp_path) as install:
        yield install


@pytest.mark.parametrize("change", [
    dict(output_dir="elsewhere"), dict(memory_mode="model_offload"), dict(source="hf-mirror"),
    dict(source="custom", endpoint="https://hub.example.com"),
    dict(speed=SpeedSettings(fuse_qkv=True)), dict(speed=SpeedSettings(step_cache_interval=3)),
])
def test_a_non_admin_cannot_change_server_settings(shared, tmp_path, change):
    ui, bob = shared.ui, shared.bob
    before = file_text(ui.store.path)
    values = dict(output_dir=str(tmp_path / "outputs"))
    if "output_dir" in change:
        change = dict(output_dir=str(tmp_path / change["output_dir"]))
    with pytest.raises(AppError) as caught:
        save(bob, **{**values, **change})
    assert refused_as("admin_only", caught)
    assert file_text(ui.store.path) == before
    assert shared.engine.memory_modes == [] and ui.service.output_dir is None
    assert shared.engine.speeds == []
    assert not (tmp_path / "elsewhere").exists()


def test_a_non_admin_keeps_language_and_sampler_to_their_own_browser(shared, tmp_path):
    ui, bob = shared.ui, shared.bob
    before = file_text(ui.store.path)
    result = save(bob, str(tmp_path / "outputs"), language="en", sampler="Euler a")
    assert result[-1] == {"language": "en", "default_sampler": "Euler a"}
    assert file_text(ui.store.path) == before  # the shared file is the admin's


def test_the_admin_can_change_server_settings(shared, tmp_path):
    ui = shared.ui
    save(ui.client, str(tmp_path / "pictures"), memory_mode="model_offload", source="hf-mirror")
    saved = ui.store.load()
    assert (saved.output_dir, saved.memory_mode, saved.download_source) == (
        str(tmp_path / "pictures"), "model_offload", "hf-mirror")
    assert shared.engine.memory_modes == ["model_offload"]
    assert ui.service.output_dir == (tmp_path / "pictures").resolve()
    assert shared.engine.speeds == []  # unchanged, so not sent


def test_the_admin_changes_speed_settings_and_a_bad_one_changes_nothing(shared, tmp_path):
    ui, outputs = shared.ui, str(tmp_path / "outputs")
    speed = SpeedSettings(channels_last=True, compile_unet=True, step_cache_interval=3,
                          preview_method="taesd")
    save(ui.client, outputs, speed=speed)
    assert ui.store.load().speed == speed
    assert shared.engine.speeds == [speed]

    before = file_text(ui.store.path)
    with pytest.raises(AppError) as caught:
        # Gradio refuses values beyond the slider's range; a fraction gets past it.
        save(ui.client, outputs, speed=SpeedSettings(step_cache_interval=2.5))  # type: ignore[arg-type]
    assert refused_as("invalid_speed_setting", caught, name="step_cache_interval")
    assert file_text(ui.store.path) == before and shared.engine.speeds == [speed]


@pytest.mark.parametrize("api_name, arguments", [
    ("/download_model", ("pai-food-large",)),
    ("/cancel_download", ("pai-food-large",)),
    ("/verify_model", ("pai-food-large",)),
    ("/delete_model", ("pai-food-large", True)),
    ("/import_folder", ("pai-food-large", "/tmp")),
])
def test_a_non_admin_calling_model_handlers_directly_is_refused(shared, api_name, arguments):
    with pytest.raises(AppError) as caught:
        shared.bob.predict(*arguments, api_name=api_name)
    assert refused_as("admin_only", caught)
    downloads = shared.downloads
    assert (downloads.calls, downloads.deleted, downloads.cancelled,
            downloads.verified) == ([], [], [], [])
    assert model_state(shared.service, FOOD) is ModelState.READY  # its files are still there


def test_a_non_admin_is_not_offered_a_download_and_cannot_accept_one(tmp_path):
    all_but_food = [e.id for e in load_manifest(DEFAULT_MANIFEST).models if e.id != FOOD]
    with shared_install(tmp_path, downloaded=all_but_food) as shared:
        assert model_state(shared.service, FOOD) is ModelState.MISSING  # really not on disk
        with pytest.raises(AppError) as caught:
            shared.bob.predict(FOOD, api_name="/switch_model")
        assert FOOD in str(caught.value) and "尚未下载" in str(caught.value)
        with pytest.raises(AppError) as caught:
            shared.bob.predict(api_name="/accept_download")
        assert refused_as("admin_only", caught)
        assert shared.downloads.calls == []


def test_the_admin_may_delete(shared):
    assert model_state(shared.service, FOOD) is ModelState.READY
    shared.ui.client.predict(FOOD, True, api_name="/delete_model")
    assert shared.downloads.deleted == [FOOD]
    assert model_state(shared.service, FOOD) is ModelState.MISSING  # its files are gone


def _updates_by_elem_id(ui, result) -> dict[str, dict]:
    """The page-load updates by the elem_id of their component (the client leaves out layout
    blocks such as tabs, which have no API value)."""
    function = next(f for f in ui.demo.fns.values() if f.api_name == "on_load")
    outputs = [block for block in function.outputs if not getattr(block, "skip_api", False)]
    assert len(outputs) == len(result)
    return {getattr(block, "elem_id", None): update
            for block, update in zip(outputs, result, strict=True) if isinstance(update, dict)}


ADMIN_FIELDS = ("settings-output-dir", "settings-custom-endpoint", "settings-source",
                "models-confirm-delete", "models-import-folder")
ADMIN_BUTTONS = ("models-download", "models-cancel", "models-verify", "models-delete",
                 "models-import", "download-offer-accept")


def test_the_page_disables_admin_fields_for_non_admins_only(shared):
    ui, bob = shared.ui, shared.bob
    for client, admin in ((bob, False), (ui.client, True)):
        updates = _updates_by_elem_id(ui, client.predict(api_name="/on_load"))
        for elem_id in ADMIN_FIELDS:
            assert updates[elem_id].get("interactive") is admin, (elem_id, admin)


def test_the_page_disables_admin_buttons_for_non_admins_only(shared):
    """Buttons have no API value, so the page-load handler is called in-process here."""
    ui = shared.ui
    function = next(f for f in ui.demo.fns.values() if f.api_name == "on_load")

    class Visitor:
        def __init__(self, username: str) -> None:
            self.username, self.session_hash = username, f"session-{username}"

    for user, admin in (("bob", False), ("alice", True)):
        updates = dict(zip((getattr(b, "elem_id", None) for b in function.outputs),
                           function.fn(None, Visitor(user)), strict=True))
        for elem_id in ADMIN_BUTTONS:
            assert updates[elem_id].get("interactive") is admin, (elem_id, admin)
        assert updates["settings-save"] == {"__type__": "update"}  # saving stays open to all
        assert updates["settings-admin-unlock"]["visible"] is False  # no password set


# -- the output folder stays under its base -----------------------------------------------------

@pytest.mark.parametrize("folder", ["~", "~/pictures", "/etc", "../..", "{base}/../elsewhere",
                                    "{base}/link-out"])
def test_output_folders_outside_the_base_are_refused(tmp_path, folder):
    base = tmp_path / "base"
    base.mkdir()
    (base / "link-out").symlink_to(tmp_path)
    service, _engine = fake_image_service(tmp_path / "data")
    with running_ui(service, tmp_path, outputs_base=base) as ui:
        with pytest.raises(AppError) as caught:
            save(ui.client, folder.format(base=base))
        assert refused_as("output_dir_outside_base", caught, base=str(base.resolve()))
        assert not ui.store.path.exists() and service.output_dir is None


def test_an_output_folder_inside_the_base_is_taken(tmp_path):
    service, _engine = fake_image_service(tmp_path / "data")
    with running_ui(service, tmp_path, outputs_base=tmp_path) as ui:
        save(ui.client, str(tmp_path / "a" / ".." / "pictures"))
    assert service.output_dir == (tmp_path / "pictures").resolve()


# -- private download endpoints -----------------------------------------------------------------

@pytest.mark.parametrize("endpoint, host", [
    ("http://127.0.0.1:8080", "127.0.0.1"), ("http://[::1]", "::1"), ("http://127.1", "127.1"),
    ("http://169.254.169.254", "169.254.169.254"), ("http://10.0.0.1", "10.0.0.1"),
])
def test_a_private_custom_endpoint_is_refused_without_the_flag(tmp_path, endpoint, host):
    with running_ui(fake_image_service(tmp_path / "data")[0], tmp_path) as ui:
        with pytest.raises(AppError) as caught:
            save(ui.client, str(tmp_path), source="custom", endpoint=endpoint)
        assert refused_as("private_endpoint", caught, host=host)
        assert not ui.store.path.exists()


def test_a_private_custom_endpoint_is_taken_with_the_flag(tmp_path):
    service, _engine, downloads = served(tmp_path)
    with running_ui(service, tmp_path, allow_private_endpoint=True) as ui:
        save(ui.client, str(tmp_path), source="custom", endpoint="http://127.0.0.1:8080")
        assert ui.store.load().custom_endpoint == "http://127.0.0.1:8080"
        ui.client.predict("pai-food-large", api_name="/download_model")
    assert downloads.calls[0][1].endpoint == "http://127.0.0.1:8080"


# -- a Space: public, no accounts -------------------------------------------------------------

def space_access(password: str | None = None) -> Access:
    return Access(local_admin=False, admin_password=password, personal_preferences=True)


def test_on_a_space_two_visitors_keep_their_own_language(tmp_path):
    service, _engine = fake_image_service(tmp_path / "data")
    with running_ui(service, tmp_path, access=space_access()) as ui:
        ui.store.save(Preferences(output_dir=str(tmp_path)))
        english, chinese = ui.connect(), ui.connect()
        shared_file = file_text(ui.store.path)
        mine = save(english, str(tmp_path), language="en")[-1]
        theirs = save(chinese, str(tmp_path), language=ZH)[-1]
        assert (mine["language"], theirs["language"]) == ("en", ZH)
        assert file_text(ui.store.path) == shared_file  # nothing written to the shared file

        def labels(client, state) -> set[str]:
            result = client.predict(state, api_name="/on_load")
            updates = _updates_by_elem_id(ui, result)
            return {updates.get("txt2img-prompt", {}).get("label")}

        assert labels(english, mine) == {translate("en", "common.prompt")}
        assert labels(chinese, theirs) <= {None, translate(ZH, "common.prompt")}
        # A message for the Chinese visitor is still in Chinese.
        with pytest.raises(AppError) as caught:
            save(chinese, str(tmp_path / "x"), memory_mode="model_offload")
        assert refused_as("admin_only", caught)


def test_on_a_space_nobody_is_admin_without_a_password(tmp_path):
    service, _engine, downloads = served(tmp_path)
    with running_ui(service, tmp_path, access=space_access()) as ui:
        with pytest.raises(AppError) as caught:
            ui.client.predict("pai-food-large", True, api_name="/delete_model")
        assert refused_as("admin_only", caught)
        with pytest.raises(AppError) as caught:
            ui.client.predict("anything", api_name="/unlock_admin")
        assert refused_as("admin_password_wrong", caught)
    assert downloads.deleted == [] and model_state(service, FOOD) is ModelState.READY


def test_on_a_space_the_admin_password_unlocks_one_browser_session(tmp_path, caplog):
    service, _engine, downloads = served(tmp_path)
    with running_ui(service, tmp_path, access=space_access(ADMIN_PASSWORD)) as ui:
        visitor = ui.connect()
        with pytest.raises(AppError) as caught:
            ui.client.predict("wrong-guess-123", api_name="/unlock_admin")
        assert refused_as("admin_password_wrong", caught)
        ui.client.predict(ADMIN_PASSWORD, api_name="/unlock_admin")
        save(ui.client, str(tmp_path / "pictures"), memory_mode="model_offload", language="en")
        saved = ui.store.load()
        assert (saved.output_dir, saved.memory_mode) == (str(tmp_path / "pictures"),
                                                         "model_offload")
        assert saved.language == ZH  # on a Space, even the admin's language is their own
        ui.client.predict("pai-food-large", True, api_name="/delete_model")
        assert downloads.deleted == ["pai-food-large"]
        assert model_state(service, FOOD) is ModelState.MISSING
        with pytest.raises(AppError) as caught:
            visitor.predict("pai-food-large", True, api_name="/delete_model")
        assert refused_as("admin_only", caught)
    assert downloads.deleted == ["pai-food-large"]
    assert ADMIN_PASSWORD not in caplog.text and "wrong-guess-123" not in caplog.text


def test_wrong_admin_passwords_back_off_even_the_right_one(tmp_path):
    from api.guard import LoginThrottle

    access = space_access(ADMIN_PASSWORD)
    access.throttle = LoginThrottle(free_tries=3)
    service, _engine, downloads = served(tmp_path)
    with running_ui(service, tmp_path, access=access) as ui:
        for attempt in range(3):
            with pytest.raises(AppError) as caught:
                ui.client.predict(f"guess-{attempt}", api_name="/unlock_admin")
            assert refused_as("admin_password_wrong", caught)
        with pytest.raises(AppError) as caught:  # a guesser learns nothing from a hit now
            ui.client.predict(ADMIN_PASSWORD, api_name="/unlock_admin")
        assert refused_as("guard_too_many_attempts", caught, seconds=1)  # 1 s after 3 misses
        with pytest.raises(AppError):
            ui.client.predict("pai-food-large", True, api_name="/delete_model")
    assert downloads.deleted == [] and model_state(service, FOOD) is ModelState.READY
