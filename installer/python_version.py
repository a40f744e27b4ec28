"""Which Pythons the launcher accepts, the message for any other, and where to find a
supported one. Imported by ``launch.py`` before the version is known to be supported, so this
module parses on Python 3.7 and later (the ``annotations`` future keeps annotations
unevaluated; no syntax or standard-library names newer than 3.7 are used).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys

# 3.11: the app's code uses its features. 3.13: the newest Python that every pinned package
# publishes wheels for (a newer one would build some from source, or find none).
SUPPORTED_MIN = (3, 11)
SUPPORTED_MAX = (3, 13)
RECOMMENDED = (3, 12)
# Set while the launcher runs itself again under a supported Python: never loop.
REEXEC_MARKER = "HUAJING_LAUNCHER_REEXEC"
PROBE_TIMEOUT_S = 20

_MESSAGES = {
    "zh": (
        "画境需要 Python {low} 到 {high}，当前是 Python {current}（{executable}）。\n"
        "请安装 Python {recommended}：{how}\n"
        "装好后重新运行{rerun}。"
    ),
    "en": (
        "Huajing needs Python {low} to {high}; this is Python {current} ({executable}).\n"
        "Please install Python {recommended}: {how}\n"
        "Then run it again{rerun}."
    ),
}
_HOW = {
    ("zh", "Windows"): "从 https://www.python.org/downloads/windows/ 下载安装程序，安装时勾选"
                       "“Add python.exe to PATH”",
    ("en", "Windows"): "download the installer from https://www.python.org/downloads/windows/ "
                       "and tick \"Add python.exe to PATH\"",
    ("zh", "Darwin"): "从 https://www.python.org/downloads/macos/ 下载，或 brew install "
                      "python@{recommended}",
    ("en", "Darwin"): "from https://www.python.org/downloads/macos/, or brew install "
                      "python@{recommended}",
    ("zh", "Linux"): "用系统的包管理器（例如 sudo apt install python{recommended} "
                     "python{recommended}-venv），或从 https://www.python.org/downloads/ 获取",
    ("en", "Linux"): "with your package manager (e.g. sudo apt install python{recommended} "
                     "python{recommended}-venv) or from https://www.python.org/downloads/",
}
_RERUN = {
    ("zh", "Windows"): "（装了多个版本时：py -{recommended} launch.py run）",
    ("en", "Windows"): " (with several versions installed: py -{recommended} launch.py run)",
    ("zh", "other"): "（装了多个版本时：python{recommended} launch.py run）",
    ("en", "other"): " (with several versions installed: python{recommended} launch.py run)",
}


_RERUN_NOTICE = {
    "zh": "当前 Python {current} 不受支持，改用 {python} 运行",
    "en": "Python {current} is not supported; running again with {python}",
}


def lang_from(argv: list[str]) -> str:
    """The launcher's ``--lang`` before its argument parser can run: "en" or "zh"."""
    pairs = [(argv[number], argv[number + 1]) for number in range(len(argv) - 1)]
    return "en" if "--lang=en" in argv or ("--lang", "en") in pairs else "zh"


def rerun_notice(current: str, python: str, lang: str) -> str:
    return _RERUN_NOTICE["en" if lang == "en" else "zh"].format(current=current, python=python)


def _dotted(version: tuple[int, ...]) -> str:
    return ".".join(str(part) for part in version)


def is_supported(version: tuple[int, ...]) -> bool:
    return SUPPORTED_MIN <= tuple(version[:2]) <= SUPPORTED_MAX


def unsupported_message(version: tuple[int, ...], executable: str, system: str,
                        lang: str) -> str:
    """What to install, in the user's language (zh unless ``en``), for this operating system."""
    lang = "en" if lang == "en" else "zh"
    recommended = _dotted(RECOMMENDED)
    how = _HOW.get((lang, system), _HOW[(lang, "Linux")])
    rerun = _RERUN[(lang, "Windows" if system == "Windows" else "other")]
    return _MESSAGES[lang].format(
        low=_dotted(SUPPORTED_MIN), high=_dotted(SUPPORTED_MAX), current=_dotted(version[:3]),
        executable=executable, recommended=recommended,
        how=how.format(recommended=recommended), rerun=rerun.format(recommended=recommended))


def _candidates_newest_first() -> list[tuple[int, int]]:
    # The recommended version first: it is what the message asks users to install.
    others = [(3, minor) for minor in range(SUPPORTED_MAX[1], SUPPORTED_MIN[1] - 1, -1)]
    return [RECOMMENDED] + [version for version in others if version != RECOMMENDED]


def _windows_python(version: tuple[int, int]) -> str | None:
    """The ``py`` launcher knows every python.org install, PATH or not."""
    if shutil.which("py") is None:
        return None
    try:
        found = subprocess.run(["py", "-" + _dotted(version), "-c",
                                "import sys; print(sys.executable)"],
                               capture_output=True, text=True, timeout=PROBE_TIMEOUT_S)
    except (OSError, subprocess.SubprocessError):
        return None
    if found.returncode != 0:
        return None
    return found.stdout.strip() or None


def find_supported_python(system: str) -> str | None:
    """Another installed Python in the supported range, for running the launcher again."""
    for version in _candidates_newest_first():
        if system == "Windows":
            found = _windows_python(version)
        else:
            found = shutil.which("python" + _dotted(version))
        if found:
            return found
    return None


def rerun_with(python: str, script: str, args: list[str]) -> int:
    """Runs the launcher again under ``python``; its exit status becomes ours."""
    environment = dict(os.environ)
    environment[REEXEC_MARKER] = "1"
    command = [python, script] + list(args)
    if sys.platform != "win32":
        os.execve(python, command, environment)
    return subprocess.call(command, env=environment)
