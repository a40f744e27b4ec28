"""Live previews: each step's latents as a picture, by the method chosen in 设置.

- "approx": a fixed linear projection of the four latent channels to RGB (milliseconds, no
  weights, blurry, half the image's size).
- "taesd": TAESD (diffusers' AutoencoderTiny, manifest model ``taesd``), a tiny distilled VAE
  decoder: a sharp preview at the image's size for a small fraction of the full VAE's cost.
  Downloaded like any model, only when the user asks; until it is on disk (or if it cannot
  load) previews fall back to the projection, and the job goes on.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from pathlib import Path

import torch
from PIL import Image

from engine.errors import ModelError
from engine.generate.devices import Placement
from engine.settings import TAESD_MODEL
from engine.store.model_store import ModelStore

logger = logging.getLogger(__name__)

PreviewMaker = Callable[[torch.Tensor | None], Image.Image | None]

# How SD 1.x latent channels map to RGB, approximately (a widely used fixed projection); a
# preview from it costs milliseconds and needs no weights.
LATENT_RGB = ((0.298, 0.207, 0.208), (0.187, 0.286, 0.173), (-0.158, 0.189, 0.264),
              (-0.184, -0.271, -0.473))


# The UI asks for the live preview every 0.5 s (ui.generation_widgets.PREVIEW_SECONDS) and A1111
# clients poll /sdapi/v1/progress about as often: a preview made more often is never seen, and
# each one copies the latents off the device (a sync that drains a GPU's queue of launched
# kernels) and decodes them. A1111 paces its previews too (show_progress_every_n_steps).
PREVIEW_EVERY_S = 0.25


class PreviewPacer:
    """Says which steps get a preview: the first, then one whenever ``every_s`` has passed
    since the last. Progress itself is still reported every step."""

    def __init__(self, every_s: float = PREVIEW_EVERY_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.every_s = every_s
        self.clock = clock
        self._last: float | None = None

    def due(self) -> bool:
        now = self.clock()
        if self._last is not None and now - self._last < self.every_s:
            return False
        self._last = now
        return True


def _is_sd_latents(latents: torch.Tensor | None) -> bool:
    return latents is not None and latents.ndim == 4 and latents.shape[1] == 4


def latent_preview(latents: torch.Tensor | None) -> Image.Image | None:
    if latents is None or not _is_sd_latents(latents):
        return None
    factors = torch.tensor(LATENT_RGB, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latents[0].detach().float().cpu(), factors)
    pixels = ((rgb + 1) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    return Image.fromarray(pixels).resize((pixels.shape[1] * 4, pixels.shape[0] * 4))


def _to_image(decoded: torch.Tensor) -> Image.Image:
    """A decoder's [-1, 1] output, first image, as RGB."""
    pixels = ((decoded[0].float() / 2 + 0.5).clamp(0, 1) * 255).round().to(torch.uint8)
    return Image.fromarray(pixels.permute(1, 2, 0).cpu().numpy())


class PreviewDecoders:
    """Makes each job's preview function; keeps TAESD loaded once it has been used."""

    def __init__(self, store: ModelStore, placement: Placement) -> None:
        self.store = store
        self.placement = placement
        self._taesd = None
        self._taesd_folder: Path | None = None

    def maker(self, method: str) -> PreviewMaker:
        """The preview function for one job (asked once per job, so a download finished
        since the last job is used from the next one on)."""
        if method != "taesd":
            return latent_preview
        taesd = self._load_taesd()
        if taesd is None:
            return latent_preview

        @torch.no_grad()
        def decode(latents: torch.Tensor | None) -> Image.Image | None:
            if latents is None or not _is_sd_latents(latents):
                return None
            # TAESD takes the scaled latents the sampler holds (its scaling factor is 1).
            first = latents[:1].detach().to(self.placement.device, self.placement.dtype)
            return _to_image(taesd.decode(first).sample)

        return decode

    def _load_taesd(self):
        try:
            folder = self.store.resolve(TAESD_MODEL).resolve()
        except ModelError:
            logger.info("TAESD is not downloaded: live previews use the approximation")
            return None
        if self._taesd is not None and folder == self._taesd_folder:
            return self._taesd
        from diffusers import AutoencoderTiny

        try:
            taesd = AutoencoderTiny.from_pretrained(folder, dtype=self.placement.dtype,
                                                    use_safetensors=True)
            taesd.to(self.placement.device).eval()
        except Exception as exc:  # noqa: BLE001 - a broken download must not fail the job
            logger.warning("TAESD did not load (%s): live previews use the approximation",
                           type(exc).__name__)
            return None
        self._taesd, self._taesd_folder = taesd, folder
        return taesd

    def release(self) -> None:
        self._taesd = self._taesd_folder = None
