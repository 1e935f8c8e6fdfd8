"""Superpixels for the segment-based perturbation methods (LIME, KernelSHAP).

The segmentation is chosen by a discriminated union of params models, so a request says
``{"segmentation": {"algorithm": "quickshift", "kernel_size": 4}}`` and gets that
algorithm's own parameters with their defaults and bounds. SLIC is the default. ``grid``
(square cells) is there for reproducible, content-independent features.

Labels are always renumbered to ``0..M-1`` in raster order of first appearance, so the
same image and parameters give the same label image everywhere.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field


class SlicParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["slic"] = "slic"
    n_segments: int = Field(default=50, ge=1, le=4096, description="About how many segments.")
    compactness: float = Field(
        default=10.0, gt=0, le=1000, description="Colour vs space balance (higher = squarer)."
    )
    sigma: float = Field(default=1.0, ge=0, le=50, description="Gaussian smoothing before SLIC.")


class QuickshiftParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["quickshift"] = "quickshift"
    kernel_size: float = Field(default=4.0, gt=0, le=64, description="Density kernel width.")
    max_dist: float = Field(default=200.0, gt=0, le=10000, description="Cut-off distance.")
    ratio: float = Field(default=0.2, ge=0, le=1, description="Colour vs space balance.")
    sigma: float = Field(default=0.0, ge=0, le=50, description="Gaussian smoothing first.")


class FelzenszwalbParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["felzenszwalb"] = "felzenszwalb"
    scale: float = Field(default=100.0, gt=0, le=100000, description="Higher = larger segments.")
    sigma: float = Field(default=0.8, ge=0, le=50, description="Gaussian smoothing first.")
    min_size: int = Field(default=50, ge=1, le=100000, description="Smallest segment (pixels).")


class GridParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    algorithm: Literal["grid"] = "grid"
    cell: int = Field(default=32, ge=1, le=4096, description="Side of a square cell in pixels.")


SegmentationParams = Annotated[
    SlicParams | QuickshiftParams | FelzenszwalbParams | GridParams,
    Field(discriminator="algorithm"),
]


def _relabel(labels: NDArray[np.integer]) -> NDArray[np.int32]:
    """Labels renumbered 0..M-1 in raster order of first appearance."""
    flat = labels.ravel()
    _, first, inverse = np.unique(flat, return_index=True, return_inverse=True)
    order = np.argsort(first, kind="stable")  # unique label k appears first at first[k]
    rank = np.empty_like(order)
    rank[order] = np.arange(order.size)
    out: NDArray[np.int32] = rank[inverse].reshape(labels.shape).astype(np.int32)
    return out


def segment(pixels: NDArray[np.float32], params: SegmentationParams) -> NDArray[np.int32]:
    """A (H, W) label image with labels 0..M-1 for (H, W, 3) pixels in 0..255."""
    h, w = int(pixels.shape[0]), int(pixels.shape[1])
    if isinstance(params, GridParams):
        rows = np.arange(h) // params.cell
        cols = np.arange(w) // params.cell
        n_cols = int(cols.max()) + 1
        return _relabel(rows[:, None] * n_cols + cols[None, :])
    from skimage import segmentation

    sk: Any = segmentation  # partly typed upstream
    img = np.clip(pixels.astype(np.float64) / 255.0, 0.0, 1.0)
    if isinstance(params, SlicParams):
        labels = sk.slic(
            img,
            n_segments=params.n_segments,
            compactness=params.compactness,
            sigma=params.sigma,
            start_label=0,
            channel_axis=-1,
        )
    elif isinstance(params, QuickshiftParams):
        labels = sk.quickshift(
            img,
            kernel_size=params.kernel_size,
            max_dist=params.max_dist,
            ratio=params.ratio,
            sigma=params.sigma,
            rng=0,
            channel_axis=-1,
        )
    else:
        labels = sk.felzenszwalb(
            img,
            scale=params.scale,
            sigma=params.sigma,
            min_size=params.min_size,
            channel_axis=-1,
        )
    return _relabel(np.asarray(labels))


def segment_mean_pixels(
    pixels: NDArray[np.float32], segments: NDArray[np.int32]
) -> NDArray[np.float32]:
    """Every segment painted with its own mean colour (the ``lime`` package's default)."""
    m = int(segments.max()) + 1
    flat = segments.ravel()
    counts = np.bincount(flat, minlength=m).astype(np.float64)
    out = np.empty_like(pixels)
    for c in range(3):
        sums = np.bincount(flat, weights=pixels[..., c].ravel().astype(np.float64), minlength=m)
        out[..., c] = (sums / np.maximum(counts, 1.0))[segments].astype(np.float32)
    return out
