"""Translated text for the UI, the HTTP API and the command line.

``locales/<lang>.yaml`` files share one key tree; errors live under ``errors.<code>`` and
warnings under ``warnings.<code>``, filled with the error's parameters.
"""

from __future__ import annotations

import logging
from functools import cache
from pathlib import Path

import yaml

logger = logging.getLogger(__name__)

LOCALES_DIR = Path(__file__).resolve().parent
DEFAULT_LANGUAGE = "zh-CN"
LANGUAGES = ("zh-CN", "en")


class _KeepMissing(dict):
    """Leave ``{name}`` in place when a parameter is missing rather than fail."""

    def __missing__(self, key: str) -> str:
        return "{" + key + "}"


def _flatten(tree: dict, prefix: str = "") -> dict[str, str]:
    flat: dict[str, str] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            flat.update(_flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = str(value)
    return flat


@cache
def messages(language: str) -> dict[str, str]:
    if language not in LANGUAGES:
        language = DEFAULT_LANGUAGE
    with (LOCALES_DIR / f"{language}.yaml").open(encoding="utf-8") as handle:
        return _flatten(yaml.safe_load(handle) or {})


def translate(language: str, key: str, **params: object) -> str:
    """The text for ``key``; falls back to English, then to the key itself."""
    text = messages(language).get(key) or messages("en").get(key)
    if text is None:
        logger.warning("no text for %s", key)
        return key
    return text.format_map(_KeepMissing({k: str(v) for k, v in params.items()}))


def _ranked_tags(accept_language: str) -> list[str]:
    """The header's language tags, most wanted first; ``q=0`` (or a malformed weight) means
    "not this one"."""
    ranked = []
    for position, part in enumerate(accept_language.split(",")):
        tag, *options = part.replace(" ", "").lower().split(";")
        quality = next((option[2:] for option in options if option.startswith("q=")), "1")
        try:
            weight = float(quality)
        except ValueError:
            weight = 0.0  # dropped, rather than failing the whole request
        if weight > 0:
            ranked.append((-weight, position, tag))
    return [tag for _weight, _position, tag in sorted(ranked)]


def language_of(accept_language: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """The language to answer an HTTP client in, from its ``Accept-Language`` header: the
    first of its choices that we have (``en-US`` is ``en``, any ``zh`` is ``zh-CN``), else
    ``default``. The one rule for every HTTP answer: the API's routes and the guard's."""
    ours = {"en": "en", "zh": "zh-CN", "*": default}
    for tag in _ranked_tags(accept_language or ""):
        if tag.split("-")[0] in ours:
            return ours[tag.split("-")[0]]
    return default


def error_text(language: str, code: str, params: dict | None = None) -> str:
    """The error's text; a ``field`` parameter naming a known field is shown by its label."""
    params = dict(params or {})
    field = params.get("field")
    if isinstance(field, str) and f"fields.{field}" in messages(language):
        params["field"] = messages(language)[f"fields.{field}"]
    return translate(language, f"errors.{code}", **params)


def warning_text(language: str, code: str, params: dict | None = None) -> str:
    return translate(language, f"warnings.{code}", **(params or {}))
