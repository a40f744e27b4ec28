"""What the user reads: the old-Python message (zh and en) and the advice after a failed pip
run, read from canned pip output."""

from __future__ import annotations

import pytest

from installer import messages, pip_errors, python_version
from installer.pip_errors import PipFailure, diagnose


def test_an_old_python_is_told_what_to_install_in_chinese() -> None:
    text = python_version.unsupported_message((3, 9, 6), "/usr/bin/python3", "Darwin", "zh")
    assert "3.11 到 3.13" in text and "3.9.6" in text and "/usr/bin/python3" in text
    assert "Python 3.12" in text and "python.org" in text and "brew install python@3.12" in text


def test_an_old_python_is_told_what_to_install_in_english() -> None:
    text = python_version.unsupported_message((3, 10, 12), "python", "Linux", "en")
    assert text.startswith("Huajing needs Python 3.11 to 3.13; this is Python 3.10.12")
    assert "python3.12-venv" in text and "python3.12 launch.py run" in text


def test_windows_users_are_told_to_tick_add_to_path_and_about_py() -> None:
    for lang in ("zh", "en"):
        text = python_version.unsupported_message((3, 14, 0), r"C:\py\python.exe", "Windows",
                                                  lang)
        assert "Add python.exe to PATH" in text and "py -3.12 launch.py run" in text


@pytest.mark.parametrize(("version", "supported"), [
    ((3, 10, 14), False), ((3, 11, 0), True), ((3, 12, 7), True), ((3, 13, 1), True),
    ((3, 14, 0), False), ((2, 7, 18), False),
])
def test_the_supported_range(version: tuple[int, ...], supported: bool) -> None:
    assert python_version.is_supported(version) is supported


def test_the_language_is_read_before_the_launcher_parses_anything() -> None:
    assert python_version.lang_from(["run", "--lang", "en"]) == "en"
    assert python_version.lang_from(["test", "--lang=en", "-q"]) == "en"
    assert python_version.lang_from(["run", "--demo"]) == "zh"


NO_MATCH = """\
Collecting torch==2.14.1+cu126
ERROR: Could not find a version that satisfies the requirement torch==2.14.1+cu126 (from versions: 2.13.0)
ERROR: No matching distribution found for torch==2.14.1+cu126
"""
BUILD = """\
Building wheels for collected packages: opencv-python-headless
  error: subprocess-exited-with-error
  × Building wheel for opencv-python-headless (pyproject.toml) did not run successfully.
  ERROR: Failed building wheel for opencv-python-headless
Failed to build opencv-python-headless
ERROR: Failed to build installable wheels for some pyproject.toml based projects (opencv-python-headless)
"""
OS_ERROR = """\
Installing collected packages: nvidia-cudnn-cu13
ERROR: Could not install packages due to an OSError: [WinError 5] Access is denied: 'C:\\\\x\\\\.venv\\\\Lib\\\\site-packages\\\\~orch\\\\lib\\\\torch_cpu.dll'
"""
DISK = """\
Collecting nvidia-cublas
ERROR: Could not install packages due to an OSError: [Errno 28] No space left on device
"""
NETWORK = """\
Collecting torch==2.14.1
  Downloading torch-2.14.1-cp311-cp311-manylinux_2_28_x86_64.whl (899.7 MB)
pip._vendor.urllib3.exceptions.ReadTimeoutError: HTTPSConnectionPool(host='files.pythonhosted.org', port=443): Read timed out.
"""
HASH = """\
ERROR: THESE PACKAGES DO NOT MATCH THE HASHES FROM THE REQUIREMENTS FILE. If you have updated the package versions, please update the hashes. Otherwise, examine the package contents carefully; someone may have tampered with them.
    gradio==6.31.0 from https://mirrors.example/packages/gradio-6.31.0-py3-none-any.whl:
        Expected sha256 1111
             Got        2222
"""
CONFLICT = """\
ERROR: Cannot install gradio==6.31.0 and pillow==13.0.0 because these package versions have conflicting dependencies.
ERROR: ResolutionImpossible: for help visit https://pip.pypa.io/en/latest/topics/dependency-resolution/
"""


@pytest.mark.parametrize(("log", "kind", "package"), [
    (NO_MATCH, pip_errors.NO_MATCH, "torch==2.14.1+cu126"),
    (BUILD, pip_errors.BUILD, "opencv-python-headless"),
    (OS_ERROR, pip_errors.OS_ERROR, "nvidia-cudnn-cu13"),
    (DISK, pip_errors.DISK_FULL, "nvidia-cublas"),
    (NETWORK, pip_errors.NETWORK, "torch==2.14.1"),
    (HASH, pip_errors.HASH, "gradio==6.31.0"),
    (CONFLICT, pip_errors.CONFLICT, "gradio==6.31.0 and pillow==13.0.0"),
    ("Collecting x\nsomething else\n", pip_errors.UNKNOWN, "x"),
])
def test_a_failed_pip_run_names_its_cause_and_package(log: str, kind: str,
                                                      package: str) -> None:
    assert diagnose(log) == PipFailure(kind, package)


@pytest.mark.parametrize(("kind", "zh", "en"), [
    (pip_errors.NO_MATCH, "--pip-index", "Python 3.11-3.13"),
    (pip_errors.NO_MATCH, "--torch cpu", "--torch cpu"),
    (pip_errors.BUILD, "Python 3.11", "prebuilt wheel"),
    (pip_errors.NETWORK, "pypi.tuna.tsinghua.edu.cn", "--pip-index"),
    (pip_errors.NETWORK, "--torch-index", "--torch-index"),
    (pip_errors.OS_ERROR, "磁盘空间", "disk space"),
    (pip_errors.DISK_FULL, "磁盘空间不足", "disk is full"),
    (pip_errors.HASH, "pip cache purge", "another mirror"),
    (pip_errors.CONFLICT, "删除 .venv", "delete .venv"),
    (pip_errors.UNKNOWN, "--torch cpu", "--pip-index"),
])
def test_each_failure_says_what_to_try(kind: str, zh: str, en: str) -> None:
    assert zh in messages.failure_advice(PipFailure(kind, None), "zh")
    assert en in messages.failure_advice(PipFailure(kind, None), "en")
