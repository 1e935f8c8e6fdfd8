"""Images as bytes, for requests."""

from __future__ import annotations

import base64
import io

import numpy as np
from numpy.typing import NDArray
from PIL import Image


def png_bytes(pixels: NDArray[np.uint8] | Image.Image) -> bytes:
    img = pixels if isinstance(pixels, Image.Image) else Image.fromarray(pixels)
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def chelsea_png() -> bytes:
    from skimage import data

    return png_bytes(data.chelsea())


def solid(size: int, rgb: tuple[int, int, int]) -> NDArray[np.uint8]:
    return np.broadcast_to(np.asarray(rgb, np.uint8), (size, size, 3)).copy()
