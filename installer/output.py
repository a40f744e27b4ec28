"""The launcher's one way to talk to the user: plain lines on the terminal. It is the
launcher's user interface, so it writes to the console rather than to a log; library code
elsewhere in ``installer`` logs, and hands its user-facing texts here."""

from __future__ import annotations

import sys


def say(text: str, *, error: bool = False) -> None:
    """Steps and results go to stdout; problems to stderr, so a redirected run still shows
    them. Flushed at once: pip's own output is interleaved with ours."""
    stream = sys.stderr if error else sys.stdout
    stream.write(text + "\n")
    stream.flush()
