"""The app's settings: command-line flags and environment, read once in ``app.py``; and the
preferences chosen in 设置, kept in a JSON file across restarts.
"""

from __future__ import annotations

import argparse
import dataclasses
import ipaddress
import json
import logging
import os
import tempfile
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from engine.downloads.sources import SOURCE_KINDS
from engine.errors import InvalidRequest
from engine.samplers import DEFAULT_SAMPLER, SAMPLERS
from engine.settings import DEVICES, PRECISIONS, SpeedSettings, canonical_memory_mode
from locales import DEFAULT_LANGUAGE, LANGUAGES

logger = logging.getLogger(__name__)

ADMIN_MARK = "admin"  # the third field of an --auth-file line: user:password:admin
ADMIN_PASSWORD_VARIABLE = "HUAJING_ADMIN_PASSWORD"  # a Space secret


@dataclass(frozen=True)
class AppSettings:
    host: str = "127.0.0.1"
    port: int = 7860
    share: bool = False
    auth: tuple[tuple[str, str], ...] = ()
    allow_insecure: bool = False
    language: str | None = None  # None: the saved preference
    models_dir: Path = Path("models")
    cache_dir: Path | None = None
    data_dir: Path = Path("data")
    offline: bool = False
    device: str = "auto"
    precision: str = "auto"
    demo: bool = False
    verbose: bool = False
    source: str | None = None  # --source: wins over the saved 下载源
    hf_endpoint: str | None = None  # HF_ENDPOINT from the environment
    convert_downloads: bool = True  # --no-convert keeps downloads as they came
    # Host names besides the bound address and localhost that requests may be addressed to.
    allowed_hosts: tuple[str, ...] = ()
    admins: tuple[str, ...] = ()  # accounts that may change what the server does
    outputs_base: Path = Path("outputs")  # the output folder stays inside this one
    allow_private_endpoint: bool = False  # custom sources on this machine or the LAN
    on_space: bool = False  # a Hugging Face Space: public, no accounts
    admin_password: str | None = field(default=None, repr=False)  # unlocks admin per session

    @property
    def single_user(self) -> bool:
        """Loopback, no accounts, not a Space: the one local user owns the whole app (is its
        admin, may interrupt whatever runs, fills the queue as A1111's only user does)."""
        return not self.auth and not self.is_public and not self.on_space

    @property
    def is_public(self) -> bool:
        """Reachable from other machines: a share link or a non-loopback address."""
        if self.share:
            return True
        try:
            return not ipaddress.ip_address(self.host).is_loopback
        except ValueError:
            return self.host != "localhost"


@dataclass(frozen=True)
class Preferences:
    """What users change in 设置."""

    language: str = DEFAULT_LANGUAGE
    output_dir: str = "outputs"
    memory_mode: str = "auto"  # engine.settings.MEMORY_MODES; old names are read as theirs
    default_sampler: str = DEFAULT_SAMPLER
    download_source: str = ""  # "" means HF_ENDPOINT if set, else Hugging Face
    custom_endpoint: str = ""
    # Speed (engine.settings.SpeedSettings), kept flat so the file stays plain JSON.
    channels_last: bool = False
    fuse_qkv: bool = False
    compile_unet: bool = False
    step_cache_interval: int = 0
    preview_method: str = "approx"

    @property
    def speed(self) -> SpeedSettings:
        return SpeedSettings(channels_last=self.channels_last, fuse_qkv=self.fuse_qkv,
                             compile_unet=self.compile_unet,
                             step_cache_interval=self.step_cache_interval,
                             preview_method=self.preview_method)

    def with_speed(self, speed: SpeedSettings) -> Preferences:
        return dataclasses.replace(self, **dataclasses.asdict(speed))


class SettingsError(Exception):
    """A flag or file the app cannot start with; the message is for the terminal."""


def _read_auth(pair: str) -> tuple[str, str]:
    user, sep, password = pair.strip().partition(":")
    if not sep or not user or not password:
        raise SettingsError("--auth needs USER:PASSWORD")
    return user, password


def _auth_from_file(path: Path) -> list[tuple[str, str, bool]]:
    """(user, password, is admin) per line. A password may hold colons, so only a last
    field of exactly ``admin`` marks an admin."""
    try:
        lines = path.read_text(encoding="utf-8").splitlines()
    except OSError as error:
        raise SettingsError(f"cannot read --auth-file: {error.strerror}") from None
    accounts = []
    for line in lines:
        if not line.strip() or line.startswith("#"):
            continue
        rest, sep, mark = line.strip().rpartition(":")
        admin = bool(sep) and mark == ADMIN_MARK and ":" in rest
        user, password = _read_auth(rest if admin else line)
        accounts.append((user, password, admin))
    return accounts


