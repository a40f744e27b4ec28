"""One set of bounds for every job: the validator enforces them and the UI's widgets use them."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Limits:
    min_size: int = 64
    max_size: int = 2048
    size_step: int = 8
    # width * height * batch_size: a 768x768 batch of 4 fits; bigger jobs fail fast instead of OOM.
    max_batch_pixels: int = 4 * 1024 * 1024
    min_steps: int = 1
    max_steps: int = 150
    min_guidance: float = 0.0
    max_guidance: float = 30.0
    max_batch_size: int = 8
    max_batch_count: int = 16
    max_seed: int = 2**32 - 1
    max_prompt_chars: int = 4000
    max_loras: int = 8
    min_lora_weight: float = -2.0
    max_lora_weight: float = 2.0
    min_strength: float = 0.0
    max_strength: float = 1.0
    min_control_weight: float = 0.0
    max_control_weight: float = 2.0
    max_canny_threshold: int = 255
    max_mask_blur: int = 64
    # Input images are decoded before validation; bigger ones are refused as decompression bombs.
    max_input_pixels: int = 4096 * 4096
    min_input_side: int = 8
    max_input_aspect: float = 16.0

    def pixels_per_image(self, batch_size: int) -> int:
        """The pixel budget's one rule: each image of a batch may have this many pixels, so
        that width * height * batch_size <= max_batch_pixels. The validator, the engine's size
        fitting and the UI's size suggestion all ask here."""
        return self.max_batch_pixels // max(1, batch_size)


DEFAULT_LIMITS = Limits()
