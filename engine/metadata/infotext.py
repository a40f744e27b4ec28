"""AUTOMATIC1111's "infotext": the generation parameters as text, written into every PNG.

The format is three parts::

    <prompt, possibly several lines>
    Negative prompt: <negative prompt, possibly several lines>
    Steps: 20, Sampler: DPM++ 2M, CFG scale: 7, Seed: 1234, Size: 512x768, Model: ...

Keeping A1111's format means images made here open in A1111's "PNG Info" tab, in Civitai and in
every other tool that reads it, and theirs open here. This module imports only the standard
library and PIL, so the UI can read images without torch.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Mapping
from typing import Any

from PIL import Image

from engine.samplers import SCHEDULE_LABELS, find_sampler, find_schedule, split_legacy_sampler_name

logger = logging.getLogger(__name__)

NEGATIVE_PREFIX = "Negative prompt:"
VERSION_PREFIX = "huajing-"

# A1111's own pattern (modules/infotext_utils.py), except that an empty quoted value is allowed.
# It is applied at one position at a time (see _split_fields), never with findall, so a long
# line without colons costs linear time, not quadratic.
_FIELD = re.compile(r'\s*(\w[\w \-/]+):\s*("(?:\\.|[^\\"])*"|[^,]*)(?:,|$)')
_KEY = re.compile(r"\w[\w \-/]+")
_SIZE = re.compile(r"([0-9]{1,9})x([0-9]{1,9})")
_LORA_ENTRY = re.compile(r"\s*(.+?):\s*([-+]?[0-9.]+(?:[eE][-+]?[0-9]+)?)\s*(?:,|$)")
# Every character str.splitlines() breaks on: other readers split lines that way.
_LINE_BREAKS = re.compile("[\n\r\v\f\x1c\x1d\x1e\x85\u2028\u2029]")
# A1111 starts to treat the last line as parameters from three fields on.
_MIN_FIELDS = 3

_EXIF_IFD = 0x8769
_USER_COMMENT = 0x9286


# -- writing ----------------------------------------------------------------------------------

def format_infotext(parameters: Mapping[str, Any]) -> str:
    """The infotext for one image's parameters dict (see ``metadata.parameters``)."""
    lines = []
    prompt = _prompt_text(parameters.get("prompt"))
    if prompt:
        lines.append(prompt)
    negative = _prompt_text(parameters.get("negative_prompt"))
    if negative:
        lines.append(f"{NEGATIVE_PREFIX} {negative}")
    lines.append(", ".join(f"{key}: {_quote(value)}" for key, value in _fields(parameters)))
    return "\n".join(lines)


def _prompt_text(value: Any) -> str:
    # Prompts may span lines (A1111 allows it), but only with "\n", which every reader splits on.
    return "\n".join(str(value or "").splitlines()).strip()


def _fields(parameters: Mapping[str, Any]) -> list[tuple[str, str]]:
    """(key, value) pairs in A1111's order; missing parameters are left out."""
    fields: list[tuple[str, str]] = []

    def add(key: str, value: Any) -> None:
        if value is not None and value != "":
            fields.append((key, _plain(value)))

    add("Steps", parameters.get("steps"))
    add("Sampler", parameters.get("sampler"))
    schedule = parameters.get("schedule")
    if schedule and schedule != "automatic":
        add("Schedule type", SCHEDULE_LABELS.get(schedule, schedule))
    add("CFG scale", parameters.get("guidance"))
    add("Seed", parameters.get("seed"))
    if parameters.get("width") and parameters.get("height"):
        add("Size", f"{_plain(parameters['width'])}x{_plain(parameters['height'])}")
    add("Model hash", parameters.get("model_hash"))
    add("Model", parameters.get("model"))
    add("Denoising strength", parameters.get("strength"))
    add("Mask blur", parameters.get("mask_blur"))
    if isinstance(parameters.get("control"), Mapping):
        add("ControlNet 0", _control_text(parameters["control"]))
    add("Lora weights", _loras_text(parameters.get("loras")))
    add("Lora hashes", _lora_hashes_text(parameters.get("loras")))
    # Not an A1111 key (it has no such cache): the interval of ours, to reproduce the image.
    add("Step cache", parameters.get("step_cache"))
    extra = parameters.get("extra")
    written = {key for key, _ in fields} | {"Version"}
    for key, value in (extra.items() if isinstance(extra, Mapping) else ()):
        if key not in written and _KEY.fullmatch(str(key)):
            add(str(key), value)
    add("Version", _version_text(parameters))
    return fields


def _plain(value: Any) -> str:
    """Integers without ".0" ("CFG scale: 7", as A1111 shows them); floats in their short form."""
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e15:
        return str(int(value))
    return str(value)


