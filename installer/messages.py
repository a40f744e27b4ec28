"""Everything the launcher tells the user, in Chinese (the default) and English (``--lang en``)."""

from __future__ import annotations

from installer import pip_errors
from installer.torch_choice import TorchChoice

_TEXTS: dict[str, tuple[str, str]] = {
    "step": ("[{number}/{total}] {what}", "[{number}/{total}] {what}"),
    "venv-create": ("创建虚拟环境 {venv}（Python {python}）",
                    "Creating the virtual environment {venv} (Python {python})"),
    "venv-repair": ("虚拟环境 {venv} 已损坏（{why}），正在重建：常见原因是文件夹被移动或 "
                    "Python 被升级",
                    "The virtual environment {venv} is broken ({why}); recreating it (usually the "
                    "folder moved or Python was upgraded)"),
    "venv-failed": ("无法创建虚拟环境：{detail}",
                    "Could not create the virtual environment: {detail}"),
    "venv-no-ensurepip": ("这个 Python 缺少 venv/ensurepip 模块。Debian/Ubuntu 上请先运行："
                          "sudo apt install python3-venv（或 python{version}-venv）",
                          "This Python lacks the venv/ensurepip module. On Debian/Ubuntu run: "
                          "sudo apt install python3-venv (or python{version}-venv)"),
    "torch-choice": ("选择 torch：{build}（{why}）", "Choosing torch: {build} ({why})"),
    "torch-step": ("安装 torch {version}（{build}）…", "Installing torch {version} ({build})…"),
    "torch-replace": ("已安装的 torch 是 {installed}，换成 {build}（只重装 torch 与 torchvision）…",
                      "The installed torch is {installed}; switching to {build} (torch and "
                      "torchvision only)…"),
    "requirements-step": ("安装 {file} 中的依赖…", "Installing the packages in {file}…"),
    "up-to-date": ("依赖已是最新（{file} 与 torch 构建均未改变）",
                   "Everything is up to date ({file} and the torch build are unchanged)"),
    "pip-upgrade-failed": ("pip 升级失败，继续使用现有版本", "Could not upgrade pip; going on with "
                           "the installed one"),
    "driver-too-old": ("NVIDIA 驱动 {driver} 太旧，没有可用的 CUDA 版 torch（至少需要 {minimum}）："
                       "先用 CPU 运行；请从 https://www.nvidia.cn/drivers/ 更新驱动后重新运行",
                       "NVIDIA driver {driver} is too old for any CUDA build of torch (at least "
                       "{minimum} is needed): running on the CPU for now; update the driver from "
                       "https://www.nvidia.com/drivers/ and run again"),
    "table-stale": ("提示：requirements 中的 torch {pinned} 不属于启动器数据表的 {series} 系列，"
                    "自动选择可能不准确（可用 --torch 指定）",
                    "Note: torch {pinned} in the requirements is not the {series} series the "
                    "launcher's table describes; the automatic choice may be off (use --torch)"),
    "quality-gate": ("代码检查：{tool}", "Quality gate: {tool}"),
    "system-packages": ("检查测试所需的系统软件包（chromium、中文字体）",
                        "Checking the system packages the tests need (chromium, CJK fonts)"),
    "system-packages-failed": ("系统软件包安装失败（见上方信息）",
                               "Installing the system packages failed (see above)"),
    "unknown-build": ("不认识的 torch 构建“{value}”：可用 auto、cpu、default、cuXXX（如 cu126）、"
                      "rocmX.Y（如 rocm7.2）", "Unknown torch build \"{value}\": use auto, cpu, "
                      "default, cuXXX (e.g. cu126) or rocmX.Y (e.g. rocm7.2)"),
    "missing-value": ("{option} 需要一个值", "{option} needs a value"),
    "no-requirements": ("找不到依赖文件 {file}", "Requirements file not found: {file}"),
    # Why a build was chosen.
    "why-override": ("按 --torch / HUAJING_TORCH 指定", "as --torch / HUAJING_TORCH asks"),
    "why-nvidia": ("NVIDIA 驱动 {driver}，从 PyTorch 的索引 {index} 安装",
                   "NVIDIA driver {driver}, from PyTorch's index {index}"),
    "why-nvidia-pypi": ("NVIDIA 驱动 {driver}，默认索引（PyPI 或你的镜像）上的 torch 即是 CUDA 版",
                        "NVIDIA driver {driver}; the default index (PyPI or your mirror) serves "
                        "the CUDA build"),
    "why-nvidia-driver-too-old": ("NVIDIA 驱动 {driver} 太旧", "NVIDIA driver {driver} is too old"),
    "why-amd": ("AMD 显卡，从 PyTorch 的 ROCm 索引 {index} 安装",
                "AMD GPU, from PyTorch's ROCm index {index}"),
    "why-apple": ("Apple 芯片，默认索引上的 torch 支持 MPS",
                  "Apple Silicon; the default build supports MPS"),
    "why-cpu": ("未检测到可用的 NVIDIA/AMD 显卡，使用 CPU", "no usable NVIDIA/AMD GPU found; CPU"),
    # A failed install.
    "failed": ("安装失败（pip 退出码 {code}）：{what}",
               "The install failed (pip exit code {code}): {what}"),
    "failed-package": ("出问题的包：{package}", "The package concerned: {package}"),
    "failed-log": ("pip 的完整日志：{log}", "pip's full log: {log}"),
    "failed-resume": ("再次运行同一条命令即可从中断处继续（已下载的文件在 pip 缓存中）",
                      "Running the same command again resumes (downloaded files stay in pip's "
                      "cache)"),
    f"fail-{pip_errors.NO_MATCH}": (
        "没有找到匹配的版本。可能原因：镜像尚未同步（换一个镜像：--pip-index URL）、"
        "Python 版本没有对应的安装包（请用 Python 3.11–3.13）、或所选 torch 构建不提供此版本"
        "（可试 --torch cpu 或 --torch default）",
        "No matching version was found. Possible causes: the mirror is not in sync (try another "
        "with --pip-index URL), no wheel for this Python (use Python 3.11-3.13), or the chosen "
        "torch build lacks this version (try --torch cpu or --torch default)"),
    f"fail-{pip_errors.BUILD}": (
        "编译安装包失败：这个 Python 版本或平台没有预编译的安装包。请使用 Python 3.11 或 3.12，"
        "或换一个同步完整的镜像（--pip-index URL）",
        "Building a package failed: there is no prebuilt wheel for this Python or platform. "
        "Use Python 3.11 or 3.12, or a complete mirror (--pip-index URL)"),
    f"fail-{pip_errors.OS_ERROR}": (
        "写入文件失败（系统错误）：检查磁盘空间与文件夹权限；Windows 上请关闭占用 .venv 的程序、"
        "把仓库放在较短的路径下，或暂时让杀毒软件放行",
        "Writing files failed (an OS error): check disk space and folder permissions; on Windows "
        "close programs using .venv, use a shorter folder path, or let the antivirus allow it"),
    f"fail-{pip_errors.DISK_FULL}": (
        "磁盘空间不足：torch 与依赖约需 6–8 GB，请清理后重新运行",
        "The disk is full: torch and its dependencies need about 6-8 GB; free some space and "
        "run again"),
    f"fail-{pip_errors.NETWORK}": (
        "网络连接失败或超时：检查网络与代理；在中国大陆可换用镜像（--pip-index "
        "https://pypi.tuna.tsinghua.edu.cn/simple 等，见 README），PyTorch 索引可用 --torch-index",
        "The network failed or timed out: check the connection and proxy; a closer mirror may "
        "help (--pip-index URL, see the README), and --torch-index for PyTorch's index"),
    f"fail-{pip_errors.HASH}": (
        "下载的文件校验不一致（可能下载损坏或镜像文件有误）：重新运行，或运行 "
        ".venv 中的 python -m pip cache purge 后再试，或换一个镜像",
        "A downloaded file failed its hash check (a broken download or mirror): run again, or "
        "clear pip's cache (python -m pip cache purge in .venv), or use another mirror"),
    f"fail-{pip_errors.CONFLICT}": (
        "依赖版本冲突：.venv 中可能装过其他版本；删除 .venv 后重新运行",
        "Conflicting package versions: .venv may hold other versions; delete .venv and run "
        "again"),
    f"fail-{pip_errors.UNKNOWN}": (
        "请查看上方 pip 的输出；可试：换镜像（--pip-index URL）、检查网络、使用 Python 3.11–3.13、"
        "或 --torch cpu",
        "See pip's output above; things to try: a mirror (--pip-index URL), the network, "
        "Python 3.11-3.13, or --torch cpu"),
}


def text(key: str, lang: str, **params: object) -> str:
    zh, en = _TEXTS[key]
    return (en if lang == "en" else zh).format(**params)


def build_label(choice: TorchChoice, lang: str) -> str:
    """ "CUDA 12.6", "ROCm 7.2", "CPU" or the default index's build."""
    if choice.build.startswith("cu"):
        digits = choice.build[2:]
        return f"CUDA {digits[:-1]}.{digits[-1]}"
    if choice.build.startswith("rocm"):
        return "ROCm " + choice.build[4:]
    if choice.build == "cpu":
        return "CPU"
    if choice.cuda:
        return f"CUDA {choice.cuda}"
    return "默认构建" if lang != "en" else "the default build"


def failure_advice(failure: pip_errors.PipFailure, lang: str) -> str:
    return text(f"fail-{failure.kind}", lang)
