"""The compute floor: how fast a job could run if the device did nothing but its FLOPs at peak.

Pure arithmetic (no torch), so the floor column can be unit-tested. A figure in the GPU table
is then read as "x times the floor": 1.0 would be every FLOP at peak rate, never reached.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

TERA = 1e12


@dataclass(frozen=True)
class FlopTable:
    """FLOPs of one model family's work, keyed by image side (square images, batch 1).

    ``unet_guided_step`` is one denoising step with classifier-free guidance (two latents);
    ``controlnet_extra`` the fraction a ControlNet adds to that step; ``text_encoder_tflop``
    encoding a job's two prompts (positive and negative).
    """

    unet_guided_step_tflop: Mapping[int, float]
    controlnet_extra: float
    vae_decode_tflop: Mapping[int, float]
    text_encoder_tflop: float
    source: str

    def step_tflop(self, side: int, batch: int, controlnet: bool) -> float:
        """One guided step for a batch of ``batch`` images."""
        per_image = _at_side(self.unet_guided_step_tflop, side, "UNet step")
        if controlnet:
            per_image *= 1 + self.controlnet_extra
        return per_image * batch

    def image_tflop(self, side: int, steps: int, controlnet: bool, batch: int) -> float:
        """One image's share of a whole job: its steps, its decode, the prompts' encoding
        (done once per job, so shared by the batch)."""
        steps_tflop = steps * self.step_tflop(side, 1, controlnet)
        decode_tflop = _at_side(self.vae_decode_tflop, side, "VAE decode")
        return steps_tflop + decode_tflop + self.text_encoder_tflop / batch

    def as_dict(self) -> dict:
        return {"unet_guided_step_tflop": dict(self.unet_guided_step_tflop),
                "controlnet_extra": self.controlnet_extra,
                "vae_decode_tflop": dict(self.vae_decode_tflop),
                "text_encoder_tflop": self.text_encoder_tflop, "source": self.source}


def _at_side(table: Mapping[int, float], side: int, what: str) -> float:
    if side not in table:
        known = ", ".join(str(s) for s in sorted(table))
        raise KeyError(f"no {what} FLOP count for {side}x{side} (known: {known})")
    return table[side]


# docs: the team's performance brief, "The physical floor (counted with torch's FLOP counter on
# SD 1.5 configs)". The 768 decode is the 512 one scaled by pixels: the decoder is convolutions
# at full resolution, its one attention block sits at 1/8 resolution and is a small share.
SD15_FLOPS = FlopTable(
    unet_guided_step_tflop={512: 1.61, 768: 4.30},
    controlnet_extra=0.35,
    vae_decode_tflop={512: 2.51, 768: round(2.51 * (768 / 512) ** 2, 2)},
    text_encoder_tflop=0.013,
    source="performance brief: torch FLOP counter on SD 1.5 configs (768 decode scaled by "
           "pixels)",
)


@dataclass(frozen=True)
class Peak:
    tflops: float
    source: str


# Dense tensor-core peaks, fp16 and bf16 alike. The H200 figure was measured on the lent
# machine (an 8192^3 bf16 matrix product); the H100 has the same compute die, so it gets the
# same number rather than the datasheet's 989, which no product here reaches.
KNOWN_PEAKS: tuple[tuple[str, Peak], ...] = (
    ("H200", Peak(790.0, "measured here: 8192^3 bf16 matmul on an H200 (788-798 TFLOP/s)")),
    ("H100", Peak(790.0, "as the H200 (same GH100 compute die; 769-798 measured on an H100)")),
    ("A100", Peak(312.0, "NVIDIA A100 datasheet, dense fp16/bf16 tensor cores")),
    ("L40S", Peak(362.0, "NVIDIA L40S datasheet, dense fp16/bf16 tensor cores")),
    ("4090", Peak(165.0, "NVIDIA Ada datasheet, dense fp16 with fp32 accumulate")),
)


def known_peak(device_name: str) -> Peak | None:
    """The table's peak for a GPU whose name contains one of its keys; None if unknown."""
    for key, peak in KNOWN_PEAKS:
        if key.lower() in device_name.lower():
            return peak
    return None


@dataclass(frozen=True)
class Floor:
    steps_per_s: float
    s_per_image: float


def compute_floor(table: FlopTable, peak_tflops: float, *, side: int, batch: int, steps: int,
                  controlnet: bool) -> Floor:
    """The best possible guided steps per second (for a batch) and seconds per image."""
    if peak_tflops <= 0:
        raise ValueError(f"peak_tflops must be positive, got {peak_tflops}")
    step_s = table.step_tflop(side, batch, controlnet) / peak_tflops
    image_s = table.image_tflop(side, steps, controlnet, batch) / peak_tflops
    return Floor(steps_per_s=1 / step_s, s_per_image=image_s)


def times_floor(measured_s: float, floor_s: float) -> float:
    """How many times the floor a measured duration is (1.0 = at the floor)."""
    return measured_s / floor_s
