"""设置: language, output folder, memory mode and default sampler, kept across restarts."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from app_settings import Preferences, PreferencesStore
from engine.download_sources import SOURCE_KINDS, DownloadSource
from engine.errors import EngineError
from engine.samplers import SAMPLERS
from engine.settings import MEMORY_MODES
from locales import LANGUAGES
from ui.service import ImageServiceLike
from ui.texts import Texts

logger = logging.getLogger(__name__)

LANGUAGE_NAMES = {"zh-CN": "中文", "en": "English"}


@dataclass(frozen=True)
class SettingsTab:
    language: Any
    output_dir: Any
    memory_mode: Any
    default_sampler: Any
    source: Any
    custom_endpoint: Any
    save: Any


def _memory_choices(language: str) -> list[tuple[str, str]]:
    from locales import translate

    return [(translate(language, f"settings.memory_{mode}"), mode) for mode in MEMORY_MODES]


def _source_choices(language: str) -> list[tuple[str, str]]:
    from locales import translate

    return [(translate(language, f"settings.source_{kind or 'auto'}"), kind)
            for kind in ("", *SOURCE_KINDS)]


def build_settings_tab(texts: Texts, preferences: Preferences) -> SettingsTab:
    language = gr.Radio(choices=[(LANGUAGE_NAMES[code], code) for code in LANGUAGES],
                        value=preferences.language, label=texts("settings.language"),
                        elem_id="settings-language")
    texts.bind(language, label="settings.language")
    output_dir = texts.make(gr.Textbox, label="settings.output_dir", info="settings.output_hint",
                            value=preferences.output_dir, elem_id="settings-output-dir")
    memory_mode = gr.Radio(choices=_memory_choices(texts.language), value=preferences.memory_mode,
                           label=texts("settings.memory_mode"))
    texts.bind(memory_mode, label="settings.memory_mode", choices=_memory_choices)
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
    save = texts.make(gr.Button, text="settings.save", variant="primary", elem_id="settings-save")
    return SettingsTab(language, output_dir, memory_mode, default_sampler, source,
                       custom_endpoint, save)


def wire_settings(tab: SettingsTab, texts: Texts, service: ImageServiceLike,
                  store: PreferencesStore) -> None:
    """Save and apply: new texts everywhere, the output folder, the memory mode."""

    def save(values: dict):
        folder = Path((values[tab.output_dir] or "").strip() or "outputs").expanduser()
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            raise texts.failure(texts("settings.output_unwritable", folder=str(folder))) from None
        before = store.load()
        chosen = Preferences(language=values[tab.language], output_dir=str(folder),
                             memory_mode=values[tab.memory_mode],
                             default_sampler=values[tab.default_sampler],
                             download_source=values[tab.source] or "",
                             custom_endpoint=(values[tab.custom_endpoint] or "").strip())
        try:
            DownloadSource.from_choice(chosen.download_source, chosen.custom_endpoint)
        except EngineError as error:
            raise texts.engine_failure(error) from None
        try:
            store.save(chosen)
        except OSError:
            raise texts.failure(texts("settings.save_failed")) from None
        service.output_dir = folder
        if chosen.memory_mode != before.memory_mode:
            service.set_memory_mode(chosen.memory_mode)
        updates = texts.updates(chosen.language)
        gr.Info(texts("settings.saved"))
        return updates

    tab.save.click(save, inputs={tab.language, tab.output_dir, tab.memory_mode,
                                 tab.default_sampler, tab.source, tab.custom_endpoint},
                   outputs=texts.components, api_name="save_settings")
