"""画境 Huajing's launcher: ``python launch.py run|test|check [...]`` (``python launch.py`` for
the options). It runs on the system's Python with the standard library only, creates ``.venv``
and installs into it; the logic lives in the ``installer`` package.

This file parses on any Python 3, so that an old one gets a clear message instead of a
syntax error: no annotations, no f-strings before the version check.
"""

import os
import platform
import sys

# Older than this cannot import installer.python_version, which explains the rest.
OLDEST_PARSEABLE = (3, 7)
OLDEST_MESSAGE = ("画境需要 Python 3.11 到 3.13（推荐 3.12）：请从 "
                  "https://www.python.org/downloads/ 安装。\n"
                  "Huajing needs Python 3.11 to 3.13 (3.12 recommended): install it from "
                  "https://www.python.org/downloads/\n")


def main():
    # type: () -> int
    argv = sys.argv[1:]
    if sys.version_info < OLDEST_PARSEABLE:
        sys.stderr.write(OLDEST_MESSAGE)
        return 1
    from installer import python_version

    version = (sys.version_info[0], sys.version_info[1], sys.version_info[2])
    if not python_version.is_supported(version):
        # A supported Python installed beside this one runs the launcher instead.
        lang, system = python_version.lang_from(argv), platform.system()
        other = None
        if not os.environ.get(python_version.REEXEC_MARKER):
            other = python_version.find_supported_python(system)
        if other:
            print(python_version.rerun_notice(platform.python_version(), other, lang))
            return python_version.rerun_with(other, os.path.abspath(__file__), argv)
        sys.stderr.write(python_version.unsupported_message(
            version, sys.executable, system, lang) + "\n")
        return 1
    from installer.cli import main as launcher_main

    return launcher_main(argv)


if __name__ == "__main__":
    sys.exit(main())
