"""设置: language, output folder, memory mode and default sampler, kept across restarts.

The output folder, the download source and the memory mode change the server for everyone:
only an admin changes them (``ui.access``). A visitor's language and default sampler are
theirs alone where they are not the admin or the app is a Space: they stay in their browser
(``gr.BrowserState``) and never reach the shared settings file.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from app_settings import Preferences, PreferencesStore, output_folder
from engine.downloads.sources import SOURCE_KINDS, DownloadSource
from engine.errors import EngineError, InvalidRequest
from engine.interfaces import ImageServiceLike
from engine.samplers import SAMPLERS
from engine.settings import (
    MAX_STEP_CACHE_INTERVAL,
    MEMORY_MODES,
    PREVIEW_METHODS,
    TAESD_MODEL,
    SpeedSettings,
)
from engine.store.catalog import ModelState
from engine.store.manifest import ModelKind
from locales import LANGUAGES, translate
from ui.access import Access
from ui.texts import Texts

logger = logging.getLogger(__name__)

LANGUAGE_NAMES = {"zh-CN": "中文", "en": "English"}
# The key under which a visitor's own choices live in their browser. The value is no secret
# (a language and a sampler); a fixed key and secret keep it readable across restarts.
BROWSER_KEY = "huajing-preferences"


@dataclass(frozen=True)
class SettingsTab:
    language: Any
    output_dir: Any
    memory_mode: Any
    default_sampler: Any
    source: Any
    custom_endpoint: Any
    save: Any
    admin_password: Any
    unlock: Any
    personal: Any  # gr.BrowserState: {"language": ..., "default_sampler": ...} or {}
    speed: SpeedWidgets
    preview_note: Any  # gr.Markdown under the preview method: TAESD is not downloaded
    preview_note_text: Callable[[str], str]  # what it says now, in a language

    def server_widgets(self) -> list[Any]:
        """What only an admin may change."""
        return [self.output_dir, self.memory_mode, self.source, self.custom_endpoint,
                *self.speed.widgets()]

    def inputs(self) -> set[Any]:
        return {self.language, self.output_dir, self.memory_mode, self.default_sampler,
                self.source, self.custom_endpoint, *self.speed.widgets()}


@dataclass(frozen=True)
class SpeedWidgets:
    """``engine.settings.SpeedSettings`` field by field."""

    channels_last: Any
    fuse_qkv: Any
    compile_unet: Any
    step_cache_interval: Any
    preview_method: Any

    def widgets(self) -> list[Any]:
        return [getattr(self, field.name) for field in dataclasses.fields(self)]

    def chosen(self, values: dict) -> SpeedSettings:
        chosen = {field.name: values[getattr(self, field.name)]
                  for field in dataclasses.fields(self)}
        interval = chosen["step_cache_interval"]
        if isinstance(interval, float) and interval.is_integer():  # a slider sends floats
            chosen["step_cache_interval"] = int(interval)
        return SpeedSettings(**chosen)


def _memory_choices(language: str) -> list[tuple[str, str]]:
    return [(translate(language, f"settings.memory_{mode}"), mode) for mode in MEMORY_MODES]


def _preview_choices(language: str) -> list[tuple[str, str]]:
    return [(translate(language, f"settings.preview_{method}"), method)
            for method in PREVIEW_METHODS]


def taesd_note(service: ImageServiceLike, language: str) -> str:
    """Says that previews use the approximation until TAESD is downloaded (and where to get
    it); empty once it is ready."""
    ready = any(status.entry.id == TAESD_MODEL and status.state is ModelState.READY
                for status in service.model_statuses(ModelKind.PREVIEW_DECODER))
    return "" if ready else translate(language, "settings.taesd_missing")


def _speed_widgets(texts: Texts, preferences: Preferences,
                   note_text: Callable[[str], str]) -> tuple[SpeedWidgets, Any]:
    speed = preferences.speed
    with texts.make(gr.Accordion, label="settings.speed", open=False):
        texts.make(gr.Markdown, text="settings.speed_hint")
        with gr.Row():
            channels_last = texts.make(gr.Checkbox, label="settings.channels_last",
                                       info="settings.channels_last_hint",
                                       value=speed.channels_last)
            fuse_qkv = texts.make(gr.Checkbox, label="settings.fuse_qkv",
                                  info="settings.fuse_qkv_hint", value=speed.fuse_qkv)
            compile_unet = texts.make(gr.Checkbox, label="settings.compile_unet",
                                      info="settings.compile_unet_hint",
                                      value=speed.compile_unet)
        with gr.Row():
            step_cache = texts.make(gr.Slider, label="settings.step_cache_interval",
                                    info="settings.step_cache_interval_hint", minimum=0,
                                    maximum=MAX_STEP_CACHE_INTERVAL, step=1,
                                    value=speed.step_cache_interval)
            preview = gr.Radio(choices=_preview_choices(texts.language),
                               value=speed.preview_method, label=texts("settings.preview_method"))
            texts.bind(preview, label="settings.preview_method", choices=_preview_choices)
        note = gr.Markdown(note_text(texts.language), elem_id="settings-taesd-note")
        texts.bind(note, value=note_text)
    return SpeedWidgets(channels_last, fuse_qkv, compile_unet, step_cache, preview), note


def _source_choices(language: str) -> list[tuple[str, str]]:
    return [(translate(language, f"settings.source_{kind or 'auto'}"), kind)
            for kind in ("", *SOURCE_KINDS)]


def personal_choices(state: Any, saved: Preferences) -> tuple[str, str]:
    """(language, default sampler) from a browser's own state, else the saved ones. The state
    comes from the browser, so anything unknown in it is ignored."""
    state = state if isinstance(state, dict) else {}
    language = state.get("language")
    sampler = state.get("default_sampler")
    return (language if language in LANGUAGES else saved.language,
            sampler if sampler in SAMPLERS else saved.default_sampler)


def _admin_unlock(texts: Texts, access: Access) -> tuple[Any, Any]:
    with gr.Row(equal_height=True):
        password = texts.make(gr.Textbox, label="settings.admin_password", type="password",
                              info="settings.admin_password_hint", scale=3,
                              visible=access.can_unlock, elem_id="settings-admin-password")
        unlock = texts.make(gr.Button, text="settings.admin_unlock", scale=1,
                            visible=access.can_unlock, elem_id="settings-admin-unlock")
    return password, unlock


def build_settings_tab(texts: Texts, preferences: Preferences, access: Access,
                       outputs_base: Path, service: ImageServiceLike) -> SettingsTab:
    language = gr.Radio(choices=[(LANGUAGE_NAMES[code], code) for code in LANGUAGES],
                        value=preferences.language, label=texts("settings.language"),
                        elem_id="settings-language")
    texts.bind(language, label="settings.language")
    output_dir = gr.Textbox(label=texts("settings.output_dir"), value=preferences.output_dir,
                            info=_output_hint(texts.language, outputs_base),
                            elem_id="settings-output-dir")
    texts.bind(output_dir, label="settings.output_dir",
               info=lambda language: _output_hint(language, outputs_base))
    memory_mode = gr.Radio(choices=_memory_choices(texts.language), value=preferences.memory_mode,
                           label=texts("settings.memory_mode"),
                           info=texts("settings.memory_mode_hint"))
    texts.bind(memory_mode, label="settings.memory_mode", info="settings.memory_mode_hint",
               choices=_memory_choices)
    default_sampler = texts.make(gr.Dropdown, label="settings.default_sampler",
                                 choices=list(SAMPLERS), value=preferences.default_sampler)
    source = gr.Radio(choices=_source_choices(texts.language),
                      value=preferences.download_source, label=texts("settings.source"),
                      elem_id="settings-source")
    texts.bind(source, label="settings.source", choices=_source_choices)
    custom_endpoint = texts.make(gr.Textbox, label="settings.custom_endpoint",
                                 placeholder="settings.custom_endpoint_hint",
                                 value=preferences.custom_endpoint,
                                 elem_id="settings-custom-endpoint")
    def note_text(language: str) -> str:
        return taesd_note(service, language)

    speed, note = _speed_widgets(texts, preferences, note_text)
    save = texts.make(gr.Button, text="settings.save", variant="primary", elem_id="settings-save")
    password, unlock = _admin_unlock(texts, access)
    personal = gr.BrowserState({}, storage_key=BROWSER_KEY, secret=BROWSER_KEY)
    return SettingsTab(language, output_dir, memory_mode, default_sampler, source,
                       custom_endpoint, save, password, unlock, personal, speed, note,
                       note_text)


def _output_hint(language: str, base: Path) -> str:
    return translate(language, "settings.output_hint", base=str(base.resolve()))


def _same_folder(typed: str, saved: str, base: Path) -> bool:
    try:
        return output_folder(typed, base) == output_folder(saved, base)
    except EngineError:
        return False


def _server_changes(values: dict, tab: SettingsTab, before: Preferences,
                    base: Path) -> Preferences | None:
    """The saved preferences with the server settings as chosen, or None if none changed."""
    chosen = dataclasses.replace(
        before, output_dir=(values[tab.output_dir] or "").strip(),
        memory_mode=values[tab.memory_mode], download_source=values[tab.source] or "",
        custom_endpoint=(values[tab.custom_endpoint] or "").strip(),
    ).with_speed(tab.speed.chosen(values))
    unchanged = (_same_folder(chosen.output_dir, before.output_dir, base)
                 and (chosen.memory_mode, chosen.download_source, chosen.custom_endpoint,
                      chosen.speed)
                 == (before.memory_mode, before.download_source, before.custom_endpoint,
                     before.speed))
    return None if unchanged else chosen


def wire_settings(tab: SettingsTab, texts: Texts, service: ImageServiceLike,
                  store: PreferencesStore, access: Access, outputs_base: Path,
                  allow_private_endpoint: bool = False) -> None:
    """Save and apply: new texts everywhere (or on this page only), the output folder, the
    memory mode. Changing a server setting needs an admin, checked here on the server."""

    def checked(chosen: Preferences) -> Path:
        """The output folder to use; raises before anything changes if a choice is bad."""
        try:
            folder = output_folder(chosen.output_dir, outputs_base)
            DownloadSource.from_choice(chosen.download_source, chosen.custom_endpoint,
                                       allow_private=allow_private_endpoint)
            problems = chosen.speed.problems()
            if problems:
                raise InvalidRequest("invalid_speed_setting", name=", ".join(problems))
        except EngineError as error:
            raise texts.engine_failure(error) from None
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            shown = chosen.output_dir or str(folder)
            raise texts.failure(texts("settings.output_unwritable", folder=shown)) from None
        return folder

    def store_and_apply(chosen: Preferences, before: Preferences, folder: Path | None) -> None:
        try:
            store.save(chosen)
        except OSError:
            raise texts.failure(texts("settings.save_failed")) from None
        if folder is not None:
            service.output_dir = folder
        if chosen.memory_mode != before.memory_mode:
            service.set_memory_mode(chosen.memory_mode)
        if chosen.speed != before.speed:
            service.set_speed(chosen.speed)

    def save(values: dict, request: gr.Request):
        before = store.load()
        language, sampler = personal_choices(
            {"language": values[tab.language], "default_sampler": values[tab.default_sampler]},
            before)
        server = _server_changes(values, tab, before, outputs_base)
        if server is not None and not access.is_admin(request):
            raise texts.failure(texts.error("admin_only"))
        personal = access.personal(request)
        chosen = server or before
        if not personal:
            chosen = dataclasses.replace(chosen, language=language, default_sampler=sampler)
        folder = checked(chosen) if server is not None else None
        if folder is not None and not chosen.output_dir:  # empty means the base: say so
            chosen = dataclasses.replace(chosen, output_dir=str(folder))
        if server is not None or not personal:
            store_and_apply(chosen, before, folder)
        # This page only, or the app's language for everyone (and its messages).
        updates = texts.updates_in(language) if personal else texts.updates(language)
        gr.Info(translate(language, "settings.saved"))
        mine = {"language": language, "default_sampler": sampler} if personal else {}
        return {**updates, tab.personal: mine}

    tab.save.click(save, inputs=tab.inputs(), outputs=[*texts.components, tab.personal],
                   api_name="save_settings")
