"""The control types a ControlNet job may name, torch-free, so the validator, the UI and the API
list the same ones the engine's preprocessors run (``engine.generate.preprocessors``)."""

from __future__ import annotations

# controlnet-aux detectors (``engine.generate.aux_annotators.AUX_ANNOTATORS`` has one each).
AUX_CONTROL_TYPES: tuple[str, ...] = (
    "lineart", "lineart_coarse", "softedge_hed", "softedge_pidinet", "mlsd", "depth_midas",
    "shuffle",
)
CONTROL_TYPES: tuple[str, ...] = ("canny", "depth", *AUX_CONTROL_TYPES)
