"""Small request builders and image comparisons shared by the engine tests."""

from __future__ import annotations

import numpy as np
from PIL import Image

from engine.requests import (
    ControlNetRequest,
    ControlSpec,
    Img2ImgRequest,
    InpaintRequest,
    Txt2ImgRequest,
)

PROMPT = "雾蒙蒙的日出在湖面上"
BASE = "pai-artist-large"
FAST = dict(model=BASE, steps=3, width=64, height=64, seed=7)


def txt2img(**changes) -> Txt2ImgRequest:
    return Txt2ImgRequest(**{"prompt": PROMPT, **FAST, **changes})


def sample_image(width: int = 64, height: int = 64, seed: int = 0) -> Image.Image:
    """A picture with edges (a bright square on noise), so Canny and depth have work to do."""
    rng = np.random.default_rng(seed)
    pixels = rng.integers(0, 80, (height, width, 3)).astype(np.uint8)
    pixels[height // 4: 3 * height // 4, width // 4: 3 * width // 4] = 230
    return Image.fromarray(pixels)


def img2img(**changes) -> Img2ImgRequest:
    return Img2ImgRequest(**{"prompt": PROMPT, **FAST, "init_image": sample_image(),
                             "strength": 0.7, **changes})


def centre_mask(width: int = 64, height: int = 64) -> Image.Image:
    mask = Image.new("L", (width, height), 0)
    mask.paste(255, (width // 4, height // 4, 3 * width // 4, 3 * height // 4))
    return mask


def inpaint(**changes) -> InpaintRequest:
    return InpaintRequest(**{"prompt": PROMPT, **FAST, "init_image": sample_image(),
                             "mask": centre_mask(), "strength": 0.9, **changes})


def controlnet(control_changes: dict | None = None, **changes) -> ControlNetRequest:
    control = dict(model="pai-artist-large-controlnet-canny", control_type="canny",
                   image=sample_image())
    control.update(control_changes or {})
    return ControlNetRequest(**{"prompt": "白色的小鸟", **FAST, "control": ControlSpec(**control),
                                **changes})


def pixels(result, index: int = 0) -> np.ndarray:
    return np.asarray(result.images[index].image, dtype=np.int16)


def difference(a, b) -> int:
    """Largest per-pixel difference between the first images of two results."""
    return int(np.abs(pixels(a) - pixels(b)).max())


def send_chunked_until_answered(host: str, port: int, head: str, total_bytes: int,
                                piece_bytes: int = 65536) -> tuple[bytes, int]:
    """Send ``head`` and then a chunked body of up to ``total_bytes``, stopping as soon as the
    server answers (or closes); returns its answer and how many body bytes went out."""
    import select
    import socket

    piece = b"x" * piece_bytes
    chunk = f"{len(piece):x}\r\n".encode() + piece + b"\r\n"
    sent = 0
    with socket.create_connection((host, port), timeout=30) as sock:
        sock.sendall(head.encode("latin-1"))
        try:
            while sent < total_bytes:
                readable, _, _ = select.select([sock], [], [], 0)
                if readable:
                    break
                sock.sendall(chunk)
                sent += len(piece)
            return sock.recv(65536), sent
        except (BrokenPipeError, ConnectionResetError):
            try:
                return sock.recv(65536), sent
            except OSError:
                return b"", sent


def run(engine, request, **options):
    """``engine.generate`` as every caller reaches it: through the one preparer first."""
    return engine.generate(engine.prepare(request), **options)
