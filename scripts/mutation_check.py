"""Plant known bugs one at a time and check that the tests meant to catch each one fail.

Every entry in ``MUTATIONS`` is one small bug (replace ``old`` by ``new`` in ``path``) and the
tests that claim to guard against it. The script copies the working tree to a temporary folder
once, first runs every listed test unmutated (they must pass, or a failure would prove
nothing), then plants each bug in the copy, runs its tests and puts the file back. A bug is
"caught" when its tests fail; "missed" when they pass; "stale" when ``old`` no longer occurs
exactly once (the code moved on: update the entry). The exit status is 0 only when every bug
was caught. It is too slow for every CI run; run it before calling an engine issue resolved:

    .venv/bin/python scripts/mutation_check.py             # every mutation
    .venv/bin/python scripts/mutation_check.py --list      # what it plants
    .venv/bin/python scripts/mutation_check.py --only seed # names containing "seed" (repeatable)
"""

from __future__ import annotations

import argparse
import logging
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from mutations import MUTATIONS, Mutation

logger = logging.getLogger("mutation_check")
REPO = Path(__file__).resolve().parent.parent
TEST_TIMEOUT_S = 900


def copy_tree(target: Path) -> None:
    """Tracked files and untracked ones git does not ignore: the change under test, no caches."""
    listed = (
        subprocess.run(
            ["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
            cwd=REPO,
            check=True,
            capture_output=True,
        )
        .stdout.decode()
        .split("\0")
    )
    for name in filter(None, listed):
        source = REPO / name
        if source.is_file():
            (target / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target / name)


def run_tests(tree: Path, tests: tuple[str, ...], show_failures: bool = False) -> int:
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    try:
        completed = subprocess.run(
            command, cwd=tree, capture_output=True, text=True, timeout=TEST_TIMEOUT_S
        )
    except subprocess.TimeoutExpired:
        return -1
    if show_failures and completed.returncode != 0:
        logger.error("%s", completed.stdout[-4000:])
    return completed.returncode


def check(tree: Path, mutation: Mutation) -> str:
    file = tree / mutation.path
    original = file.read_text(encoding="utf-8")
    if original.count(mutation.old) != 1:
        return "stale"
    file.write_text(original.replace(mutation.old, mutation.new), encoding="utf-8")
    try:
        status = run_tests(tree, mutation.tests)
    finally:
        file.write_text(original, encoding="utf-8")
    # pytest: 1 = tests failed; 0 = all passed; anything else = could not run them.
    return {0: "missed", 1: "caught"}.get(status, f"error (pytest exit {status})")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--only", action="append", default=[],
                        help="run the mutations whose name contains this (may repeat)")
    parser.add_argument("--list", action="store_true", help="list the mutations and stop")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    chosen = [m for m in MUTATIONS if not args.only or any(o in m.name for o in args.only)]
    if args.list:
        for mutation in chosen:
            logger.info("%-64s %s", mutation.name, mutation.path)
        return 0
    with tempfile.TemporaryDirectory(prefix="huajing-mutants-") as folder:
        tree = Path(folder)
        copy_tree(tree)
        every_test = tuple(dict.fromkeys(t for m in chosen for t in m.tests))
        if run_tests(tree, every_test, show_failures=True) != 0:
            logger.error("the listed tests fail without any mutation: fix them first")
            return 2
        results = []
        for mutation in chosen:
            started = time.monotonic()
            outcome = check(tree, mutation)
            results.append(outcome)
            logger.info("%-7s %-64s %5.0f s", outcome, mutation.name, time.monotonic() - started)
    caught = results.count("caught")
    logger.info("%d of %d planted bugs caught", caught, len(results))
    return 0 if caught == len(results) else 1


if __name__ == "__main__":
    sys.exit(main())
