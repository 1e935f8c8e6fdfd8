"""Segment overlays for the superpixel methods (LIME, KernelSHAP).

The original image with the outlines of the top positive segments in green and the top
negative ones in red. The label image is at the model's input size; it is scaled to the
image's size with nearest-neighbour sampling, so outlines follow the segments exactly.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from engine.artifacts import Segments
from engine.render.heatmap import encode_png
from engine.render.registry import RenderContext, renderer

GREEN = (0, 200, 0)
RED = (230, 0, 0)


def top_segments(weights: NDArray[np.floating], k: int) -> tuple[list[int], list[int]]:
    """The ids of the (at most) ``k`` largest positive and ``k`` most negative weights."""
    w = np.asarray(weights, dtype=np.float64)
    order = np.argsort(-w, kind="stable")
    pos = [int(i) for i in order if w[i] > 0][:k]
    neg = [int(i) for i in order[::-1] if w[i] < 0][:k]
    return pos, neg


def upscale_labels(segment_map: NDArray[np.integer], size: tuple[int, int]) -> NDArray[np.int32]:
    """The label image resized to ``size`` = (width, height), nearest neighbour."""
    labels = np.asarray(segment_map, dtype=np.int32)
    if (labels.shape[1], labels.shape[0]) == size:
        return labels
    img = Image.fromarray(labels, mode="I")
    out: NDArray[np.int32] = np.asarray(img.resize(size, Image.Resampling.NEAREST), dtype=np.int32)
    return out


def _outline(labels: NDArray[np.int32], ids: Sequence[int], thickness: int) -> NDArray[np.bool_]:
    from skimage import morphology, segmentation

    morph: Any = morphology  # partly typed upstream
    seg: Any = segmentation
    inside = np.isin(labels, np.asarray(list(ids), dtype=np.int32))
    if not inside.any():
        return np.zeros(labels.shape, dtype=np.bool_)
    # label 0 is background to find_boundaries: shift labels by one, and pad so that a
    # segment touching the image's border is outlined there too
    padded = np.pad(np.where(inside, labels + 1, 0), 1)
    edge = np.asarray(seg.find_boundaries(padded, mode="inner"))[1:-1, 1:-1] & inside
    if thickness > 1:
        edge = np.asarray(morph.dilation(edge, morph.disk(thickness // 2)), dtype=np.bool_) & inside
    return edge


def segment_overlay(
    base: Image.Image,
    segment_map: NDArray[np.integer],
    weights: Sequence[float] | NDArray[np.floating],
    top_k: int = 5,
    *,
    positive: Sequence[int] | None = None,
    negative: Sequence[int] | None = None,
    thickness: int = 2,
    dim: float = 0.0,
) -> Image.Image:
    """``base`` (any size) with the top-k positive segments outlined green, negative red.

    ``positive``/``negative`` name the segment ids explicitly (e.g. ``top_positive`` from a
    result's extras); otherwise the top ``top_k`` of ``weights`` are taken. ``dim`` (0..1)
    darkens the pixels of the segments not outlined.
    """
    rgb = base.convert("RGB")
    labels = upscale_labels(segment_map, rgb.size)
    w = np.asarray(weights, dtype=np.float64)
    if positive is None or negative is None:
        pos, neg = top_segments(w, top_k)
        positive = pos if positive is None else positive
        negative = neg if negative is None else negative
    out = np.asarray(rgb, dtype=np.float32).copy()
    if dim > 0:
        chosen = np.isin(labels, np.asarray([*positive, *negative], dtype=np.int32))
        out[~chosen] *= 1.0 - min(max(dim, 0.0), 1.0)
    out[_outline(labels, positive, thickness)] = GREEN
    out[_outline(labels, negative, thickness)] = RED
    return Image.fromarray(np.clip(np.rint(out), 0, 255).astype(np.uint8), mode="RGB")


@renderer("segments", "png")
def segments_png(artifact: Segments, ctx: RenderContext) -> bytes:
    """The input with the top positive segments outlined green and the negative red."""
    return encode_png(
        segment_overlay(
            ctx.image(),
            artifact.labels,
            artifact.weights,
            positive=artifact.positive,
            negative=artifact.negative,
        )
    )
