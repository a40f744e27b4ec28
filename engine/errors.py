"""Errors with stable codes.

The UI, the HTTP API and the command line turn ``code`` and ``params`` into translated text
(``locales/<lang>.yaml``, key ``errors.<code>``); the user never sees a traceback or a path.
"""

from __future__ import annotations

from typing import Any


# The codes a download fixes: the model is not on disk, or its download was cut off.
NOT_ON_DISK = ("model_not_downloaded", "model_incomplete")


class EngineError(Exception):
    """A failure the user can act on. ``code`` is stable; ``params`` fill the message."""

    def __init__(self, code: str, **params: Any) -> None:
        self.code = code
        self.params = params
        super().__init__(f"{code}: {params}" if params else code)


class InvalidRequest(EngineError):
    """The request breaks a limit or names something that does not exist."""


class ModelError(EngineError):
    """A model, LoRA or ControlNet cannot be found, loaded or used with this base."""


class JobCancelled(EngineError):
    def __init__(self) -> None:
        super().__init__("cancelled")


class SkipImage(EngineError):
    """Raised from a progress callback: drop the current batch and go on with the next."""

    def __init__(self) -> None:
        super().__init__("skipped")


class ResourceError(EngineError):
    """Out of memory or a similar fault; the engine stays usable."""