def _admins(args: argparse.Namespace, accounts: list[tuple[str, str, bool]]) -> tuple[str, ...]:
    """Marked in the file, named by --admin, or the one --auth user when there is no file."""
    users = [user for user, _, _ in accounts]
    unknown = [name for name in args.admin if name not in users]
    if unknown:
        raise SettingsError(f"--admin names no account: {', '.join(unknown)}")
    admins = [user for user, _, admin in accounts if admin] + list(args.admin)
    if args.auth is not None and not args.auth_file:
        admins.append(users[0])
    return tuple(dict.fromkeys(admins))


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="app.py", description="画境 Huajing WebUI")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, help="default 7860, or $PORT on hosted platforms")
    parser.add_argument("--share", action="store_true", help="public Gradio link (needs auth)")
    parser.add_argument("--auth", help="USER:PASSWORD")
    parser.add_argument("--auth-file", type=Path,
                        help="file of USER:PASSWORD lines; USER:PASSWORD:admin marks an admin")
    parser.add_argument("--admin", action="append", default=[], metavar="USER",
                        help="this account may change server settings and models (repeatable)")
    parser.add_argument("--insecure-no-auth", action="store_true",
                        help="allow a public address or --share without a password")
    parser.add_argument("--allowed-host", action="append", default=[], metavar="NAME",
                        help="another host name this server may be reached by (repeatable); "
                             "requests naming any other Host are refused")
    parser.add_argument("--lang", choices=LANGUAGES)
    parser.add_argument("--models-dir", type=Path, default=Path("models"))
    parser.add_argument("--cache-dir", type=Path, help="huggingface_hub cache (default HF_HOME)")
    parser.add_argument("--data-dir", type=Path, default=Path("data"),
                        help="saved settings and the demo models")
    parser.add_argument("--outputs-base", type=Path, default=Path("outputs"),
                        help="the output folder chosen in 设置 must stay inside this folder")
    parser.add_argument("--allow-private-endpoint", action="store_true",
                        help="allow a custom download source on this machine or a private "
                             "network")
    parser.add_argument("--offline", action="store_true")
    parser.add_argument("--source", choices=SOURCE_KINDS,
                        help="download source (default: the one chosen in 设置)")
    parser.add_argument("--no-convert", action="store_true",
                        help="keep downloads as they came (no fp16 safetensors conversion)")
    parser.add_argument("--device", default="auto", choices=DEVICES)
    parser.add_argument("--precision", default="auto", choices=PRECISIONS)
    parser.add_argument("--demo", action="store_true",
                        help="tiny built-in random-weight models: no download, draws noise")
    parser.add_argument("--verbose", action="store_true")
    return parser


def parse_settings(argv: list[str] | None, environ: Mapping[str, str]) -> AppSettings:
    args = build_parser().parse_args(argv)
    accounts = [(*_read_auth(args.auth), False)] if args.auth is not None else []
    if args.auth_file:
        accounts += _auth_from_file(args.auth_file)
    auth = [(user, password) for user, password, _ in accounts]
    # Hosted platforms (Hugging Face Spaces) say where to listen through the environment.
    port = args.port or int(environ.get("PORT") or environ.get("GRADIO_SERVER_PORT") or 7860)
    host = environ.get("GRADIO_SERVER_NAME", args.host) if args.host == "127.0.0.1" else args.host
    settings = AppSettings(
        host=host, port=port, share=args.share, auth=tuple(auth),
        allow_insecure=args.insecure_no_auth, language=args.lang, models_dir=args.models_dir,
        cache_dir=args.cache_dir, data_dir=args.data_dir,
        offline=args.offline or environ.get("HF_HUB_OFFLINE") == "1", device=args.device,
        precision=args.precision, demo=args.demo, verbose=args.verbose, source=args.source,
        hf_endpoint=environ.get("HF_ENDPOINT"), convert_downloads=not args.no_convert,
        allowed_hosts=tuple(args.allowed_host),
        admins=_admins(args, accounts), outputs_base=args.outputs_base,
        allow_private_endpoint=args.allow_private_endpoint,
        on_space=bool(environ.get("SPACE_ID")),
        admin_password=environ.get(ADMIN_PASSWORD_VARIABLE) or None)
    # On a Hugging Face Space the platform serves the app and the Space's own visibility
    # setting decides who may open it.
    if settings.is_public and not settings.auth and not settings.allow_insecure and \
            not settings.on_space:
        raise SettingsError(
            "Refusing to serve on a public address or share link without a password: add "
            "--auth USER:PASSWORD (or --insecure-no-auth if you really mean it). / "
            "未设置密码时拒绝在公开地址或分享链接上运行：请加 --auth 用户名:密码。")
    return settings


