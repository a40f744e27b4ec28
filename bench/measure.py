"""Timing that can be compared: sides run interleaved (A, B, A, B...) after a warm-up of each,
so a slow spell of a shared machine falls on both; each side's figure is the median."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass


@dataclass(frozen=True)
class Timings:
    """Seconds per run of each side, in the order measured."""

    by_side: dict[str, list[float]]

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
        return (f"median {self.median(numerator) * 1000:.0f} vs "
                f"{self.median(denominator) * 1000:.0f} ms; median of {len(ratios)} paired "
                f"ratios, range {min(ratios):.2f}-{max(ratios):.2f}")


def seconds(action: Callable[[], object]) -> float:
    started = time.perf_counter()
    action()
    return time.perf_counter() - started


def interleaved(sides: dict[str, Callable[[], object]], repeats: int,
                warmups: int = 1) -> Timings:
    """Run every side ``warmups`` times untimed, then ``repeats`` rounds of one timed run of
    each side; the side that goes first alternates, so neither always follows the other."""
    names: Sequence[str] = list(sides)
    for _ in range(warmups):
        for name in names:
            sides[name]()
    timings: dict[str, list[float]] = {name: [] for name in names}
    for round_index in range(repeats):
        order = names if round_index % 2 == 0 else list(reversed(names))
        for name in order:
            timings[name].append(seconds(sides[name]))
    return Timings(timings)
