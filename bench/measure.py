"""Timing that can be compared: sides run interleaved (A, B, A, B...) after a warm-up of each,
so a slow spell of a shared machine falls on both; each side's figure is the median."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Timings:
    """Wall-clock seconds per run of each side, in the order measured, and the CPU seconds
    this process (all its threads: torch's, the server's, the client's) spent in each run."""

    by_side: dict[str, list[float]]
    cpu_by_side: dict[str, list[float]]

    def median(self, side: str) -> float:
        return statistics.median(self.by_side[side])

    def ratio(self, numerator: str, denominator: str) -> float:
        """The median of each round's ratio: the two runs of a round ran back to back, so a
        slow spell of a shared machine mostly falls on both and cancels."""
        return statistics.median(self.ratios(numerator, denominator))

    def ratios(self, numerator: str, denominator: str) -> list[float]:
        pairs = zip(self.by_side[numerator], self.by_side[denominator], strict=True)
        return [top / bottom for top, bottom in pairs]

    def describe(self, numerator: str, denominator: str) -> str:
        """Each side's median and the spread of the per-round ratios, for a figure's note:
        how noisy the machine was shows here."""
        ratios = self.ratios(numerator, denominator)
        cpu_ratio = (statistics.median(self.cpu_by_side[numerator])
                     / statistics.median(self.cpu_by_side[denominator]))
        return (f"median {self.median(numerator) * 1000:.0f} vs "
                f"{self.median(denominator) * 1000:.0f} ms; median of {len(ratios)} paired "
                f"ratios, range {min(ratios):.2f}-{max(ratios):.2f}; CPU-time ratio "
                f"{cpu_ratio:.3f} (less sensitive to other processes, blind to waits)")


def seconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def wall_and_cpu_seconds(action: Callable[[], object]) -> tuple[float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    action()
    return time.perf_counter() - wall, time.process_time() - cpu


def interleaved(sides: dict[str, Callable[[], object]], repeats: int,
                warmups: int = 1) -> Timings:
    """Run every side ``warmups`` times untimed, then ``repeats`` rounds of one timed run of
    each side; the side that goes first alternates, so neither always follows the other."""
    names: Sequence[str] = list(sides)
    for _ in range(warmups):
        for name in names:
            sides[name]()
    wall: dict[str, list[float]] = {name: [] for name in names}
    cpu: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        order = names if round_index % 2 == 0 else list(reversed(names))
        for name in order:
            wall_s, cpu_s = wall_and_cpu_seconds(sides[name])
            wall[name].append(wall_s)
            cpu[name].append(cpu_s)
    return Timings(wall, cpu)
