"""Every visible string of the UI comes from ``locales/`` through this registry.

Components are created with their text in the current language and remembered with the key
they show, so switching language in 设置 can send each one its new text without a restart.

Why not Gradio's own ``gr.I18n`` (keep it this way; it is not an oversight):

- One text source for the UI, the HTTP API and the command line: ``locales/<lang>.yaml``.
  ``gr.I18n`` holds texts for the UI alone, so the API and the CLI would need a second copy.
- The language is chosen in 设置 and saved with the other settings (an admin's choice for
  everyone, or a visitor's own in their browser state), not taken from the browser's
  ``Accept-Language`` as ``gr.I18n`` does.
- Errors are translated from their stable codes in one place (``error_text``), with their
  parameters filled in; ``gr.I18n`` translates fixed component texts, not error messages.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import gradio as gr

from locales import DEFAULT_LANGUAGE, LANGUAGES, error_text, translate, warning_text


@dataclass(frozen=True)
class _Binding:
    component: Any
    attribute: str  # "label", "value", "info", "placeholder" or "choices"
    key: str | Callable[[str], Any]  # a locale key, or a function of the language


class Texts:
    def __init__(self, language: str = DEFAULT_LANGUAGE) -> None:
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        self._bindings: list[_Binding] = []
        self.used_keys: set[str] = set()

    def __call__(self, key: str, **params: Any) -> str:
        self.used_keys.add(key)
        return translate(self.language, key, **params)

    def error(self, code: str, params: dict | None = None) -> str:
        self.used_keys.add(f"errors.{code}")
        return error_text(self.language, code, params)

    def failure(self, message: str) -> gr.Error:
        """An error toast with a translated heading; a user's mistake is no server trace."""
        return gr.Error(message, title=self("common.error_title"), print_exception=False)

    def engine_failure(self, error: Any) -> gr.Error:
        return self.failure(self.error(error.code, error.params))

    def warning(self, code: str, params: dict | None = None) -> str:
        return warning_text(self.language, code, params)

    def bind(self, component: Any, **keys: str | Callable[[str], Any]) -> Any:
        """Remember which key each text attribute of ``component`` shows; returns it."""
        for attribute, key in keys.items():
            if isinstance(key, str):
                self.used_keys.add(key)
            self._bindings.append(_Binding(component, attribute, key))
        return component

    def make(self, factory: Callable[..., Any], *, label: str | None = None,
             info: str | None = None, placeholder: str | None = None, text: str | None = None,
             **kwargs: Any) -> Any:
        """Create a component with its texts in the current language, and bind them.

        ``text`` is the key of a button's or a Markdown's value; ``value`` and other keyword
        arguments go to the component untouched.
        """
        keys = {name: key for name, key in (("label", label), ("info", info),
                                            ("placeholder", placeholder), ("value", text))
                if key is not None}
        texts = {name: self(key) for name, key in keys.items()}
        return self.bind(factory(**texts, **kwargs), **keys)

    @property
    def components(self) -> list[Any]:
        seen: dict[int, Any] = {}
        for binding in self._bindings:
            seen.setdefault(id(binding.component), binding.component)
        return list(seen.values())

    def updates(self, language: str) -> dict[Any, Any]:
        """An update per bound component, with its texts in ``language``,
        which becomes the language of every message from now on."""
        self.language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        return self.updates_in(self.language)

    def updates_in(self, language: str) -> dict[Any, Any]:
        """As ``updates``, for one page only: the app's own language stays as it is."""
        language = language if language in LANGUAGES else DEFAULT_LANGUAGE
        changes: dict[int, dict[str, Any]] = {}
        for binding in self._bindings:
            key = binding.key
            text = key(language) if callable(key) else translate(language, key)
            changes.setdefault(id(binding.component), {})[binding.attribute] = text
        return {component: gr.update(**changes[id(component)]) for component in self.components}
