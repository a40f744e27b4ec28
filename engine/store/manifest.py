"""The model manifest: every model the app knows by name, read into typed, strict models.

``yaml.safe_load`` (no tags run), unknown keys rejected, and every error names its entry.
"""

from __future__ import annotations

import enum
import re
from pathlib import Path

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from engine.errors import EngineError
from engine.samplers import ALL_SCHEDULES, SAMPLERS


class ModelKind(str, enum.Enum):
    BASE = "base"
    CONTROLNET = "controlnet"
    LORA = "lora"
    ANNOTATOR = "annotator"  # a preprocessor's weights (controlnet-aux), not a diffusion model
    # A tiny VAE decoder (TAESD, diffusers' AutoencoderTiny) that draws the live previews.
    PREVIEW_DECODER = "preview_decoder"


class BaseFamily(str, enum.Enum):
    """An architecture family a LoRA may fit as a whole (every base in this manifest is SD 1.x:
    PAI's and Taiyi's UNets are SD 1.5's, only their text encoders differ)."""

    SD15 = "sd15"

    @property
    def label(self) -> str:
        return {"sd15": "SD 1.5"}[self.value]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class LocalizedText(_Strict):
    zh: str = Field(min_length=1)
    en: str = Field(min_length=1)

    def text(self, language: str) -> str:
        return self.zh if language == "zh-CN" else self.en


class ImageSize(_Strict):
    width: int = Field(ge=64, le=2048, multiple_of=8)
    height: int = Field(ge=64, le=2048, multiple_of=8)


class Recommended(_Strict):
    sampler: str | None = None
    schedule: str | None = None
    steps: int | None = Field(default=None, ge=1, le=150)
    guidance: float | None = Field(default=None, ge=0, le=30)
    lora_weight: float | None = Field(default=None, ge=-2, le=2)
    strength: float | None = Field(default=None, ge=0, le=1)

    @field_validator("sampler")
    @classmethod
    def _known_sampler(cls, value: str | None) -> str | None:
        if value is not None and value not in SAMPLERS:
            raise ValueError(f"unknown sampler '{value}' (known: {', '.join(SAMPLERS)})")
        return value

    @field_validator("schedule")
    @classmethod
    def _known_schedule(cls, value: str | None) -> str | None:
        if value is not None and value not in ALL_SCHEDULES:
            raise ValueError(f"unknown schedule '{value}' (known: {', '.join(ALL_SCHEDULES)})")
        return value


class ExamplePrompt(_Strict):
    prompt: str = Field(min_length=1)
    negative_prompt: str = ""


