"""The GPU benchmark's printed table and its goal checks (from the issue: at 512x512, batch 1,
the fastest path at least 1.5x bare eager diffusers and within 4x of the compute floor, and
ControlNet at least 0.65x of plain). Only paths that make the bare path's pictures count: one
that changes them on purpose (the step cache) does other work than the floor counts."""

from __future__ import annotations

from dataclasses import dataclass
from functools import partial

from bench.gpu_matrix import BARE_PATH, CONTROLNET, MEASURED, PLAIN, Row, is_exact

GOAL_SIDE, GOAL_BATCH = 512, 1
MIN_SPEEDUP = 1.5
MAX_TIMES_FLOOR = 4.0
MIN_CONTROLNET_SHARE = 0.65

MET, NOT_MET, NOT_MEASURED = "met", "not met", "not measured"


@dataclass(frozen=True)
class Goal:
    side: int
    batch: int
    dtype: str
    name: str
    status: str
    detail: str

    def as_dict(self) -> dict[str, str | int]:
        return {"side": self.side, "batch": self.batch, "dtype": self.dtype,
                "goal": self.name, "status": self.status, "detail": self.detail}


def _fastest(rows: list[Row], dtype: str, kind: str, side: int, batch: int) -> Row | None:
    measured = [r for r in rows if r.status == MEASURED and r.dtype == dtype and r.kind == kind
                and r.side == side and r.batch == batch and r.steps_per_s
                and (r.optimization is None or is_exact(r.optimization))]
    return max(measured, key=lambda r: r.steps_per_s or 0.0, default=None)


def _bare(rows: list[Row], dtype: str, kind: str, side: int, batch: int) -> Row | None:
    return next((r for r in rows if r.status == MEASURED and r.path == BARE_PATH
                 and r.dtype == dtype and r.kind == kind and r.side == side
                 and r.batch == batch), None)


def _verdict(ok: bool) -> str:
    return MET if ok else NOT_MET


def goal_checks(rows: list[Row], dtypes: tuple[str, ...], side: int = GOAL_SIDE,
                batch: int = GOAL_BATCH) -> list[Goal]:
    """The three goals for each precision, on guided steps per second."""
    goals = []
    for dtype in dtypes:
        make = partial(Goal, side, batch, dtype)
        fastest = _fastest(rows, dtype, PLAIN, side, batch)
        bare = _bare(rows, dtype, PLAIN, side, batch)
        control = _fastest(rows, dtype, CONTROLNET, side, batch)
        name = f">= {MIN_SPEEDUP}x bare eager diffusers"
        if fastest and bare and fastest.steps_per_s and bare.steps_per_s:
            ratio = fastest.steps_per_s / bare.steps_per_s
            goals.append(make(name, _verdict(ratio >= MIN_SPEEDUP),
                              f"fastest ({fastest.label}) {ratio:.2f}x"))
        else:
            goals.append(make(name, NOT_MEASURED, ""))
        name = f"within {MAX_TIMES_FLOOR:g}x of the compute floor"
        if fastest and fastest.steps_x_floor:
            goals.append(make(name, _verdict(fastest.steps_x_floor <= MAX_TIMES_FLOOR),
                              f"fastest ({fastest.label}) {fastest.steps_x_floor:.1f}x floor"))
        else:
            goals.append(make(name, NOT_MEASURED, ""))
        name = f"ControlNet >= {MIN_CONTROLNET_SHARE}x plain"
        if fastest and control and fastest.steps_per_s and control.steps_per_s:
            share = control.steps_per_s / fastest.steps_per_s
            goals.append(make(name, _verdict(share >= MIN_CONTROLNET_SHARE),
                              f"fastest ControlNet ({control.label}) {share:.2f}x"))
        else:
            goals.append(make(name, NOT_MEASURED, ""))
    return goals


def _number(value: float | None, digits: int) -> str:
    """``digits`` significant digits, never rounded down to a bare 0 (a CPU's floor is tiny)."""
    if value is None:
        return "-"
    if abs(value) >= 10**digits:
        return f"{value:.0f}"
    return f"{value:#.{digits}g}".rstrip(".")


def _match(row: Row) -> str:
    if row.images_match is None:
        # An optimization that changes the pictures on purpose: its difference, not judged.
        return "-" if row.max_pixel_diff is None else f"approximate ({row.max_pixel_diff})"
    return "same" if row.images_match else f"DIFFER ({row.max_pixel_diff})"


HEADER = ("job", "path", "steps/s", "floor", "x floor", "s/image", "floor", "x floor", "vs bare",
          "images")


def table_lines(rows: list[Row]) -> list[str]:
    """A fixed-width table: one line per row, the floor beside each figure."""
    lines = [list(HEADER)]
    for row in rows:
        job = f"{row.side}² b{row.batch} {row.dtype} {row.kind}"
        if row.status != MEASURED:
            lines.append([job, row.label, row.status, "", "", "", "", "", "", ""])
            continue
        lines.append([job, row.label, _number(row.steps_per_s, 3),
                      _number(row.floor_steps_per_s, 3), _number(row.steps_x_floor, 3),
                      _number(row.s_per_image, 3), _number(row.floor_s_per_image, 3),
                      _number(row.image_x_floor, 3), _number(row.speedup_vs_bare, 3),
                      _match(row)])
    widths = [max(len(line[i]) for line in lines if len(line) > i) for i in range(len(HEADER))]
    out = []
    for line in lines:
        if line[2] and not line[3] and line is not lines[0]:  # a status line spans the numbers
            out.append(f"{line[0]:<{widths[0]}}  {line[1]:<{widths[1]}}  {line[2]}")
            continue
        out.append("  ".join(cell.ljust(widths[i]) for i, cell in enumerate(line)).rstrip())
    return out


def goal_lines(goals: list[Goal]) -> list[str]:
    return [f"[{g.status}] {g.dtype} {g.side}² b{g.batch}: {g.name}"
            + (f" - {g.detail}" if g.detail else "") for g in goals]
