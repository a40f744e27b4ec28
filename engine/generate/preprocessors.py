"""Control-map preprocessors: Canny (OpenCV), DPT depth (as PAI trained with) and controlnet-aux.

Each turns an RGB image into an RGB control map of the same size, which the UI can show
before generating.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
from PIL import Image

from engine.control_types import CONTROL_TYPES
from engine.errors import InvalidRequest
from engine.generate.aux_annotators import AUX_ANNOTATORS, AuxAnnotators
from engine.requests import ControlSpec

if TYPE_CHECKING:
    from transformers import Pipeline

logger = logging.getLogger(__name__)

DEPTH_MODEL_REPO = "Intel/dpt-large"


def canny_map(image: Image.Image, low: int, high: int) -> Image.Image:
    import cv2

    edges = cv2.Canny(np.asarray(image.convert("RGB")), low, high)
    return Image.fromarray(np.stack([edges] * 3, axis=-1))


class Preprocessors:
    """Runs preprocessors, loading each model once. ``resolve_folder`` finds a repo on disk."""

    def __init__(self, resolve_folder: Callable[[str], Path], aux: AuxAnnotators,
                 device: str = "cpu") -> None:
        self._resolve_folder = resolve_folder
        self._aux = aux
        self._device = device
        self._depth: Pipeline | None = None
        self._lock = threading.Lock()

    def _depth_estimator(self):
        with self._lock:
            if self._depth is None:
                from transformers import pipeline

                folder = self._resolve_folder(DEPTH_MODEL_REPO)
                self._depth = pipeline("depth-estimation", model=str(folder), device=self._device)
            return self._depth

    def depth_map(self, image: Image.Image) -> Image.Image:
        """DPT relative depth scaled to 0-255 and stacked to 3 channels, as PAI trained."""
        depth = self._depth_estimator()(image.convert("RGB"))["depth"]
        return depth.convert("RGB").resize(image.size)

    def run(self, control: ControlSpec, image: Image.Image, resolution: int = 512) -> Image.Image:
        if control.control_type == "canny":
            return canny_map(image, control.low_threshold, control.high_threshold)
        if control.control_type == "depth":
            return self.depth_map(image)
        if control.control_type in AUX_ANNOTATORS:
            return self._aux.run(control.control_type, image, resolution)
        raise InvalidRequest("unknown_control_type", name=control.control_type,
                             known=", ".join(CONTROL_TYPES))
