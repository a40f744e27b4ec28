"""``python -m bench``: the CPU benchmark suite on the tiny demo models, in a scratch folder.
Writes ``bench/results.json`` (figures, goals, met or not, the machine) and ``results.md``
beside it, and prints the table. Timing goals live here, never in tests.

    python -m bench [--quick] [--only NAME] [--out PATH]
"""

from __future__ import annotations

import argparse
import logging
import sys
from pathlib import Path

from bench.plan import FULL, QUICK
from bench.report import table, write_results
from bench.suite import run_suite

DEFAULT_OUT = Path(__file__).resolve().parent / "results.json"


def parse_arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true",
                        help="fewest repeats and steps: checks the suite runs, numbers are rough")
    parser.add_argument("--only", metavar="NAME",
                        help="one benchmark, by its name or one of its figures' names")
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT,
                        help=f"where the JSON goes (default {DEFAULT_OUT})")
    return parser.parse_args(argv)


def show(text: str) -> None:
    """The suite's one output to the terminal: the table is what it is run for."""
    sys.stdout.write(text + "\n")


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    # The suite's own progress; the engine's per-job lines would bury it.
    logging.basicConfig(level=logging.WARNING, format="%(name)s: %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    from bench.context import offline_environment

    offline_environment()
    from engine.logging_setup import quiet_libraries

    quiet_libraries()
    figures = run_suite(QUICK if arguments.quick else FULL, arguments.only)
    table_path = write_results(arguments.out, figures, QUICK if arguments.quick else FULL)
    show(table(figures))
    show(f"\nwritten: {arguments.out} and {table_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
