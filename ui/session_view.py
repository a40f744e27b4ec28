"""What a page shows its visitor when it opens: their language and default sampler, the server
settings as saved now, the device the engine runs on (and its banner when it matters), and the
admin-only widgets enabled for admins only. Entering the admin password (on a Space, or
wherever one is set) enables them for that browser session.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr

from app_settings import PreferencesStore
from ui.access import Access
from ui.device_view import DeviceView
from ui.settings_tab import SettingsTab, personal_choices
from ui.texts import Texts

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SessionView:
    settings: SettingsTab
    admin_widgets: list[Any]  # buttons and fields that change the server or its models
    samplers: list[Any]  # every default-sampler dropdown, the generation tabs' too
    device: DeviceView

    def admin_changes(self, admin: bool, access: Access) -> dict[Any, dict[str, Any]]:
        """Per component, what it shows for an admin or not."""
        changes: dict[Any, dict[str, Any]] = {
            widget: {"interactive": admin} for widget in self.admin_widgets}
        for widget in (self.settings.admin_password, self.settings.unlock):
            changes[widget] = {"visible": access.can_unlock and not admin}
        return changes


def wire_session_view(demo: gr.Blocks, texts: Texts, store: PreferencesStore, access: Access,
                      view: SessionView) -> None:
    built_in = texts.language
    tab = view.settings
    missing = set(map(id, [*view.admin_widgets, *view.samplers, tab.admin_password,
                           tab.unlock, tab.language, tab.preview_note, view.device.banner,
                           view.device.details])) - set(map(id, texts.components))
    if missing:  # on_load answers for texts.components only
        raise ValueError("a widget that a page load changes has no bound texts")

    # The state defaults to None so that API clients, which have no browser, may leave it out.
    def on_load(state: Any = None, request: gr.Request | None = None):
        saved = store.load()
        language, sampler = personal_choices(state, saved)
        changes = view.admin_changes(access.is_admin(request), access)
        for widget, value in ((tab.output_dir, saved.output_dir),
                              (tab.memory_mode, saved.memory_mode),
                              (tab.source, saved.download_source),
                              (tab.custom_endpoint, saved.custom_endpoint),
                              (tab.language, language),
                              *((sampler_widget, sampler) for sampler_widget in view.samplers)):
            changes.setdefault(widget, {})["value"] = value
        changes.setdefault(tab.preview_note, {})["value"] = tab.preview_note_text(language)
        for widget, change in view.device.changes(language).items():
            changes.setdefault(widget, {}).update(change)
        if language == built_in:
            updates = {component: gr.update(**changes[component]) if changes.get(component)
                       else gr.skip() for component in texts.components}
        else:
            relabelled = texts.updates_in(language)
            updates = {component: {**relabelled[component], **changes.get(component, {})}
                       for component in texts.components}
        # As a list in the outputs' order: callers of the page-load function read it so.
        return [updates[component] for component in texts.components]

    demo.load(on_load, inputs=tab.personal, outputs=texts.components, queue=False,
              api_name="on_load")
    wire_device_poll(texts, store, view)

    def unlock(password: str, request: gr.Request):
        wait = access.unlock_wait(request)
        if wait > 0:
            raise texts.failure(texts.error("guard_too_many_attempts", {"seconds": int(wait) + 1}))
        if not access.unlock(request, password):
            raise texts.failure(texts.error("admin_password_wrong"))
        gr.Info(texts("settings.admin_unlocked"))
        changes = view.admin_changes(True, access)
        changes[tab.admin_password] = {**changes[tab.admin_password], "value": ""}
        return {widget: gr.update(**change) for widget, change in changes.items()}

    outputs = list(view.admin_changes(True, access))
    tab.unlock.click(unlock, inputs=tab.admin_password, outputs=outputs, queue=False,
                     api_name="unlock_admin")


def wire_device_poll(texts: Texts, store: PreferencesStore, view: SessionView) -> None:
    """While the engine starts, a page asks for the device report every few seconds; once
    the engine has started (or failed to), the page's timer stops."""
    device = view.device

    def refresh(state: Any = None):
        language, _sampler = personal_choices(state, store.load())
        changes = device.changes(language)
        return {device.banner: gr.update(**changes[device.banner]),
                device.details: gr.update(**changes[device.details]),
                device.poll: gr.Timer(active=not device.settled())}

    device.poll.tick(refresh, inputs=view.settings.personal,
                     outputs=[device.banner, device.details, device.poll], queue=False,
                     show_progress="hidden")
