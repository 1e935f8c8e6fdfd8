"""Channel grids: many small maps tiled into one image."""

from __future__ import annotations

import math

import numpy as np
from numpy.typing import NDArray

from engine.render.colormap import apply_colormap


def channel_grid(
    maps: NDArray[np.float32], colormap: str = "viridis", tile: int = 64, gap: int = 2
) -> NDArray[np.uint8]:
    """(n, h, w) maps, each scaled to its own [min, max], as an RGB grid (H, W, 3)."""
    n, h, w = maps.shape
    cols = max(1, math.ceil(math.sqrt(n)))
    rows = max(1, math.ceil(n / cols))
    scale = max(1, tile // max(h, w))
    th, tw = h * scale, w * scale
    out = np.full((rows * (th + gap) + gap, cols * (tw + gap) + gap, 3), 255, np.uint8)
    for i in range(n):
        m = maps[i].astype(np.float64)
        lo, hi = float(m.min()), float(m.max())
        unit = (m - lo) / (hi - lo) if hi > lo else np.zeros_like(m)
        rgb = apply_colormap(np.kron(unit, np.ones((scale, scale))), colormap)
        r, c = divmod(i, cols)
        y, x = gap + r * (th + gap), gap + c * (tw + gap)
        out[y : y + th, x : x + tw] = rgb
    return out