class ManifestEntry(_Strict):
    id: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    kind: ModelKind
    repo: str = Field(pattern=r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")
    # The same model on ModelScope (魔搭), where it is hosted there; downloads from ModelScope
    # land in the cache under ``repo``, so the rest of the app never knows the difference.
    modelscope_repo: str | None = Field(default=None,
                                        pattern=r"^[A-Za-z0-9._-]+/[A-Za-z0-9._-]+$")
    name: LocalizedText
    description: LocalizedText
    license: str
    license_url: str | None = None
    base: str | None = None
    # Instead of one ``base``: a LoRA made for a whole family (the few-step LoRAs for SD 1.5),
    # fitting every base of it. Whether it suits a fine-tuned base is the user's to judge.
    base_family: BaseFamily | None = None
    default_size: ImageSize | None = None
    recommended: Recommended = Recommended()
    examples: tuple[ExamplePrompt, ...] = ()
    control_type: str | None = None
    weight_file: str | None = None
    trigger_words: tuple[str, ...] = ()
    # An example picture inside the repo (e.g. one of the model card's PNGs), for style cards.
    preview_image: str | None = Field(default=None, pattern=r"^[A-Za-z0-9_][A-Za-z0-9._/-]*$")
    approx_size_gb: float | None = Field(default=None, gt=0)
    # The only files of ``repo`` this entry takes (an annotator's weights from a repo that
    # holds every detector's): a download fetches just these.
    files: tuple[str, ...] = ()
    # Known SHA-256 of files in the repo (path -> hex). Where given, they decide over what the
    # download source reports, so a mirror cannot swap a file and its advertised hash together.
    sha256: dict[str, str] = Field(default_factory=dict)

    @property
    def size_text(self) -> str:
        """About how many GB, as the messages show it ("?" when the manifest does not say)."""
        return f"{self.approx_size_gb:g}" if self.approx_size_gb else "?"

    @property
    def base_label(self) -> str | None:
        """What a LoRA or ControlNet was made for, as the UI shows it."""
        return self.base or (self.base_family.label if self.base_family else None)

    @property
    def prescribes_sampling(self) -> bool:
        """A LoRA whose card sets the sampler, steps and guidance (a few-step LoRA): requests
        far from them get a warning."""
        return self.kind is ModelKind.LORA and self.recommended.sampler is not None

    @property
    def cache_repo(self) -> str:
        """Where its files live in the hub cache (and its download records). An entry that
        takes a few files of a shared repo gets a folder of its own, so that each detector's
        weights download, verify and delete without touching another's."""
        return f"{self.repo}.{self.id}" if self.files else self.repo

    @model_validator(mode="after")
    def _fields_for_kind(self) -> ManifestEntry:
        if any(not re.fullmatch(r"[0-9a-f]{64}", value) for value in self.sha256.values()):
            raise ValueError("sha256 values are 64 lowercase hex digits")
        if self.kind is ModelKind.BASE and self.default_size is None:
            raise ValueError("a base model needs default_size")
        self._check_recommended()
        if self.kind is ModelKind.ANNOTATOR:
            return self._annotator_fields()
        if self.files:
            raise ValueError("only an annotator lists files")
        if self.kind is ModelKind.BASE and self.base_family is not None:
            raise ValueError("a base model has no base_family")
        if self.kind in (ModelKind.CONTROLNET, ModelKind.LORA) and \
                (self.base is None) == (self.base_family is None):
            raise ValueError("a ControlNet or LoRA names either the base it was trained for "
                             "(base) or the family it fits (base_family)")
        if self.kind is ModelKind.CONTROLNET and not self.control_type:
            raise ValueError("a ControlNet needs control_type")
        if self.kind is ModelKind.LORA and not self.weight_file:
            raise ValueError("a LoRA needs weight_file")
        return self

    def _check_recommended(self) -> None:
        recommended = self.recommended
        if recommended.sampler and recommended.schedule and (
                recommended.schedule not in SAMPLERS[recommended.sampler].schedules):
            raise ValueError(f"recommended: sampler '{recommended.sampler}' does not offer the "
                             f"schedule '{recommended.schedule}'")
        if self.prescribes_sampling and (recommended.steps is None
                                         or recommended.guidance is None):
            raise ValueError("recommended: a LoRA that names a sampler names steps and guidance "
                             "too")

    def _annotator_fields(self) -> ManifestEntry:
        if not self.files:
            raise ValueError("an annotator lists the files it needs")
        # Plain names: a file lands in the snapshot folder under this name.
        if any(not re.fullmatch(r"[A-Za-z0-9_][A-Za-z0-9._-]*", name) for name in self.files):
            raise ValueError("annotator files are plain file names")
        if (self.base is not None or self.base_family is not None or self.control_type
                or self.weight_file):
            raise ValueError("an annotator has no base, base_family, control_type or weight_file")
        return self


class Manifest(_Strict):
    version: int = Field(ge=1, le=1)
    models: tuple[ManifestEntry, ...]

    def get(self, model_id: str) -> ManifestEntry | None:
        """By manifest id or hub repo id."""
        for entry in self.models:
            if model_id in (entry.id, entry.repo):
                return entry
        return None

    def of_kind(self, kind: ModelKind) -> tuple[ManifestEntry, ...]:
        return tuple(entry for entry in self.models if entry.kind is kind)

    def for_base(self, base_id: str, kind: ModelKind) -> tuple[ManifestEntry, ...]:
        return tuple(e for e in self.of_kind(kind) if e.base == base_id)


class ManifestError(EngineError):
    def __init__(self, entry: str, detail: str) -> None:
        super().__init__("manifest_invalid", entry=entry, detail=detail)


def _entry_label(raw: object, index: int) -> str:
    if isinstance(raw, dict) and isinstance(raw.get("id"), str):
        return raw["id"]
    return f"#{index + 1}"


def _parse_entries(raw_models: list) -> tuple[ManifestEntry, ...]:
    entries = []
    for index, raw in enumerate(raw_models):
        try:
            entries.append(ManifestEntry.model_validate(raw))
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or "entry"
            raise ManifestError(_entry_label(raw, index), f"{where}: {first['msg']}") from None
    return tuple(entries)


def _check_references(entries: tuple[ManifestEntry, ...]) -> None:
    ids = [entry.id for entry in entries]
    for entry in entries:
        if ids.count(entry.id) > 1:
            raise ManifestError(entry.id, "id is used twice")
        if entry.base is None:
            continue
        base = next((e for e in entries if e.id == entry.base), None)
        if base is None or base.kind is not ModelKind.BASE:
            raise ManifestError(entry.id, f"base '{entry.base}' is not a base model here")


def parse_manifest(text: str) -> Manifest:
    try:
        raw = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ManifestError("(file)", f"not valid YAML: {exc.__class__.__name__}") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("models"), list):
        raise ManifestError("(file)", "expected a mapping with a 'models' list")
    unknown = set(raw) - {"version", "models"}
    if unknown:
        raise ManifestError("(file)", f"unknown keys: {', '.join(sorted(map(str, unknown)))}")
    entries = _parse_entries(raw["models"])
    _check_references(entries)
    try:
        return Manifest(version=raw.get("version", 0), models=entries)
    except ValidationError as exc:
        raise ManifestError("(file)", exc.errors()[0]["msg"]) from None


def load_manifest(path: Path) -> Manifest:
    return parse_manifest(Path(path).read_text(encoding="utf-8"))
