"""RGB images tiled into one grid image."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray


def to_uint8(rgb: NDArray[np.floating]) -> NDArray[np.uint8]:
    """(3, h, w) or (h, w, 3) in [0, 1] -> (h, w, 3) uint8."""
    a = np.asarray(rgb, np.float64)
    if a.ndim == 3 and a.shape[0] == 3 and a.shape[-1] != 3:
        a = a.transpose(1, 2, 0)
    return np.ascontiguousarray(np.clip(np.rint(a * 255.0), 0, 255).astype(np.uint8))


def image_grid(images: list[NDArray[np.uint8]], gap: int = 2) -> NDArray[np.uint8]:
    """Images (h, w, 3) of one size in a near-square grid on white, ``gap`` pixels apart."""
    n = len(images)
    h, w = images[0].shape[:2]
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    out = np.full((rows * (h + gap) + gap, cols * (w + gap) + gap, 3), 255, np.uint8)
    for i, img in enumerate(images):
        r, c = divmod(i, cols)
        y, x = gap + r * (h + gap), gap + c * (w + gap)
        out[y : y + h, x : x + w] = img
    return out
