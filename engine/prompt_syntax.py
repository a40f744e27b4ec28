"""Parser for the AUTOMATIC1111 prompt syntax: (emphasis), [de-emphasis], (text:1.3), BREAK and
<lora:...> tags.

Pure standard library, so the UI and the validator can use it without importing torch.
Every string parses: malformed syntax degrades to literal text, never to an exception.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Collection
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True)
class PromptFragment:
    text: str
    weight: float


@dataclass(frozen=True)
class LoraReference:
    name: str
    weight: float


BREAK_TEXT = "BREAK"


def _is_break(fragment: PromptFragment) -> bool:
    return fragment.text == BREAK_TEXT and fragment.weight == -1.0


@dataclass(frozen=True)
class ParsedPrompt:
    fragments: tuple[PromptFragment, ...]
    loras: tuple[LoraReference, ...]

    @property
    def plain_text(self) -> str:
        return "".join(f.text for f in self.fragments if not _is_break(f))


# `\d+(?:\.\d*)?` rather than `\d*\.?\d*`: the nested optional digits backtrack quadratically
# on long digit runs.
_NUMBER = r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)"

# The one definition of a `<lora:name:weight>` tag: what the engine reads, what the UI replaces.
# The name excludes `<` so a failed match never scans past the next tag: keeps the search linear.
LORA_TAG = re.compile(rf"<(?:lora|lyco):([^:<>]+)(?::\s*({_NUMBER})\s*)?>")

_TOKEN = re.compile(
    r"\\[()\[\]\\]"  # escaped bracket or backslash
    r"|[(\[]"
    rf"|:\s*({_NUMBER})\s*\)"  # explicit weight; only closes a bracket if a `(` is open
    r"|[)\]]"
    r"|[^\\()\[\]:]+"
    r"|[\\:]"  # a lone backslash or colon is just text
)

# Lookarounds instead of A1111's `\s*\bBREAK\b\s*`, whose leading `\s*` is quadratic on long runs
# of spaces.
_BREAK = re.compile(r"(?<!\S)BREAK(?!\S)")

_OPENER = {")": "(", "]": "["}
_DEFAULT_FACTOR = {"(": 1.1, "[": 1 / 1.1}


def _reference(match: re.Match[str]) -> LoraReference | None:
    """The tag a ``LORA_TAG`` match names; None when its name is only spaces (then it is text)."""
    name = match.group(1).strip()
    if not name:
        return None
    weight = match.group(2)
    return LoraReference(name, float(weight) if weight is not None else 1.0)


def replace_lora_tags(text: str, replace: Callable[[LoraReference], str | None]) -> str:
    """``text`` with each ``<lora:...>`` tag replaced by ``replace(tag)`` (None: kept as is)."""
    def one(match: re.Match[str]) -> str:
        tag = _reference(match)
        found = replace(tag) if tag is not None else None
        return match.group(0) if found is None else found

    return LORA_TAG.sub(one, text)


def remove_lora_tags(text: str, names: Collection[str]) -> str:
    """``text`` without the tags that name one of ``names``, each with the spaces before it."""
    pieces: list[str] = []
    kept_from = 0
    for match in LORA_TAG.finditer(text):
        tag = _reference(match)
        if tag is not None and tag.name in names:
            pieces.append(text[kept_from:match.start()].rstrip())
            kept_from = match.end()
    pieces.append(text[kept_from:])
    return "".join(pieces)


def _extract_loras(text: str) -> tuple[str, list[LoraReference]]:
    loras: list[LoraReference] = []

    def take(tag: LoraReference) -> str:
        loras.append(tag)
        return ""

    return replace_lora_tags(text, take), loras


def split_lora_tags(text: str) -> tuple[str, tuple[LoraReference, ...]]:
    """The text without its ``<lora:...>`` tags, and the tags in order.

    Removing a tag can join its neighbours into a new one (``<lora:<lora:a>b>``), so this
    repeats until none is left: the text it returns has no tags. One pass per nesting level:
    callers bound the text's length first.
    """
    found: list[LoraReference] = []
    while True:
        text, loras = _extract_loras(text)
        if not loras:
            return text, tuple(found)
        found += loras


# One token of _tokenize: [kind, value], a list because a closer sets its opener's factor later.
_Token = list[Any]


def _tokenize(text: str) -> list[_Token]:
    """Pair brackets first, so each opener knows its factor before any text inside it is weighed.

    Items are ["(" or "[", factor], [")" or "]", None] for matched closers, and ["", text].
    """
    items: list[_Token] = []
    open_at: dict[str, list[int]] = {"(": [], "[": []}
    for match in _TOKEN.finditer(text):
        token, number = match.group(0), match.group(1)
        if token in _DEFAULT_FACTOR:
            open_at[token].append(len(items))
            items.append([token, _DEFAULT_FACTOR[token]])
        elif number is not None and open_at["("]:
            items[open_at["("].pop()][1] = float(number)
            items.append([")", None])
        elif token in _OPENER and open_at[_OPENER[token]]:
            open_at[_OPENER[token]].pop()
            items.append([token, None])
        elif len(token) == 2 and token[0] == "\\":
            items.append(["", token[1]])
        else:
            items.append(["", token])
    # Unclosed openers keep their default factor and so weigh the rest of the prompt, as in A1111.
    return items


def _split_breaks(text: str, weight: float) -> list[PromptFragment]:
    parts = _BREAK.split(text)
    pieces = [PromptFragment(parts[0].rstrip() if len(parts) > 1 else parts[0], weight)]
    for i, part in enumerate(parts[1:], start=2):
        part = part.lstrip() if i == len(parts) else part.strip()
        # The marker's weight is fixed at -1 even inside brackets: it is a flag, not an emphasis.
        pieces += [PromptFragment(BREAK_TEXT, -1.0), PromptFragment(part, weight)]
    return pieces


def _weigh(items: list[_Token]) -> list[PromptFragment]:
    # Running products per bracket kind: ( and [ pairs may interleave, but each kind nests on its
    # own.
    products = {"(": [1.0], "[": [1.0]}
    pieces: list[PromptFragment] = []
    for kind, value in items:
        if kind in products:
            products[kind].append(products[kind][-1] * value)
        elif kind:
            products[_OPENER[kind]].pop()
        else:
            pieces += _split_breaks(value, products["("][-1] * products["["][-1])
    return pieces


def _merge(pieces: list[PromptFragment]) -> tuple[PromptFragment, ...]:
    # Texts are gathered in lists and joined once: repeated string concatenation would be quadratic.
    runs: list[tuple[float, bool, list[str]]] = []
    for piece in pieces:
        if not piece.text:
            continue
        marker = _is_break(piece)
        if runs and not marker and not runs[-1][1] and runs[-1][0] == piece.weight:
            runs[-1][2].append(piece.text)
        else:
            runs.append((piece.weight, marker, [piece.text]))
    return tuple(PromptFragment("".join(texts), weight) for weight, _, texts in runs)


def parse_prompt(text: str) -> ParsedPrompt:
    # LoRA tags go first, as in A1111's extra-networks pass, so brackets in a LoRA name are not
    # syntax.
    remaining, loras = _extract_loras(text)
    return ParsedPrompt(_merge(_weigh(_tokenize(remaining))), tuple(loras))