def _quote(value: str) -> str:
    # A field must stay on the line, and a comma, colon or quote would end or confuse it.
    value = _LINE_BREAKS.sub(" ", value)
    if any(mark in value for mark in ',:"') or value != value.strip():
        return json.dumps(value, ensure_ascii=False)
    return value


def _control_text(control: Mapping[str, Any]) -> str:
    # The layout of the sd-webui-controlnet extension, so its readers find what they expect.
    inner = [("Module", control.get("type")), ("Model", control.get("model")),
             ("Weight", control.get("weight")), ("Guidance Start", control.get("start")),
             ("Guidance End", control.get("end")),
             ("Threshold A", control.get("low_threshold")),
             ("Threshold B", control.get("high_threshold"))]
    if control.get("preprocess") is False:
        inner.append(("Preprocess", False))
    return ", ".join(f"{key}: {_quote(str(value))}" for key, value in inner
                     if value is not None)


def _loras_text(loras: Any) -> str | None:
    if not isinstance(loras, (list, tuple)):
        return None
    entries = [f"{_LINE_BREAKS.sub(' ', str(lora['name']))}: {_plain(lora.get('weight', 1.0))}"
               for lora in loras if isinstance(lora, Mapping) and lora.get("name")]
    return ", ".join(entries) or None


def _lora_hashes_text(loras: Any) -> str | None:
    if not isinstance(loras, (list, tuple)):
        return None
    entries = [f"{lora['name']}: {lora['hash']}" for lora in loras
               if isinstance(lora, Mapping) and lora.get("name") and lora.get("hash")]
    return ", ".join(entries) or None


def _version_text(parameters: Mapping[str, Any]) -> str | None:
    version = parameters.get("version")
    if version:
        version = str(version)
        return version if version.startswith(VERSION_PREFIX) else VERSION_PREFIX + version
    extra = parameters.get("extra")
    return extra.get("Version") if isinstance(extra, Mapping) else None


# -- reading ----------------------------------------------------------------------------------

def parse_infotext(text: str) -> dict[str, Any]:
    """Our parameter names from an infotext, ours or A1111's; never raises.

    Keys it does not know stay under ``extra`` as text. LoRA tags in an A1111 prompt
    (``<lora:name:0.8>``) stay in the prompt, where our prompt parser reads them.
    """
    lines = str(text).replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[-1].strip():
        lines.pop()
    fields = _split_fields(lines[-1]) if lines else []
    if len(fields) >= _MIN_FIELDS:
        lines.pop()
    else:
        fields = []
    prompt, negative = _split_prompts(lines)
    parameters: dict[str, Any] = {"prompt": prompt, "negative_prompt": negative,
                                  "schedule": "automatic", "loras": [], "extra": {}}
    _apply_fields(parameters, dict(fields))
    return parameters


def _split_fields(line: str) -> list[tuple[str, str]]:
    """(key, unquoted value) pairs; a piece that is not ``key: value`` is skipped."""
    fields = []
    position = 0
    while position < len(line):
        match = _FIELD.match(line, position)
        if match is None:
            comma = line.find(",", position)
            if comma < 0:
                break
            position = comma + 1
            continue
        fields.append((match[1].strip(), _unquote(match[2].strip())))
        position = match.end()
    return fields


def _unquote(value: str) -> str:
    if len(value) < 2 or value[0] != '"' or value[-1] != '"':
        return value
    try:
        unquoted = json.loads(value)
    except ValueError:  # not JSON after all: A1111 keeps such a value as it stands
        return value
    return unquoted if isinstance(unquoted, str) else value


def _split_prompts(lines: list[str]) -> tuple[str, str]:
    prompt: list[str] = []
    negative: list[str] = []
    for line in lines:
        if not negative and line.strip().startswith(NEGATIVE_PREFIX):
            # A1111 keeps every later line in the negative prompt too.
            negative.append(line.lstrip()[len(NEGATIVE_PREFIX):])
        elif negative:
            negative.append(line)
        else:
            prompt.append(line)
    return "\n".join(prompt).strip(), "\n".join(negative).strip()


_NUMBERS = {"Steps": ("steps", int), "Seed": ("seed", int), "Mask blur": ("mask_blur", int),
            "CFG scale": ("guidance", float), "Denoising strength": ("strength", float),
            "Step cache": ("step_cache", int)}


def _apply_fields(parameters: dict[str, Any], fields: dict[str, str]) -> None:
    """Turn known fields into typed parameters; the rest, and what fails to convert, go to extra."""
    extra = parameters["extra"]
    for key, value in fields.items():
        if not _apply_field(parameters, key, value, has_schedule="Schedule type" in fields):
            extra[key] = value


