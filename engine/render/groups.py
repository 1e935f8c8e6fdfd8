"""NMF groups (``groups``) as a colour-coded map: each position takes the mix of its
groups' colours weighted by their maps, as bright as its total (the darkest position is
black); ``overlay`` lays that over the input image."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from engine.artifact_types.inside import Groups
from engine.render.heatmap import encode_png
from engine.render.registry import RenderContext, renderer

#: Distinct colours for up to 12 groups (Tableau 10, then two more); more groups repeat.
PALETTE: NDArray[np.uint8] = np.asarray(
    [
        (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
        (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
        (255, 221, 51), (0, 0, 128),
    ],
    np.uint8,
)

#: The map PNG is drawn at least this many pixels on its longer side (nearest upscaling).
MIN_SIDE = 224


def group_colours(k: int) -> NDArray[np.uint8]:
    return np.ascontiguousarray(PALETTE[np.arange(k) % len(PALETTE)])


def groups_rgb(maps: NDArray[np.floating], colours: NDArray[np.uint8]) -> NDArray[np.uint8]:
    """(k, h, w) non-negative maps -> (h, w, 3): the colours mixed by each position's
    share of each group, scaled by the position's total over the largest total."""
    m = np.maximum(np.asarray(maps, np.float64), 0.0)
    total = m.sum(axis=0)
    top = float(total.max()) if total.size else 0.0
    share = m / np.where(total > 0, total, 1.0)[None]
    mix = np.tensordot(share, colours.astype(np.float64), axes=(0, 0))  # (h, w, 3)
    bright = total / top if top > 0 else np.zeros_like(total)
    out: NDArray[np.uint8] = np.clip(np.rint(mix * bright[..., None]), 0, 255).astype(np.uint8)
    return out


def _image(artifact: Groups) -> Image.Image:
    rgb = groups_rgb(artifact.maps, artifact.colours)
    h, w = rgb.shape[:2]
    scale = max(1, -(-MIN_SIDE // max(h, w, 1)))
    return Image.fromarray(rgb, mode="RGB").resize((w * scale, h * scale),
                                                   Image.Resampling.NEAREST)


@renderer("groups", "png")
def groups_png(artifact: Groups, ctx: RenderContext) -> bytes:
    return encode_png(_image(artifact))


@renderer("groups", "overlay")
def groups_overlay(artifact: Groups, ctx: RenderContext) -> bytes:
    base = ctx.image().convert("RGB")
    colour = _image(artifact).resize(base.size, Image.Resampling.BILINEAR)
    return encode_png(Image.blend(base, colour, float(np.clip(ctx.alpha, 0.0, 1.0))))
