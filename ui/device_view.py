"""What generation runs on: a read-only 设备 section in 设置, and a one-line banner at the top
of the page only when it matters (an NVIDIA GPU that torch cannot use, with the command that
fixes it). Both read the backend's ``DeviceReport`` through the service, never torch.

The page is served before the engine has started, so the report may not exist yet when the
page is built or opened: each page load asks again (``session_view``), and a timer asks every
few seconds until the engine has started (or failed to).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import Any

import gradio as gr

from engine.device_report import BYTES_PER_GB, DeviceReport
from engine.errors import EngineError
from engine.interfaces import ImageServiceLike
from engine.memory_plan import AUTO, ON_DEVICE, ModelMemory
from locales import error_text, translate, warning_text
from ui.texts import Texts

logger = logging.getLogger(__name__)

POLL_S = 2.0  # while the engine starts: torch imports in seconds, so a page waits a few ticks

# The report, why there is none (the engine failed to start), or None while it starts.
DeviceReading = DeviceReport | EngineError | None


def read_device(service: ImageServiceLike) -> DeviceReading:
    try:
        return service.device_report()
    except EngineError as error:
        return error


def has_problem(reading: DeviceReading) -> bool:
    return isinstance(reading, DeviceReport) and reading.problem is not None


def banner_markdown(reading: DeviceReading, language: str) -> str:
    """The problem in one line, its command as code to copy; empty when there is none."""
    if not isinstance(reading, DeviceReport) or reading.problem is None:
        return ""
    params = dict(reading.problem.params)
    params["command"] = f"`{params.get('command', '')}`"
    return "⚠️ " + warning_text(language, reading.problem.code, params)


def details_markdown(reading: DeviceReading, language: str) -> str:
    if reading is None:
        return translate(language, "device.starting")
    if isinstance(reading, EngineError):
        return error_text(language, reading.code, reading.params)
    lines = [translate(language, "device.runs_on", device=reading.device,
                       precision=reading.precision)]
    if reading.gpu_name is not None:
        lines.append(translate(language, "device.gpu", name=reading.gpu_name,
                               memory=reading.gpu_memory_gb or "?"))
    elif reading.device != "cpu":  # MPS: torch gives no name
        lines.append(translate(language, "device.gpu_unnamed", device=reading.device))
    else:
        lines.append(translate(language, "device.no_gpu"))
    lines.append(translate(language, "device.torch", version=reading.torch_version,
                           build=reading.torch_build))
    lines += [memory_line(loaded, reading.device, language) for loaded in reading.models]
    return "\n\n".join(lines)


def _gb(size: int | None) -> str:
    return f"{size / BYTES_PER_GB:.1f}" if size is not None else "?"


def memory_line(loaded: ModelMemory, device: str, language: str) -> str:
    """e.g. "pai-artist-large：自动：模型 CPU 卸载（可用显存 3.2 GB，需要 4.1 GB）"."""
    choice = loaded.choice
    if choice.mode == ON_DEVICE:
        return translate(language, "device.memory_on_device", model=loaded.model, device=device)
    mode = translate(language, f"device.mode_{choice.mode}")
    if choice.requested == AUTO:
        return translate(language, "device.memory_auto", model=loaded.model, mode=mode,
                         free=_gb(choice.free_bytes), needed=_gb(choice.needed_bytes))
    return translate(language, "device.memory_fixed", model=loaded.model, mode=mode)


@dataclass(frozen=True)
class DeviceView:
    banner: Any  # gr.Markdown at the top of the page, visible only with a problem
    details: Any  # gr.Markdown in 设置
    poll: Any  # gr.Timer, active while the engine starts
    service: ImageServiceLike

    def changes(self, language: str) -> dict[Any, dict[str, Any]]:
        """Per component, what it shows now in ``language``."""
        reading = read_device(self.service)
        return {self.banner: {"value": banner_markdown(reading, language),
                              "visible": has_problem(reading)},
                self.details: {"value": details_markdown(reading, language)}}

    def settled(self) -> bool:
        """The engine has started or failed: nothing more to wait for."""
        return read_device(self.service) is not None


def wire_device_refresh(tab: Any, view: DeviceView, language: Any) -> None:
    """Opening 设置 shows the device as it is now: the memory mode of each model loaded since
    the page opened (``language``: the page's language radio)."""

    def refresh(chosen: str) -> str:
        return details_markdown(read_device(view.service), chosen)

    tab.select(refresh, inputs=language, outputs=view.details, queue=False,
               show_progress="hidden", api_visibility="private")


def build_device_banner(texts: Texts, service: ImageServiceLike) -> Any:
    reading = read_device(service)
    banner = gr.Markdown(banner_markdown(reading, texts.language), visible=has_problem(reading),
                         elem_id="device-banner")
    return texts.bind(banner, value=lambda language: banner_markdown(read_device(service),
                                                                     language))


def build_device_section(texts: Texts, service: ImageServiceLike, banner: Any) -> DeviceView:
    """The 设备 section of 设置; ``banner`` is the page's, built with the header."""
    texts.make(gr.Markdown, text="device.heading")
    reading = read_device(service)
    details = gr.Markdown(details_markdown(reading, texts.language), elem_id="device-details")
    texts.bind(details, value=lambda language: details_markdown(read_device(service), language))
    poll = gr.Timer(POLL_S, active=reading is None)
    return DeviceView(banner, details, poll, service)