def _apply_field(parameters: dict[str, Any], key: str, value: str, has_schedule: bool) -> bool:
    if key in _NUMBERS:
        name, kind = _NUMBERS[key]
        number = _to_number(value, kind)
        if number is not None:
            parameters[name] = number
        return number is not None
    if key == "Model":
        parameters["model"] = value
        return True
    if key == "Sampler":
        _apply_sampler(parameters, value, has_schedule)
        return True
    if key == "Schedule type":
        schedule = find_schedule(value)
        if schedule is not None:
            parameters["schedule"] = schedule
        return schedule is not None
    if key == "Size":
        return _apply_size(parameters, value)
    if key == "Lora weights":
        loras = _parse_loras(value)
        if loras:
            parameters["loras"] = loras
        return bool(loras)
    if key == "ControlNet 0":
        parameters["control"] = _parse_control(value)
        return True
    return False


def _to_number(value: str, kind: type) -> int | float | None:
    try:
        return kind(value)
    except (ValueError, OverflowError):  # malformed, or an int past Python's digit limit
        return None


def _apply_sampler(parameters: dict[str, Any], value: str, has_schedule: bool) -> None:
    # Before v1.9 A1111 folded the schedule into the name: "DPM++ 2M Karras".
    spec = find_sampler(value)
    schedule = None
    if spec is None:
        base, schedule = split_legacy_sampler_name(value)
        spec = find_sampler(base)
        value = base if schedule else value
    parameters["sampler"] = spec.name if spec else value
    if schedule and not has_schedule:
        parameters["schedule"] = schedule


def _apply_size(parameters: dict[str, Any], value: str) -> bool:
    match = _SIZE.fullmatch(value.strip())
    if match is None:
        return False
    parameters["width"], parameters["height"] = int(match[1]), int(match[2])
    return True


def _parse_loras(value: str) -> list[dict[str, Any]]:
    loras = []
    for name, weight in _LORA_ENTRY.findall(value):
        number = _to_number(weight, float)
        if number is not None and name.strip():
            loras.append({"name": name.strip(), "weight": number})
    return loras


def _parse_control(value: str) -> dict[str, Any]:
    fields = dict(_split_fields(value))
    module = fields.get("Module", "none")
    control: dict[str, Any] = {
        "type": module, "preprocess": module != "none" and fields.get("Preprocess") != "False"}
    if "Model" in fields:
        control["model"] = fields["Model"]
    for key, name, kind in (("Weight", "weight", float), ("Guidance Start", "start", float),
                            ("Guidance End", "end", float), ("Threshold A", "low_threshold", int),
                            ("Threshold B", "high_threshold", int)):
        number = _to_number(fields.get(key, ""), kind)
        if number is None and kind is int:
            # The extension writes thresholds as floats ("100.0") in some versions.
            number = _to_number(fields.get(key, ""), float)
            number = int(number) if number is not None and abs(number) < 1e15 else None
        if number is not None:
            control[name] = number
    return control


# -- images -----------------------------------------------------------------------------------

def read_png_parameters(image: Image.Image) -> str | None:
    """The infotext an image carries: the PNG ``parameters`` text chunk, else the EXIF
    UserComment A1111 writes into JPEG and WebP files; None when there is neither."""
    text = image.info.get("parameters")
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    if isinstance(text, str) and text:
        return str(text)  # an iTXt chunk comes as a str subclass; callers want a plain str
    return _exif_user_comment(image)


def _exif_user_comment(image: Image.Image) -> str | None:
    try:
        exif = image.getexif()
        raw = exif.get_ifd(_EXIF_IFD).get(_USER_COMMENT, exif.get(_USER_COMMENT))
    except Exception as error:  # noqa: BLE001 - Pillow's EXIF parser fails in many ways on bad data
        logger.debug("unreadable EXIF: %s", error)
        return None
    if isinstance(raw, str):
        return raw.strip("\0") or None
    if not isinstance(raw, (bytes, bytearray)):
        return None
    return _decode_user_comment(bytes(raw)) or None


def _decode_user_comment(raw: bytes) -> str:
    """EXIF UserComment: an 8-byte charset prefix, then the text."""
    prefix, body = raw[:8], raw[8:]
    if prefix == b"UNICODE\0":
        return body.decode(_utf16_order(body), errors="replace").strip("\0")
    if prefix in (b"ASCII\0\0\0", b"\0" * 8):
        return body.decode("utf-8", errors="replace").strip("\0")
    return raw.decode("utf-8", errors="replace").strip("\0")


def _utf16_order(body: bytes) -> str:
    # EXIF says big-endian (piexif, hence A1111, writes that), but some Windows tools write
    # little-endian. Mostly-ASCII text shows which: its zero bytes sit at even offsets in BE.
    zeros_even = body[0::2].count(0)
    zeros_odd = body[1::2].count(0)
    return "utf-16-le" if zeros_odd > zeros_even else "utf-16-be"
