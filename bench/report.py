"""The suite's results: figures with their goals, as JSON (``results.json``) and as a table
(``results.md`` beside it, and on the terminal)."""

from __future__ import annotations

import datetime
import json
import os
import platform
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from bench.plan import Plan


@dataclass(frozen=True)
class Figure:
    """One measured figure; ``goal_at_most`` is None where the issue sets no goal, ``value`` is
    None where it was not measured (``reason`` says why)."""

    name: str
    value: float | None
    unit: str
    goal_at_most: float | None = None
    note: str = ""
    reason: str = ""

    @property
    def measured(self) -> bool:
        return self.value is not None

    @property
    def met(self) -> bool | None:
        if self.value is None or self.goal_at_most is None:
            return None
        return self.value <= self.goal_at_most


def not_measured(name: str, unit: str, reason: str, goal_at_most: float | None = None) -> Figure:
    return Figure(name, None, unit, goal_at_most, reason=reason)


def machine_info() -> dict[str, Any]:
    import diffusers
    import torch

    return {"cpu_count": os.cpu_count(), "platform": platform.platform(),
            "python": platform.python_version(), "torch": torch.__version__,
            "diffusers": diffusers.__version__, "device": "cpu", "precision": "fp32",
            "date": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}


def results_document(figures: list[Figure], plan: Plan, machine: dict[str, Any]) -> dict:
    return {"machine": machine, "plan": {**asdict(plan), "quick": plan.quick},
            "figures": {figure.name: {**asdict(figure), "measured": figure.measured,
                                      "met": figure.met} for figure in figures}}


def _value_text(figure: Figure) -> str:
    if figure.value is None:
        return "not measured"
    if figure.unit == "ratio":
        return f"{figure.value:.3f}"
    if figure.unit == "bytes":
        return f"{figure.value:,.0f} B"
    return f"{figure.value:.3g} {figure.unit}"


def _goal_text(figure: Figure) -> str:
    if figure.goal_at_most is None:
        return "-"
    unit = "" if figure.unit == "ratio" else f" {figure.unit}"
    return f"<= {figure.goal_at_most:g}{unit}"


def _met_text(figure: Figure) -> str:
    return {True: "yes", False: "NO", None: "-"}[figure.met]


def table(figures: list[Figure]) -> str:
    """A Markdown table: figure, value, goal, met?, and what the figure is (or why not)."""
    rows = ["| figure | value | goal | met? | notes |", "|---|---|---|---|---|"]
    for figure in figures:
        note = figure.reason or figure.note
        rows.append(f"| `{figure.name}` | {_value_text(figure)} | {_goal_text(figure)} | "
                    f"{_met_text(figure)} | {note} |")
    return "\n".join(rows)


def write_results(out: Path, figures: list[Figure], plan: Plan) -> Path:
    """``out`` (JSON) and the table beside it (same name, ``.md``); returns the table's path."""
    out.parent.mkdir(parents=True, exist_ok=True)
    document = results_document(figures, plan, machine_info())
    out.write_text(json.dumps(document, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    table_path = out.with_suffix(".md")
    header = (f"Measured {document['machine']['date']} on {document['machine']['cpu_count']} "
              f"CPUs, torch {document['machine']['torch']}, diffusers "
              f"{document['machine']['diffusers']}, plan {document['plan']}.\n\n")
    table_path.write_text(header + table(figures) + "\n", encoding="utf-8")
    return table_path
