"""模型管理: every manifest model with its state, size and source; download (with progress),
cancel, verify, delete, and which base model is active; below, the models users placed in the
models folder (diffusers folders, single-file checkpoints, LoRAs), each saying if it can load.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gradio as gr

from engine.downloads.jobs import DownloadState
from engine.downloads.sources import DownloadSource
from engine.errors import EngineError
from engine.interfaces import ImageServiceLike
from engine.store.catalog import LocalModelStatus, ModelState, ModelStatus
from engine.store.manifest import ModelKind
from ui.access import Access
from ui.texts import Texts

POLL_SECONDS = 1.0


@dataclass(frozen=True)
class ModelsTab:
    table: Any
    refresh: Any
    choice: Any
    activate: Any
    download: Any
    cancel: Any
    verify: Any
    delete: Any
    confirm_delete: Any
    status: Any
    timer: Any
    folder: Any
    import_button: Any
    local_table: Any

    def admin_widgets(self) -> list[Any]:
        """What changes the models on disk: for admins only."""
        return [self.download, self.cancel, self.verify, self.confirm_delete, self.delete,
                self.folder, self.import_button]


def _size_text(size_bytes: int) -> str:
    if size_bytes <= 0:
        return "-"
    if size_bytes < 1024**3:
        return f"{size_bytes / 1024**2:.1f} MB"
    return f"{size_bytes / 1024**3:.2f} GB"


def status_rows(statuses: list[ModelStatus], language: str) -> list[list[str]]:
    from locales import translate

    rows = []
    for status in statuses:
        entry = status.entry
        state_key = status.state.value
        if status.state is ModelState.READY and status.size_only:
            state_key = "size_only"  # usable, but not "verified": no hash was there to check
        state = translate(language, f"models.state_{state_key}",
                          percent=f"{(status.progress or 0) * 100:.0f}")
        if status.converted:
            state += " · fp16"
        rows.append([
            entry.name.text(language),
            translate(language, f"models.kind_{entry.kind.value}"), state,
            _size_text(status.size_bytes), _source_text(status.source, language),
            "✔" if status.active else "", entry.id,
        ])
    return rows


def _source_text(source: str, language: str) -> str:
    from locales import translate

    if not source:
        return "-"
    if source.startswith(("http://", "https://")):
        return source.split("://", 1)[1]
    return translate(language, "models.source_folder")


def _headers(language: str) -> list[str]:
    from locales import translate

    return [translate(language, f"models.column_{name}")
            for name in ("name", "kind", "state", "size", "source", "active", "id")]


def local_rows(statuses: list[LocalModelStatus], language: str) -> list[list[str]]:
    """Name, kind, state (可用, or why not), size and where it lies in the models folder."""
    from locales import error_text, translate

    rows = []
    for status in statuses:
        state = (error_text(language, status.problem, status.problem_params)
                 if status.problem else translate(language, "models.local_usable"))
        rows.append([status.path.name, translate(language, f"models.local_{status.kind.value}"),
                     state, _size_text(status.size_bytes),
                     f"{status.path.parent.name}/"])
    return rows


def _local_headers(language: str) -> list[str]:
    from locales import translate

    return [translate(language, f"models.column_{name}")
            for name in ("name", "kind", "state", "size", "location")]


def _all_models(service: ImageServiceLike) -> Callable[[str], list[tuple[str, str]]]:
    def choices(language: str) -> list[tuple[str, str]]:
        return [(e.name.text(language), e.id)
                for kind in ModelKind for e in service.entries(kind)]

    return choices


def download_text(service: ImageServiceLike, texts: Texts, model_id: str | None) -> str:
    """One line about the chosen model's download: progress, result or error."""
    status = service.download_status(model_id) if model_id else None
    if status is None:
        return ""
    if status.error_code:
        return texts.error(status.error_code, status.error_params)
    if status.state is DownloadState.DONE and status.size_only:
        return texts("models.download_size_only", **status.text_params())
    converted = status.state is not DownloadState.DONE or status.saved_bytes > 0
    return texts(f"models.download_{status.state.value}" if converted
                 else "models.download_verified", **status.text_params())


