"""The pip command lines: always the venv's python -m pip; index options only when asked;
torch and torchvision first, alone, from PyTorch's index beside the user's."""

from __future__ import annotations

from pathlib import Path

from installer import pip_commands
from installer.requirements import Requirements
from installer.torch_choice import TorchChoice

PYTHON = Path("/project/.venv/bin/python")
REQUIREMENTS = Requirements(Path("requirements.txt"), "",
                            {"torch": "2.14.1", "torchvision": "0.29.1"})
CU126 = TorchChoice("cu126", "https://download.pytorch.org/whl/cu126", "nvidia")
DEFAULT = TorchChoice("default", None, "cpu")


def test_every_command_runs_the_venvs_python() -> None:
    commands = [
        pip_commands.upgrade_pip(PYTHON, None),
        pip_commands.install_torch(PYTHON, REQUIREMENTS, CU126, None, False, []),
        pip_commands.install_requirements(PYTHON, Path("requirements.txt"), None, []),
    ]
    assert all(command[:3] == [str(PYTHON), "-m", "pip"] for command in commands)


def test_no_index_option_unless_asked() -> None:
    for command in (pip_commands.upgrade_pip(PYTHON, None),
                    pip_commands.install_requirements(PYTHON, Path("r.txt"), None, []),
                    pip_commands.install_torch(PYTHON, REQUIREMENTS, DEFAULT, None, False, [])):
        assert not any("index" in part for part in command)


def test_a_pip_mirror_becomes_the_index_url() -> None:
    mirror = "https://pypi.tuna.tsinghua.edu.cn/simple"
    command = pip_commands.install_requirements(PYTHON, Path("r.txt"), mirror, [])
    assert command[command.index("--index-url") + 1] == mirror
    torch = pip_commands.install_torch(PYTHON, REQUIREMENTS, CU126, mirror, False, [])
    assert torch[torch.index("--index-url") + 1] == mirror


def test_torch_from_pytorchs_index_pins_the_local_build() -> None:
    command = pip_commands.install_torch(PYTHON, REQUIREMENTS, CU126, None, False, [])
    assert command[-2:] == ["torch==2.14.1+cu126", "torchvision==0.29.1+cu126"]
    assert command[command.index("--extra-index-url") + 1] == CU126.index_url
    assert "--index-url" not in command  # the user's own index still serves the dependencies
    assert "--no-deps" not in command


def test_replacing_a_build_reinstalls_the_pair_alone() -> None:
    command = pip_commands.install_torch(PYTHON, REQUIREMENTS, DEFAULT, None, True, [])
    assert "--force-reinstall" in command and "--no-deps" in command
    assert command[-2:] == ["torch==2.14.1", "torchvision==0.29.1"]


def test_resume_retries_only_where_pip_has_them(tmp_path: Path) -> None:
    log = tmp_path / "pip-log.txt"
    assert "--resume-retries" in pip_commands.download_options((25, 1), log)
    assert "--resume-retries" in pip_commands.download_options((26, 3), log)
    assert "--resume-retries" not in pip_commands.download_options((24, 0), log)
    assert pip_commands.download_options((23, 2, 1), log) == ["--log", str(log)]


def test_pip_versions_are_read() -> None:
    assert pip_commands.parse_pip_version("pip 26.3 from /x (python 3.11)") == (26, 3)
    assert pip_commands.parse_pip_version("pip 25.1.1 from /x") == (25, 1, 1)
    assert pip_commands.parse_pip_version("No module named pip") == (0,)
