"""Colour maps as 256-entry lookup tables, interpolated from published anchor colours.

viridis and inferno: matplotlib's perceptually uniform maps (CC0), sampled at 9 anchors;
jet: the classic piecewise-linear map; coolwarm: Moreland's diverging map; gray.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

_ANCHORS: dict[str, list[tuple[int, int, int]]] = {
    "viridis": [
        (68, 1, 84),
        (71, 44, 122),
        (59, 81, 139),
        (44, 113, 142),
        (33, 144, 141),
        (39, 173, 129),
        (92, 200, 99),
        (170, 220, 50),
        (253, 231, 37),
    ],
    "inferno": [
        (0, 0, 4),
        (31, 12, 72),
        (85, 15, 109),
        (136, 34, 106),
        (186, 54, 85),
        (227, 89, 51),
        (249, 140, 10),
        (249, 201, 50),
        (252, 255, 164),
    ],
    "jet": [
        (0, 0, 128),
        (0, 0, 255),
        (0, 128, 255),
        (0, 255, 255),
        (128, 255, 128),
        (255, 255, 0),
        (255, 128, 0),
        (255, 0, 0),
        (128, 0, 0),
    ],
    "coolwarm": [
        (59, 76, 192),
        (98, 130, 234),
        (141, 176, 254),
        (184, 208, 249),
        (221, 221, 221),
        (245, 196, 173),
        (244, 154, 123),
        (222, 96, 77),
        (180, 4, 38),
    ],
    "gray": [(0, 0, 0), (255, 255, 255)],
}

DIVERGING = {"coolwarm"}


def _lut(anchors: list[tuple[int, int, int]]) -> NDArray[np.uint8]:
    a = np.asarray(anchors, dtype=np.float64)
    xs = np.linspace(0.0, 1.0, len(a))
    t = np.linspace(0.0, 1.0, 256)
    lut = np.stack([np.interp(t, xs, a[:, c]) for c in range(3)], axis=1)
    return np.clip(np.rint(lut), 0, 255).astype(np.uint8)


COLORMAPS: dict[str, NDArray[np.uint8]] = {k: _lut(v) for k, v in _ANCHORS.items()}


def apply_colormap(unit: NDArray[np.floating], name: str) -> NDArray[np.uint8]:
    """Values in [0, 1] (H, W) -> RGB uint8 (H, W, 3)."""
    lut = COLORMAPS[name]
    idx = np.clip(np.rint(np.nan_to_num(unit) * 255.0), 0, 255).astype(np.intp)
    out: NDArray[np.uint8] = lut[idx]
    return out
