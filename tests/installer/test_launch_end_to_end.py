"""``python launch.py install`` for real, offline and cheap: a temporary venv and a tiny
requirements file that pip can satisfy with no index (pip itself). A second run installs
nothing (the stamp), a changed file reinstalls, a broken venv is rebuilt, a failed install
names its package and leaves no stamp."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from installer.venv_setup import venv_python

ROOT = Path(__file__).resolve().parents[2]


def launch(tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    environment = {**os.environ, "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"}
    return subprocess.run(
        [sys.executable, str(ROOT / "launch.py"), "install", "--venv", str(tmp_path / "venv"),
         "--requirements", str(tmp_path / "requirements.txt"), "--torch", "default", *args],
        capture_output=True, text=True, env=environment, timeout=300)


@pytest.fixture
def requirements(tmp_path: Path) -> Path:
    path = tmp_path / "requirements.txt"
    path.write_text("pip>=20\n", encoding="utf-8")
    return path


def test_install_once_then_only_when_something_changed(tmp_path: Path,
                                                       requirements: Path) -> None:
    first = launch(tmp_path)
    assert first.returncode == 0, first.stdout + first.stderr
    assert "创建虚拟环境" in first.stdout and "[1/1] 安装 requirements.txt 中的依赖" in first.stdout
    stamp = tmp_path / "venv" / ".installed-requirements.txt"
    assert "pip>=20" in stamp.read_text(encoding="utf-8")

    again = launch(tmp_path, "--lang", "en")
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Everything is up to date" in again.stdout and "Installing" not in again.stdout

    requirements.write_text("pip>=21\n", encoding="utf-8")
    changed = launch(tmp_path)
    assert "[1/1] 安装" in changed.stdout and "pip>=21" in stamp.read_text(encoding="utf-8")


def test_a_broken_venv_is_rebuilt(tmp_path: Path, requirements: Path) -> None:
    assert launch(tmp_path).returncode == 0
    python = venv_python(tmp_path / "venv", platform.system())
    python.unlink()  # as after the folder moved or the Python that made it was removed
    repaired = launch(tmp_path)
    assert repaired.returncode == 0, repaired.stdout + repaired.stderr
    assert "已损坏" in repaired.stdout and "正在重建" in repaired.stdout
    assert python.exists() and "[1/1] 安装" in repaired.stdout


def test_a_failed_install_names_the_package_and_leaves_no_stamp(tmp_path: Path,
                                                                 requirements: Path) -> None:
    requirements.write_text("huajing-no-such-package==1.0\n", encoding="utf-8")
    failed = launch(tmp_path, "--lang", "en")
    assert failed.returncode != 0
    assert "huajing-no-such-package==1.0" in failed.stderr
    assert "--pip-index" in failed.stderr and "resumes" in failed.stderr
    assert not (tmp_path / "venv" / ".installed-requirements.txt").exists()