def _widgets(service: ImageServiceLike, texts: Texts):
    choices = _all_models(service)
    with gr.Row(equal_height=True):
        choice = gr.Dropdown(choices=choices(texts.language), value=service.active_model,
                             label=texts("models.choose"), scale=3, elem_id="models-choice")
        texts.bind(choice, label="models.choose", choices=choices)
        activate = texts.make(gr.Button, text="models.activate", variant="primary", scale=1,
                              elem_id="models-activate")
        refresh = texts.make(gr.Button, text="models.refresh", scale=1, elem_id="models-refresh")
    with gr.Row(equal_height=True):
        download = texts.make(gr.Button, text="models.download", variant="primary",
                              elem_id="models-download")
        cancel = texts.make(gr.Button, text="models.cancel", elem_id="models-cancel")
        verify = texts.make(gr.Button, text="models.verify", elem_id="models-verify")
        confirm_delete = texts.make(gr.Checkbox, label="models.confirm_delete", value=False,
                                    elem_id="models-confirm-delete")
        delete = texts.make(gr.Button, text="models.delete", variant="stop",
                            elem_id="models-delete")
    with gr.Row(equal_height=True):
        folder = texts.make(gr.Textbox, label="models.import_folder",
                            placeholder="models.import_folder_hint", scale=4,
                            elem_id="models-import-folder")
        import_button = texts.make(gr.Button, text="models.import", scale=1,
                                   elem_id="models-import")
    status = gr.Markdown("", elem_id="models-download-status")
    return (choice, activate, refresh, download, cancel, verify, confirm_delete, delete, status,
            folder, import_button)


def build_models_tab(service: ImageServiceLike, texts: Texts, model_picker: Any,
                     picker_choices: Callable[[str], list],
                     current_source: Callable[[], DownloadSource], access: Access) -> ModelsTab:
    texts.make(gr.Markdown, text="models.intro")

    def rows() -> list[list[str]]:
        return status_rows(service.model_statuses(), texts.language)

    def own_rows() -> list[list[str]]:
        return local_rows(service.local_model_statuses(), texts.language)

    # A callable value is read again on every page load, so states are never stale.
    table = gr.Dataframe(value=rows, headers=_headers(texts.language), interactive=False,
                         wrap=True, elem_id="models-table")
    texts.bind(table, headers=_headers)
    (choice, activate, refresh, download, cancel, verify, confirm_delete, delete, status,
     folder, import_button) = _widgets(service, texts)
    timer = gr.Timer(POLL_SECONDS, active=False)
    texts.make(gr.Markdown, text="models.local_intro")
    # The state column holds whole sentences (why a file cannot load): it gets the room.
    local_table = gr.Dataframe(value=own_rows, headers=_local_headers(texts.language),
                               interactive=False, wrap=True, elem_id="models-local-table",
                               column_widths=["20%", "12%", "44%", "9%", "15%"])
    texts.bind(local_table, headers=_local_headers)
    tab = ModelsTab(table, refresh, choice, activate, download, cancel, verify, delete,
                    confirm_delete, status, timer, folder, import_button, local_table)
    _wire(service, texts, tab, model_picker, rows)
    _wire_admin_only(service, texts, tab, rows, current_source, access)

    def rescan(current: str):
        """Files dropped into the models folder appear in the tables and the model picker."""
        picker = gr.Dropdown(choices=picker_choices(texts.language), value=current)
        return {table: rows(), local_table: own_rows(), model_picker: picker}

    refresh.click(rescan, inputs=model_picker, outputs=[table, local_table, model_picker],
                  queue=False, api_name="refresh_models")
    return tab


