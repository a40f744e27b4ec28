"""模型管理: every manifest model with its state and size, and which one is active."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.catalog import ModelStatus
from engine.manifest import ModelKind
from ui.service import ImageServiceLike
from ui.texts import Texts


@dataclass(frozen=True)
class ModelsTab:
    table: Any
    refresh: Any
    choice: Any
    activate: Any


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
        rows.append([
            (entry.name.zh if language == "zh-CN" else entry.name.en),
            translate(language, f"models.kind_{entry.kind.value}"),
            translate(language, f"models.state_{status.state.value}"),
            _size_text(status.size_bytes),
            "✔" if status.active else "",
            entry.id,
        ])
    return rows


def _headers(language: str) -> list[str]:
    from locales import translate

    return [translate(language, f"models.column_{name}")
            for name in ("name", "kind", "state", "size", "active", "id")]


def build_models_tab(service: ImageServiceLike, texts: Texts, model_picker: Any) -> ModelsTab:
    texts.make(gr.Markdown, text="models.intro")

    def rows() -> list[list[str]]:
        return status_rows(service.model_statuses(), texts.language)

    # A callable value is read again on every page load, so states are never stale.
    table = gr.Dataframe(value=rows, headers=_headers(texts.language), interactive=False,
                         wrap=True, elem_id="models-table")
    texts.bind(table, headers=_headers)
    with gr.Row(equal_height=True):
        bases = [(e.name.zh if texts.language == "zh-CN" else e.name.en, e.id)
                 for e in service.entries(ModelKind.BASE)]
        choice = texts.make(gr.Dropdown, label="models.choose", choices=bases,
                            value=service.active_model, scale=3)
        activate = texts.make(gr.Button, text="models.activate", variant="primary", scale=1,
                              elem_id="models-activate")
        refresh = texts.make(gr.Button, text="models.refresh", scale=1, elem_id="models-refresh")

    refresh.click(rows, outputs=table, queue=False)
    # Switching goes through the header's picker, so both always show the same model.
    activate.click(lambda model_id: model_id, inputs=choice, outputs=model_picker, queue=False)
    model_picker.change(rows, outputs=table, queue=False)
    return ModelsTab(table, refresh, choice, activate)
