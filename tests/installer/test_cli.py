"""The launcher's arguments: its own options are taken out wherever they stand (and read
from the environment); the rest goes to app.py or pytest in order."""

from __future__ import annotations

from pathlib import Path

import pytest

from installer import cli
from installer.cli import UsageError, parse_args


def test_run_passes_the_app_arguments_through_in_order() -> None:
    args = parse_args(["run", "--port", "7861", "--torch", "cpu", "--demo", "--lang", "en"], {})
    assert args.passthrough == ["--port", "7861", "--demo", "--lang", "en"]
    assert (args.torch, args.lang) == ("cpu", "en")


def test_test_keeps_lang_for_itself_and_passes_pytest_arguments() -> None:
    args = parse_args(["test", "-q", "--lang=en", "--pip-index=https://m/simple", "-k", "x"], {})
    assert args.passthrough == ["-q", "-k", "x"]
    assert (args.lang, args.pip_index) == ("en", "https://m/simple")


def test_the_environment_sets_options_and_flags_win() -> None:
    environment = {"HUAJING_TORCH": "cu126", "HUAJING_PIP_INDEX": "https://env/simple",
                   "HUAJING_TORCH_INDEX": "https://mirror/whl"}
    args = parse_args(["run"], environment)
    assert (args.torch, args.pip_index, args.torch_index) == \
        ("cu126", "https://env/simple", "https://mirror/whl")
    assert parse_args(["run", "--torch", "cpu"], environment).torch == "cpu"


def test_after_a_double_dash_everything_goes_to_pytest() -> None:
    assert parse_args(["test", "--", "--torch", "x"], {}).passthrough == ["--torch", "x"]


@pytest.mark.parametrize("argv", [[], ["serve"], ["run", "--torch"]])
def test_usage_errors(argv: list[str]) -> None:
    with pytest.raises(UsageError):
        parse_args(argv, {})


def test_each_command_installs_its_requirements_file() -> None:
    assert cli.install_request(parse_args(["run"], {})).requirements.name == "requirements.txt"
    assert cli.install_request(parse_args(["test"], {})).requirements.name == \
        "requirements-dev.txt"
    request = cli.install_request(parse_args(["install", "--requirements", "r.txt",
                                              "--venv", "v"], {}))
    assert (request.requirements, request.venv) == (Path("r.txt"), Path("v"))


def test_an_unknown_build_is_refused_before_anything_is_installed(
        capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["install", "--torch", "cuda12"]) == 2
    assert "cuda12" in capsys.readouterr().err
