"""The pointing game (Zhang et al., "Top-down neural attention by excitation backprop", 2016).

A heatmap *hits* when its maximum lies inside the object's box, or within ``tolerance``
pixels of it (Euclidean distance from the pixel to the box; Zhang et al. use 15 px on
ImageNet-sized images). The hit rate over a set of images is the score.

Ties: a map can reach its maximum at several pixels (a flat CAM region, a LIME superpixel,
a constant map). By default (``ties="all"``) every maximal pixel must lie inside the
tolerated box, so a constant map misses unless the box covers the whole image; ``"first"``
uses the first maximum in raster order (``np.argmax``), as most implementations do.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

#: (y0, y1, x0, x1), half-open: rows y0..y1-1 and columns x0..x1-1.
Box = tuple[int, int, int, int]
Ties = Literal["all", "first"]


@dataclass(frozen=True)
class PointingResult:
    hit: bool
    point: tuple[int, int]  # (y, x) of the (first) maximum
    distance: float  # of the farthest maximal pixel considered from the box (0 = inside)
    n_maxima: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def distance_to_box(y: NDArray[Any], x: NDArray[Any], box: Box) -> NDArray[np.float64]:
    """Euclidean distance of pixels (y, x) from the box (0 inside it)."""
    y0, y1, x0, x1 = box
    yy = np.asarray(y, dtype=np.float64)
    xx = np.asarray(x, dtype=np.float64)
    dy = np.maximum(np.maximum(y0 - yy, yy - (y1 - 1)), 0.0)
    dx = np.maximum(np.maximum(x0 - xx, xx - (x1 - 1)), 0.0)
    out: NDArray[np.float64] = np.hypot(dy, dx)
    return out


def pointing_game(
    values: NDArray[Any], box: Box, tolerance: float = 0.0, ties: Ties = "all"
) -> PointingResult:
    """Does the maximum of the (H, W) map ``values`` lie in ``box`` (± ``tolerance`` px)?"""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"a (H, W) map is needed, not shape {v.shape}")
    y0, y1, x0, x1 = box
    if not (y0 < y1 and x0 < x1):
        raise ValueError(f"empty box {box}")
    if tolerance < 0:
        raise ValueError("tolerance must be >= 0")
    v = np.nan_to_num(v, nan=-np.inf)
    top = v.max()
    ys, xs = np.nonzero(v == top)
    if ties == "first":
        ys, xs = ys[:1], xs[:1]
    d = distance_to_box(ys, xs, box)
    farthest = float(d.max())
    return PointingResult(
        hit=bool(farthest <= tolerance + 1e-9),
        point=(int(ys[0]), int(xs[0])),
        distance=farthest,
        n_maxima=int(ys.shape[0]) if ties == "all" else 1,
    )


def hit_rate(results: Iterable[PointingResult]) -> float:
    """Fraction of hits (NaN for no results)."""
    hits = [r.hit for r in results]
    return float(sum(hits)) / len(hits) if hits else math.nan
