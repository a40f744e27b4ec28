"""A custom download source on this machine or a private network is refused (SSRF), unless
the start-up flag allows it; every address a host name resolves to is checked."""

from __future__ import annotations

import socket

import pytest

from engine.downloads.sources import DownloadSource
from engine.errors import EngineError


def code_of(kind: str, endpoint: str, **options) -> str | None:
    try:
        DownloadSource.from_choice(kind, endpoint, **options)
    except EngineError as error:
        return error.code
    return None


def resolving_to(monkeypatch, *addresses: str) -> list[str]:
    """``socket.getaddrinfo`` answers ``addresses`` for every name; returns the names asked."""
    asked: list[str] = []

    def fake(host, port, *args, **kwargs):
        asked.append(host)
        return [(socket.AF_INET6 if ":" in a else socket.AF_INET, socket.SOCK_STREAM, 6, "",
                 (a, 0, 0, 0) if ":" in a else (a, 0)) for a in addresses]

    monkeypatch.setattr(socket, "getaddrinfo", fake)
    return asked


@pytest.mark.parametrize("endpoint", [
    "http://127.0.0.1:8080", "http://127.1", "http://0x7f000001", "http://2130706433",
    "http://[::1]:8080", "http://[::ffff:127.0.0.1]", "http://169.254.169.254/latest",
    "http://10.0.0.1", "http://192.168.1.2", "http://172.16.0.1", "http://0.0.0.0",
    "http://[fe80::1]", "http://[fd00::1]", "http://100.64.0.1",
])
def test_private_address_literals_are_refused(endpoint):
    assert code_of("custom", endpoint) == "private_endpoint"
    assert code_of("modelscope", endpoint) == "private_endpoint"


def test_a_name_that_resolves_to_loopback_is_refused(monkeypatch):
    asked = resolving_to(monkeypatch, "127.0.0.1")
    assert code_of("custom", "https://innocent.example.com/hub") == "private_endpoint"
    assert asked == ["innocent.example.com"]


def test_one_private_address_among_public_ones_is_enough_to_refuse(monkeypatch):
    resolving_to(monkeypatch, "93.184.216.34", "::1")
    assert code_of("custom", "https://mixed.example.com") == "private_endpoint"


def test_localhost_with_a_trailing_dot_is_refused(monkeypatch):
    asked = resolving_to(monkeypatch, "127.0.0.1")
    assert code_of("custom", "http://localhost.:8080") == "private_endpoint"
    assert asked == ["localhost."]


def test_a_public_address_is_accepted(monkeypatch):
    resolving_to(monkeypatch, "93.184.216.34", "2606:2800:220:1:248:1893:25c8:1946")
    source = DownloadSource.from_choice("custom", "https://hub.example.com/")
    assert source.endpoint == "https://hub.example.com"


def test_a_name_that_does_not_resolve_is_refused(monkeypatch):
    def fail(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "no such name")

    monkeypatch.setattr(socket, "getaddrinfo", fail)
    assert code_of("custom", "https://nowhere.invalid") == "endpoint_unresolved"


def test_the_start_up_flag_allows_private_addresses():
    source = DownloadSource.from_choice("custom", "http://127.0.0.1:8080", allow_private=True)
    assert source.endpoint == "http://127.0.0.1:8080"


def test_hf_endpoint_from_the_environment_is_the_operators_choice():
    source = DownloadSource.from_choice("", environ={"HF_ENDPOINT": "http://10.0.0.5:8080"})
    assert source.endpoint == "http://10.0.0.5:8080"


def test_the_cli_refuses_a_private_endpoint_without_the_flag(capsys, tmp_path):
    from engine.cli import main
    from locales import error_text

    code = main(["download", "pai-artist-large", "--source", "custom", "--endpoint",
                 "http://127.0.0.1:9", "--models-dir", str(tmp_path / "models"),
                 "--cache-dir", str(tmp_path / "cache")])
    assert code == 2
    assert error_text("zh-CN", "private_endpoint", {"host": "127.0.0.1"}) in capsys.readouterr().err
