"""Every generation tab's width and height sliders, which a model switch sets together."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import gradio as gr


@dataclass(frozen=True)
class SizeSliders:
    pairs: tuple[tuple[Any, Any], ...]  # (width, height) per tab

    def components(self) -> list[Any]:
        return [slider for pair in self.pairs for slider in pair]

    def set_to(self, width: int, height: int) -> dict[Any, Any]:
        """Updates that set every tab's sliders to ``width`` x ``height``."""
        return {slider: value for width_slider, height_slider in self.pairs
                for slider, value in ((width_slider, width), (height_slider, height))}

    def unchanged(self) -> dict[Any, Any]:
        return {slider: gr.skip() for slider in self.components()}
