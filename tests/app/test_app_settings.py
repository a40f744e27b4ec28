"""The app's command-line settings, the saved preferences, and refusing an unsafe start."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

import app_settings
from app_settings import (
    AppSettings,
    Preferences,
    PreferencesStore,
    SettingsError,
    parse_settings,
)
from engine.settings import SpeedSettings

# -- parse_settings ---------------------------------------------------------------------------

def test_defaults():
    settings = parse_settings([], {})
    assert settings == AppSettings()
    assert (settings.host, settings.port, settings.share, settings.auth) == (
        "127.0.0.1", 7860, False, ())
    assert settings.language is None and not settings.offline and not settings.is_public
    assert (settings.models_dir, settings.data_dir) == (Path("models"), Path("data"))


def test_no_convert_reaches_the_engine_settings():
    import app

    assert parse_settings([], {}).convert_downloads
    kept = parse_settings(["--no-convert"], {})
    assert not app.engine_settings(kept, "auto").convert_downloads
    assert app.engine_settings(parse_settings([], {}), "auto").convert_downloads


def test_a_public_address_without_a_password_is_refused():
    with pytest.raises(SettingsError) as caught:
        parse_settings(["--host", "0.0.0.0"], {})
    assert "--auth" in str(caught.value)


def test_a_public_address_with_a_password_is_served():
    settings = parse_settings(["--host", "0.0.0.0", "--auth", "u:p"], {})
    assert settings.host == "0.0.0.0" and settings.auth == (("u", "p"),)
    assert settings.is_public


def test_a_public_address_with_insecure_no_auth_is_served():
    settings = parse_settings(["--host", "0.0.0.0", "--insecure-no-auth"], {})
    assert settings.allow_insecure and settings.auth == ()


def test_a_share_link_needs_a_password_too():
    with pytest.raises(SettingsError):
        parse_settings(["--share"], {})
    assert parse_settings(["--share", "--auth", "u:p"], {}).share
    assert parse_settings(["--share", "--insecure-no-auth"], {}).share


@pytest.mark.parametrize("host, public", [
    ("127.0.0.1", False), ("localhost", False), ("::1", False), ("127.0.0.2", False),
    ("0.0.0.0", True), ("192.168.1.5", True), ("::", True), ("my-machine", True),
])
def test_which_hosts_are_public(host, public):
    assert AppSettings(host=host).is_public is public


def test_auth_file_with_two_users(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("alice:secret\n# a comment\n\nbob:pass:with:colons\n", encoding="utf-8")

    settings = parse_settings(["--host", "0.0.0.0", "--auth-file", str(users)], {})

    assert settings.auth == (("alice", "secret"), ("bob", "pass:with:colons"))
    both = parse_settings(["--auth", "carol:x", "--auth-file", str(users)], {})
    assert [user for user, _ in both.auth] == ["carol", "alice", "bob"]


def test_a_missing_auth_file_is_a_settings_error(tmp_path):
    with pytest.raises(SettingsError):
        parse_settings(["--auth-file", str(tmp_path / "missing.txt")], {})


def test_an_auth_file_with_a_bad_line_is_a_settings_error(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("alice:secret\nbob\n", encoding="utf-8")
    with pytest.raises(SettingsError):
        parse_settings(["--auth-file", str(users)], {})


@pytest.mark.parametrize("pair", ["nocolon", "user:", ":password"])
def test_bad_auth_is_a_settings_error(pair):
    with pytest.raises(SettingsError):
        parse_settings(["--host", "0.0.0.0", "--auth", pair], {})


def test_port_from_the_environment_when_no_flag():
    assert parse_settings([], {"PORT": "8080"}).port == 8080
    assert parse_settings([], {"GRADIO_SERVER_PORT": "7000"}).port == 7000
    assert parse_settings(["--port", "9000"], {"PORT": "8080"}).port == 9000


def test_server_name_from_the_environment():
    settings = parse_settings(["--auth", "u:p"], {"GRADIO_SERVER_NAME": "0.0.0.0"})
    assert settings.host == "0.0.0.0"
    # A public address from the environment needs a password like one from the flag.
    with pytest.raises(SettingsError):
        parse_settings([], {"GRADIO_SERVER_NAME": "0.0.0.0"})
    # An explicit --host wins.
    assert parse_settings(["--host", "localhost"],
                          {"GRADIO_SERVER_NAME": "0.0.0.0"}).host == "localhost"


def test_on_a_hugging_face_space_the_platform_guards_access():
    settings = parse_settings([], {"GRADIO_SERVER_NAME": "0.0.0.0", "SPACE_ID": "me/huajing"})
    assert settings.host == "0.0.0.0" and settings.auth == ()


def test_offline_from_hf_hub_offline():
    assert parse_settings([], {"HF_HUB_OFFLINE": "1"}).offline
    assert not parse_settings([], {"HF_HUB_OFFLINE": "0"}).offline
    assert parse_settings(["--offline"], {}).offline


def test_other_flags():
    settings = parse_settings(["--lang", "en", "--demo", "--device", "cpu", "--precision",
                               "fp32", "--models-dir", "/m", "--data-dir", "/d", "--verbose"],
                              {})
    assert (settings.language, settings.demo, settings.device, settings.precision) == (
        "en", True, "cpu", "fp32")
    assert (settings.models_dir, settings.data_dir, settings.verbose) == (
        Path("/m"), Path("/d"), True)
    with pytest.raises(SystemExit):
        parse_settings(["--lang", "fr"], {})


# -- PreferencesStore -------------------------------------------------------------------------

def test_preferences_round_trip(tmp_path):
    store = PreferencesStore(tmp_path / "nested" / "settings.json")
    chosen = Preferences(language="en", output_dir="/pictures/画境", memory_mode="model_offload",
                         default_sampler="Euler a")
    store.save(chosen)
    assert store.load() == chosen
    assert json.loads(store.path.read_text(encoding="utf-8"))["output_dir"] == "/pictures/画境"
    store.save(Preferences())
    assert store.load() == Preferences()


def test_missing_file_gives_defaults(tmp_path):
    assert PreferencesStore(tmp_path / "settings.json").load() == Preferences()


@pytest.mark.parametrize("text", ["{not json", "[1, 2]", "null", '"en"', "42", "",
                                  '{"language": "en"'])
def test_damaged_file_gives_defaults(tmp_path, text):
    path = tmp_path / "settings.json"
    path.write_text(text, encoding="utf-8")
    assert PreferencesStore(path).load() == Preferences()


def test_undecodable_file_gives_defaults(tmp_path):
    path = tmp_path / "settings.json"
    path.write_bytes(b"\xff\xfe\x00garbage")
    assert PreferencesStore(path).load() == Preferences()


def test_unknown_keys_are_ignored(tmp_path):
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"language": "en", "colour": "red",
                                "memory_mode": "sequential_offload"}), encoding="utf-8")
    assert PreferencesStore(path).load() == Preferences(language="en",
                                                        memory_mode="sequential_offload")


@pytest.mark.parametrize(("saved", "read"), [("normal", "auto"), ("low", "model_offload")])
def test_an_old_files_memory_mode_is_read_as_what_it_named(tmp_path, saved, read):
    """Earlier versions saved "normal" and "low"; the mode is kept, not reset to "auto"."""
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"language": "en", "memory_mode": saved}), encoding="utf-8")
    assert PreferencesStore(path).load() == Preferences(language="en", memory_mode=read)


@pytest.mark.parametrize("field, bad", [
    ("language", "fr"), ("language", ["en"]), ("language", None),
    ("memory_mode", "huge"), ("memory_mode", 3), ("memory_mode", None),
    ("output_dir", ""), ("output_dir", "   "), ("output_dir", 5),
    ("default_sampler", 7), ("default_sampler", None), ("default_sampler", "No such sampler"),
    ("channels_last", 1), ("fuse_qkv", "yes"), ("compile_unet", None),
    ("step_cache_interval", 9), ("step_cache_interval", -1), ("step_cache_interval", True),
    ("step_cache_interval", 2.5), ("preview_method", "full"),
])
def test_a_bad_field_falls_back_alone(tmp_path, field, bad):
    good = Preferences(language="en", output_dir="/pictures", memory_mode="model_offload",
                       default_sampler="Euler a", channels_last=True, fuse_qkv=True,
                       compile_unet=True, step_cache_interval=3, preview_method="taesd")
    raw = {**good.__dict__, field: bad}
    path = tmp_path / "settings.json"
    path.write_text(json.dumps(raw), encoding="utf-8")

    loaded = PreferencesStore(path).load()

    expected = {**good.__dict__, field: getattr(Preferences(), field)}
    assert loaded == Preferences(**expected)


def test_speed_settings_round_trip_and_reach_the_engine_settings(tmp_path):
    import app

    speed = SpeedSettings(channels_last=True, fuse_qkv=False, compile_unet=True,
                          step_cache_interval=3, preview_method="taesd")
    store = PreferencesStore(tmp_path / "settings.json")
    store.save(Preferences(language="en").with_speed(speed))
    loaded = store.load()
    assert loaded.speed == speed and loaded.language == "en"
    assert app.engine_settings(parse_settings([], {}), "auto", loaded.speed).speed == speed
    assert app.engine_settings(parse_settings([], {}), "auto").speed == SpeedSettings()


def test_save_is_atomic_and_leaves_no_temporary_file(tmp_path):
    store = PreferencesStore(tmp_path / "settings.json")
    store.save(Preferences(language="en"))
    store.save(Preferences(language="zh-CN", memory_mode="gpu"))
    assert sorted(path.name for path in tmp_path.iterdir()) == ["settings.json"]
    assert store.load() == Preferences(memory_mode="gpu")


def test_a_failed_save_keeps_the_old_file_and_leaves_no_temporary_file(tmp_path, monkeypatch):
    store = PreferencesStore(tmp_path / "settings.json")
    store.save(Preferences(language="en"))

    def full_disk(source, target):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(app_settings.os, "replace", full_disk)
    with pytest.raises(OSError):
        store.save(Preferences(memory_mode="gpu"))
    monkeypatch.undo()

    assert store.load() == Preferences(language="en")
    assert sorted(path.name for path in tmp_path.iterdir()) == ["settings.json"]


# -- app.main ---------------------------------------------------------------------------------

def test_main_refuses_a_public_address_without_a_password(monkeypatch, capsys):
    import app

    for name in ("SPACE_ID", "GRADIO_SERVER_NAME", "PORT", "GRADIO_SERVER_PORT"):
        monkeypatch.delenv(name, raising=False)
    started = []
    monkeypatch.setattr(app, "build_service", lambda *args, **kwargs: started.append(args))
    monkeypatch.setattr(app, "configure_logging", lambda *args: started.append(args))

    assert app.main(["--host", "0.0.0.0"]) == 2

    assert started == []
    error = capsys.readouterr().err
    assert "--auth" in error and "密码" in error


def test_main_refuses_a_bad_auth_pair(monkeypatch, capsys):
    import app

    monkeypatch.setattr(app, "build_service", lambda *args, **kwargs: pytest.fail("started"))
    assert app.main(["--auth", "nocolon"]) == 2
    assert "USER:PASSWORD" in capsys.readouterr().err


# -- admins (issue 9: settings that change the server are for admins) ----------------------

def test_the_auth_file_marks_admins_with_a_third_field(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("alice:secret:admin\nbob:pass:with:colons\ncarol:admin\n",
                     encoding="utf-8")
    settings = parse_settings(["--auth-file", str(users)], {})
    assert settings.auth == (("alice", "secret"), ("bob", "pass:with:colons"),
                             ("carol", "admin"))  # a password of "admin" marks nobody
    assert settings.admins == ("alice",)


def test_admin_flags_name_accounts(tmp_path):
    users = tmp_path / "users.txt"
    users.write_text("alice:secret\nbob:pw\n", encoding="utf-8")
    assert parse_settings(["--auth-file", str(users), "--admin", "bob"], {}).admins == ("bob",)
    assert parse_settings(["--auth-file", str(users)], {}).admins == ()
    with pytest.raises(SettingsError):
        parse_settings(["--auth-file", str(users), "--admin", "mallory"], {})
    with pytest.raises(SettingsError):
        parse_settings(["--admin", "alice"], {})  # no accounts at all


def test_the_one_auth_user_is_the_admin_unless_a_file_lists_accounts(tmp_path):
    assert parse_settings(["--auth", "u:p"], {}).admins == ("u",)
    users = tmp_path / "users.txt"
    users.write_text("alice:secret:admin\n", encoding="utf-8")
    assert parse_settings(["--auth", "u:p", "--auth-file", str(users)], {}).admins == ("alice",)


def test_space_and_admin_password_from_the_environment():
    settings = parse_settings([], {"SPACE_ID": "me/huajing",
                                   "HUAJING_ADMIN_PASSWORD": "hunter2-long"})
    assert settings.on_space and settings.admin_password == "hunter2-long"
    assert "hunter2-long" not in repr(settings)
    assert parse_settings([], {}).admin_password is None


def test_who_is_admin_from_the_settings():
    from ui.access import Access

    class Visitor:
        def __init__(self, username=None, session_hash="s1"):
            self.username, self.session_hash = username, session_hash

    local = Access.from_settings(parse_settings([], {}))
    assert local.is_admin(Visitor()) and not local.personal(Visitor())
    lan = Access.from_settings(parse_settings(["--host", "0.0.0.0", "--auth", "u:p"], {}))
    assert lan.is_admin(Visitor("u")) and not lan.is_admin(Visitor("v"))
    loopback_accounts = Access.from_settings(parse_settings(["--auth", "u:p"], {}))
    assert not loopback_accounts.is_admin(Visitor("v"))
    space = Access.from_settings(parse_settings([], {"SPACE_ID": "me/huajing"}))
    assert not space.is_admin(Visitor()) and space.personal(Visitor())
    assert not space.unlock(Visitor(), "")  # no password set: nothing unlocks
    insecure = Access.from_settings(parse_settings(["--host", "0.0.0.0",
                                                    "--insecure-no-auth"], {}))
    assert not insecure.is_admin(Visitor())


def test_new_flags():
    settings = parse_settings(["--outputs-base", "/srv/pictures", "--allow-private-endpoint"],
                              {})
    assert settings.outputs_base == Path("/srv/pictures") and settings.allow_private_endpoint
    assert not parse_settings([], {}).allow_private_endpoint


# -- the output folder stays under its base -------------------------------------------------

@pytest.mark.parametrize("folder", ["~", "~/pictures", "~root", "/etc", "../..", "..",
                                    "{base}/../x", "{base}/link/inside", "{base}/\0"])
def test_output_folders_outside_the_base_are_refused(tmp_path, folder):
    from engine.errors import InvalidRequest

    base = tmp_path / "base"
    base.mkdir()
    (base / "link").symlink_to(tmp_path)
    with pytest.raises(InvalidRequest) as caught:
        app_settings.output_folder(folder.format(base=base), base)
    assert caught.value.code == "output_dir_outside_base"


def test_output_folders_inside_the_base(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    base = tmp_path / "outputs"
    assert app_settings.output_folder("outputs", base) == base
    assert app_settings.output_folder("outputs/风景", base) == base / "风景"
    assert app_settings.output_folder(str(base / "a" / ".." / "b"), base) == base / "b"
    assert app_settings.output_folder("  ", base) == base


@pytest.mark.parametrize("tampered", ["/etc", "../../x", "~/.ssh", "{base}/link"])
def test_a_tampered_settings_file_cannot_move_outputs_out_of_the_base(tmp_path, tampered):
    base = tmp_path / "base"
    base.mkdir()
    (base / "link").symlink_to("/")
    path = tmp_path / "settings.json"
    path.write_text(json.dumps({"output_dir": tampered.format(base=base), "language": "en"}),
                    encoding="utf-8")
    loaded = PreferencesStore(path, base).load()
    assert loaded.output_dir == str(base.resolve()) and loaded.language == "en"
    inside = str(base / "pictures")
    path.write_text(json.dumps({"output_dir": inside}), encoding="utf-8")
    assert PreferencesStore(path, base).load().output_dir == inside
