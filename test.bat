@echo off
rem Installs what the tests need, runs the quality gate and the tests: launch.py does all the work, with the newest Python the py launcher knows.
where py >nul 2>nul
if errorlevel 1 goto no_py
py -3 "%~dp0launch.py" test %*
exit /b %errorlevel%
:no_py
chcp 65001 >nul
echo 找不到 Python 启动器 py：请从 https://www.python.org/downloads/windows/ 安装 Python 3.12（安装时勾选“Add python.exe to PATH”）。
echo The Python launcher "py" was not found: install Python 3.12 from https://www.python.org/downloads/windows/ (tick "Add python.exe to PATH").
exit /b 1
