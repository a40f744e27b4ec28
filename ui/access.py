"""Who may change what the server does: the output folder, the download source, the memory
mode, and the models on disk. Every handler that does so asks ``Access.is_admin`` with the
event's ``gr.Request``, so a client that calls the handler's API name directly is refused too;
hiding the widgets on page load is only for the eye.
"""

from __future__ import annotations

import logging
import secrets
import threading
from dataclasses import dataclass, field
from typing import Any

import gradio as gr

logger = logging.getLogger(__name__)


@dataclass
class Access:
    admins: frozenset[str] = frozenset()  # Gradio login names
    local_admin: bool = True  # loopback, no accounts, not a Space: the one local user
    admin_password: str | None = field(default=None, repr=False)
    # A Space (or any install shared without accounts): language and sampler stay per browser.
    personal_preferences: bool = False
    # Back-off after wrong admin passwords (``api.guard.LoginThrottle``, given by app.py), per
    # address: a guesser waits, and cannot make the real admin wait from elsewhere.
    throttle: Any = field(default=None, repr=False)
    _unlocked: set[str] = field(default_factory=set, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @classmethod
    def from_settings(cls, settings: Any, throttle: Any = None) -> Access:
        """From ``app_settings.AppSettings``."""
        return cls(throttle=throttle, admins=frozenset(settings.admins),
                   local_admin=settings.single_user,
                   admin_password=settings.admin_password,
                   personal_preferences=settings.on_space)

    @property
    def can_unlock(self) -> bool:
        return bool(self.admin_password)

    def is_admin(self, request: gr.Request | None) -> bool:
        if self.local_admin:
            return True
        if request is None:
            return False
        username = getattr(request, "username", None)
        if username and username in self.admins:
            return True
        session = getattr(request, "session_hash", None)
        with self._lock:
            return bool(session) and session in self._unlocked

    def unlock_wait(self, request: gr.Request | None) -> float:
        """Seconds before another admin password may be tried from here; 0 when it may."""
        return self.throttle.retry_after(_throttle_keys(request)) if self.throttle else 0.0

    def unlock(self, request: gr.Request | None, password: str) -> bool:
        """Admin for this browser session if ``password`` is the admin password."""
        session = getattr(request, "session_hash", None)
        if not self.admin_password or not session:
            return False
        given = (password or "").encode("utf-8")
        if not secrets.compare_digest(given, self.admin_password.encode("utf-8")):
            logger.warning("a wrong admin password was entered")  # never the password itself
            if self.throttle:
                self.throttle.failed(_throttle_keys(request))
            return False
        if self.throttle:
            self.throttle.succeeded(_throttle_keys(request))
        with self._lock:
            self._unlocked.add(session)
        logger.info("a browser session unlocked admin settings")
        return True

    def personal(self, request: gr.Request | None) -> bool:
        """Whether this visitor's language and sampler stay in their own browser only."""
        return self.personal_preferences or not self.is_admin(request)


def _throttle_keys(request: gr.Request | None) -> tuple[str]:
    client = getattr(request, "client", None)
    return (f"addr:{getattr(client, 'host', None) or 'unknown'}",)