def _wire(service: ImageServiceLike, texts: Texts, tab: ModelsTab, model_picker: Any,
          rows: Callable[[], list]) -> None:
    """What everyone may do: watch progress, pick a model, switch to it."""
    def poll(model_id: str):
        statuses = service.model_statuses()  # once per tick: it walks every model's folder
        busy = any(s.state is ModelState.DOWNLOADING for s in statuses)
        return {tab.table: status_rows(statuses, texts.language),
                tab.status: download_text(service, texts, model_id),
                tab.timer: gr.Timer(active=busy)}

    tab.timer.tick(poll, inputs=tab.choice, outputs=[tab.table, tab.status, tab.timer],
                   queue=False)
    tab.choice.change(lambda model_id: download_text(service, texts, model_id),
                      inputs=tab.choice, outputs=tab.status, queue=False)
    # Switching goes through the header's picker, so both always show the same model.
    tab.activate.click(_base_only(service, texts), inputs=tab.choice, outputs=model_picker)
    model_picker.change(rows, outputs=tab.table, queue=False)


def _wire_admin_only(service: ImageServiceLike, texts: Texts, tab: ModelsTab,
                     rows: Callable[[], list], current_source: Callable[[], DownloadSource],
                     access: Access) -> None:
    """Download, cancel, verify, delete, import: each handler checks the caller itself, since
    a client can call its API name whatever the page shows."""
    def admin_first(request: gr.Request | None) -> None:
        if not access.is_admin(request):
            raise texts.failure(texts.error("admin_only"))

    def started(model_id: str) -> dict[Any, Any]:
        """The table and status of a download or import begun, and the timer that follows it."""
        return {tab.table: rows(), tab.status: download_text(service, texts, model_id),
                tab.timer: gr.Timer(active=True)}

    def start(model_id: str, request: gr.Request):
        admin_first(request)
        try:
            service.download(model_id, current_source())
        except EngineError as error:
            raise texts.engine_failure(error) from None
        return started(model_id)

    def take_folder(model_id: str, folder: str, request: gr.Request):
        admin_first(request)
        if not (folder or "").strip():
            raise texts.failure(texts("models.import_folder_missing"))
        service.import_folder(model_id, Path(folder.strip()))
        return started(model_id)

    def stop(model_id: str, request: gr.Request) -> None:
        admin_first(request)
        service.cancel_download(model_id)

    def check(model_id: str, request: gr.Request):
        admin_first(request)
        try:
            verified = service.verify(model_id)
        except EngineError as error:
            raise texts.engine_failure(error) from None
        key = "models.verify_ok" if verified else "models.verify_failed"
        statuses = service.model_statuses()
        if verified and any(s.size_only for s in statuses if s.entry.id == model_id):
            key = "models.verify_size_only"  # the sizes matched: nothing more could be checked
        gr.Info(texts(key, name=model_id))
        return rows()

    def remove(model_id: str, confirmed: bool, request: gr.Request):
        admin_first(request)
        if not confirmed:
            raise texts.failure(texts("models.confirm_first"))
        service.delete(model_id)
        return {tab.table: rows(), tab.confirm_delete: False}

    outputs = [tab.table, tab.status, tab.timer]
    tab.download.click(start, inputs=tab.choice, outputs=outputs, api_name="download_model")
    tab.import_button.click(take_folder, inputs=[tab.choice, tab.folder], outputs=outputs,
                            api_name="import_folder")
    tab.cancel.click(stop, inputs=tab.choice, api_name="cancel_download")
    tab.verify.click(check, inputs=tab.choice, outputs=tab.table, api_name="verify_model")
    tab.delete.click(remove, inputs=[tab.choice, tab.confirm_delete],
                     outputs=[tab.table, tab.confirm_delete], api_name="delete_model")


def _base_only(service: ImageServiceLike, texts: Texts) -> Callable[[str], str]:
    bases = {entry.id for entry in service.entries(ModelKind.BASE)}

    def pick(model_id: str) -> str:
        if model_id not in bases:
            raise texts.failure(texts("models.not_a_base"))
        return model_id

    return pick
