"""The full VAE decode in tiles for large images only.

Decoding a 2048x2048 image whole needs several GB for the decoder's full-size feature maps;
in tiles (diffusers' ``enable_tiling``: 512-pixel tiles, blended at the seams) it needs a
tile's worth. Tiling changes pixels slightly at the seams, so sizes up to 1024x1024 decode
whole, as before, in every memory mode: the same seed gives the same image there.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager

logger = logging.getLogger(__name__)

TILED_DECODE_ABOVE_PIXELS = 1024 * 1024


def decodes_in_tiles(width: int, height: int) -> bool:
    return width * height > TILED_DECODE_ABOVE_PIXELS


@contextmanager
def tiling_for_size(vae, width: int, height: int) -> Iterator[bool]:
    """Tiling on for the decodes inside, when the image is large; as it was after. Yields
    whether it tiles. (``vae.decode`` stays the entry point: under CPU offload its hook moves
    the VAE to the GPU, which calling ``tiled_decode`` directly would skip.)"""
    if not decodes_in_tiles(width, height):
        yield False
        return
    was_tiling = bool(getattr(vae, "use_tiling", False))
    vae.enable_tiling()
    logger.debug("decoding %dx%d in tiles", width, height)
    try:
        yield True
    finally:
        if not was_tiling:
            vae.disable_tiling()