def output_folder(value: str, base: Path) -> Path:
    """The folder ``value`` names, resolved, if it lies inside ``base``: a relative name is
    taken from the working directory, as the engine takes it; empty means ``base`` itself.
    Refused: ``~``, an absolute path or ``..`` leading out, a symbolic link pointing out."""
    text = (value or "").strip() if isinstance(value, str) else None
    root = base.resolve()
    refused = InvalidRequest("output_dir_outside_base", base=str(root))
    if text is None or text.startswith("~") or "\0" in text:
        raise refused
    if not text:
        return root
    try:
        folder = (Path.cwd() / text).resolve()  # follows links, so one leading out is seen
    except (OSError, RuntimeError, ValueError):
        raise refused from None
    if folder != root and root not in folder.parents:
        raise refused
    return folder


class PreferencesStore:
    """Preferences in ``path``; a missing or damaged file gives the defaults, never a crash.
    With ``outputs_base``, an output folder outside it (a tampered file) loads as the base."""

    def __init__(self, path: Path, outputs_base: Path | None = None) -> None:
        self.path = path
        self.outputs_base = outputs_base

    def load(self) -> Preferences:
        try:
            raw = json.loads(self.path.read_text(encoding="utf-8"))
            known = {f.name for f in dataclasses.fields(Preferences)}
            loaded = _sanitised(Preferences(**{k: v for k, v in raw.items() if k in known}))
        except FileNotFoundError:
            loaded = Preferences()
        except (OSError, ValueError, TypeError, AttributeError):
            logger.warning("settings file %s is damaged; using defaults", self.path)
            loaded = Preferences()
        return self._confined(loaded)

    def _confined(self, preferences: Preferences) -> Preferences:
        if self.outputs_base is None:
            return preferences
        try:
            output_folder(preferences.output_dir, self.outputs_base)
        except InvalidRequest:
            logger.warning("the saved output folder is outside %s; using it instead",
                           self.outputs_base)
            return dataclasses.replace(preferences, output_dir=str(self.outputs_base.resolve()))
        return preferences

    def save(self, preferences: Preferences) -> None:
        """Write to a temporary file and rename, so a crash never leaves half a file."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        data = json.dumps(dataclasses.asdict(preferences), ensure_ascii=False, indent=2)
        handle, temporary = tempfile.mkstemp(dir=self.path.parent, suffix=".tmp")
        try:
            with os.fdopen(handle, "w", encoding="utf-8") as file:
                file.write(data)
            os.replace(temporary, self.path)
        except OSError:
            Path(temporary).unlink(missing_ok=True)
            raise


def _sanitised(preferences: Preferences) -> Preferences:
    defaults = Preferences()
    if preferences.language not in LANGUAGES:
        preferences = dataclasses.replace(preferences, language=defaults.language)
    # An old file's "normal"/"low" become "auto"/"model_offload"; anything else the default.
    preferences = dataclasses.replace(
        preferences, memory_mode=canonical_memory_mode(preferences.memory_mode)
        or defaults.memory_mode)
    if not isinstance(preferences.output_dir, str) or not preferences.output_dir.strip():
        preferences = dataclasses.replace(preferences, output_dir=defaults.output_dir)
    if preferences.download_source not in ("", *SOURCE_KINDS):
        preferences = dataclasses.replace(preferences, download_source="")
    if not isinstance(preferences.custom_endpoint, str):
        preferences = dataclasses.replace(preferences, custom_endpoint="")
    if preferences.default_sampler not in SAMPLERS:
        preferences = dataclasses.replace(preferences, default_sampler=defaults.default_sampler)
    bad_speed = preferences.speed.problems()
    if bad_speed:
        preferences = dataclasses.replace(
            preferences, **{name: getattr(defaults, name) for name in bad_speed})
    return preferences
