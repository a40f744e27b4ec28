"""ControlNet preprocessors ("annotators") from controlnet-aux.

Each detector's weights are a manifest model of kind ``annotator`` (e.g. ``annotator-lineart``:
``sk_model.pth`` and ``sk_model2.pth`` of ``lllyasviel/Annotators``), downloaded like any other
model: only when the user agrees, from the chosen source, SHA-256 verified, never with the hub
token sent to a mirror. Here a detector is built from that verified local folder only
(``XxxDetector.from_pretrained(folder)``, controlnet-aux's local-folder branch), so it never
reaches the network itself, whatever ``HF_HUB_OFFLINE`` says; weights that are not on disk are
``model_not_downloaded`` naming the model to download. Detectors are loaded on first use and kept.

``controlnet_aux`` is imported inside functions only: importing it takes seconds (it pulls in
timm, scikit-image and every detector), which the UI should not pay until a preprocessor runs.
"""

from __future__ import annotations

import logging
import threading
import zlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
from PIL import Image

from engine.errors import InvalidRequest, ModelError

logger = logging.getLogger(__name__)

ANNOTATORS_REPO = "lllyasviel/Annotators"  # where the manifest's annotator weights come from
MIN_RESOLUTION = 64  # controlnet-aux rounds sizes to multiples of 64; below that they hit 0
MAX_RESOLUTION = 2048


@dataclass(frozen=True)
class AuxAnnotator:
    """How to build and call one controlnet-aux detector."""

    detector_class: str  # attribute of the ``controlnet_aux`` package
    # The manifest id of its weights (built with from_pretrained(folder)); None: built plainly.
    weights: str | None
    # Extra keyword arguments of the detector's __call__, as pairs so the spec stays hashable.
    call_kwargs: tuple[tuple[str, Any], ...] = ()
    # The detector draws from numpy's global generator; run() seeds it from the input image.
    uses_numpy_random: bool = False


AUX_ANNOTATORS: Mapping[str, AuxAnnotator] = MappingProxyType({
    "lineart": AuxAnnotator("LineartDetector", "annotator-lineart"),
    "lineart_coarse": AuxAnnotator("LineartDetector", "annotator-lineart", (("coarse", True),)),
    "softedge_hed": AuxAnnotator("HEDdetector", "annotator-hed"),
    "softedge_pidinet": AuxAnnotator("PidiNetDetector", "annotator-pidinet"),
    "mlsd": AuxAnnotator("MLSDdetector", "annotator-mlsd"),
    "depth_midas": AuxAnnotator("MidasDetector", "annotator-midas"),
    "shuffle": AuxAnnotator("ContentShuffleDetector", None, uses_numpy_random=True),
})

# numpy's global generator is process-wide: seeding and drawing must not interleave.
_NUMPY_RANDOM_LOCK = threading.Lock()


def get_annotator(name: str) -> AuxAnnotator:
    try:
        return AUX_ANNOTATORS[name]
    except KeyError:
        raise InvalidRequest("unknown_preprocessor", name=name) from None


def _check_resolution(resolution: int) -> None:
    if not MIN_RESOLUTION <= int(resolution) <= MAX_RESOLUTION:
        raise InvalidRequest("invalid_resolution", value=resolution,
                             min=MIN_RESOLUTION, max=MAX_RESOLUTION)


def _image_seed(image: Image.Image) -> int:
    """A seed that depends only on the pixels, so the same input gives the same output."""
    return zlib.crc32(image.tobytes(), zlib.crc32(repr(image.size).encode()))


class _SeededNumpyRandom:
    """Seed numpy's global generator for one call and put the caller's state back after."""

    def __init__(self, seed: int) -> None:
        self._seed = seed

    def __enter__(self) -> None:
        _NUMPY_RANDOM_LOCK.acquire()
        self._saved = np.random.get_state()  # set on entry, put back on exit
        np.random.seed(self._seed)

    def __exit__(self, *exc_info: object) -> None:
        np.random.set_state(self._saved)
        _NUMPY_RANDOM_LOCK.release()


def _to_rgb_of_size(result: Any, size: tuple[int, int]) -> Image.Image:
    if isinstance(result, np.ndarray):
        result = Image.fromarray(result)
    result = result.convert("RGB")
    if result.size != size:
        # Detectors work at multiples of 64; the control image must match the input again.
        result = result.resize(size, Image.Resampling.BILINEAR)
    return result


class AuxAnnotators:
    """Runs controlnet-aux detectors by our stable names, loading each once (thread-safe).

    ``weights_folder(model_id)`` gives the local folder holding every file of that manifest
    model (``ModelStore.complete_folder``), or raises the error that says it is not downloaded.
    """

    def __init__(self, weights_folder: Callable[[str], Path], device: str = "cpu") -> None:
        self._weights_folder = weights_folder
        self.device = device
        self._detectors: dict[str, Any] = {}
        self._lock = threading.Lock()

    def run(self, name: str, image: Image.Image, resolution: int) -> Image.Image:
        """The control map of ``image``: RGB, the same size as ``image``."""
        annotator = get_annotator(name)
        _check_resolution(resolution)
        detector = self._detector(name, annotator)
        source = image.convert("RGB")
        kwargs = dict(annotator.call_kwargs, detect_resolution=int(resolution),
                      image_resolution=int(resolution))
        if annotator.uses_numpy_random:
            with _SeededNumpyRandom(_image_seed(source)):
                result = detector(source, **kwargs)
        else:
            result = detector(source, **kwargs)
        return _to_rgb_of_size(result, image.size)

    def _detector(self, name: str, annotator: AuxAnnotator) -> Any:
        # Detectors are keyed by class: lineart and lineart_coarse share one LineartDetector.
        key = annotator.detector_class
        with self._lock:
            # Loading under the lock: two first calls must not both read 100s of MB.
            if key not in self._detectors:
                detector = self._load(name, annotator)
                if hasattr(detector, "to"):
                    detector = detector.to(self.device)
                self._detectors[key] = detector
            return self._detectors[key]

    def _load(self, name: str, annotator: AuxAnnotator) -> Any:
        import controlnet_aux

        detector_class = getattr(controlnet_aux, annotator.detector_class)
        if annotator.weights is None:
            return detector_class()
        from engine.generate.lora import weights_only_forced_off

        if weights_only_forced_off():
            # controlnet-aux calls torch.load without weights_only, so the override applies.
            raise ModelError("weights_only_disabled")
        # Raises model_not_downloaded / model_incomplete before any detector code runs: given
        # a repo id or a missing file, controlnet-aux would download it itself.
        folder = self._weights_folder(annotator.weights)
        logger.info("loading annotator %s (%s) from %s", name, annotator.detector_class, folder)
        try:
            return detector_class.from_pretrained(str(folder))
        except Exception as error:  # any failure of third-party loading code
            logger.warning("annotator %s failed to load: %s", name, type(error).__name__)
            raise ModelError("model_load_failed", name=annotator.weights) from error
