"""Attribution maps as images: normalisation, colour-mapped PNG, overlay on the input."""

from __future__ import annotations

import io
from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from engine.artifacts import AttributionMap
from engine.errors import InvalidFormat
from engine.render.colormap import DIVERGING, apply_colormap
from engine.render.registry import RenderContext, image_axes, renderer

Normalisation = Literal["positive", "absolute", "signed"]


def normalise(values: NDArray[np.floating], mode: Normalisation) -> NDArray[np.float32]:
    """Map an attribution to [0, 1].

    positive: negative values clipped to 0, divided by the maximum;
    absolute: |values| divided by the maximum;
    signed:   0 maps to 0.5, ±max|values| to 1 and 0 (for diverging colour maps).
    """
    v = np.nan_to_num(np.asarray(values, dtype=np.float64))
    if mode == "positive":
        v = np.clip(v, 0.0, None)
        m = float(v.max(initial=0.0))
        out = v / m if m > 0 else np.zeros_like(v)
    elif mode == "absolute":
        v = np.abs(v)
        m = float(v.max(initial=0.0))
        out = v / m if m > 0 else np.zeros_like(v)
    else:
        m = float(np.abs(v).max(initial=0.0))
        out = 0.5 + 0.5 * v / m if m > 0 else np.full_like(v, 0.5)
    return out.astype(np.float32)


def default_normalisation(colormap: str) -> Normalisation:
    return "signed" if colormap in DIVERGING else "positive"


def heatmap_image(
    values: NDArray[np.floating],
    colormap: str = "jet",
    normalisation: Normalisation | None = None,
    size: tuple[int, int] | None = None,
) -> Image.Image:
    """Colour-mapped heatmap; ``size`` = (width, height) resizes the values bilinearly."""
    unit = normalise(values, normalisation or default_normalisation(colormap))
    if size is not None and (unit.shape[1], unit.shape[0]) != size:
        unit = np.asarray(
            Image.fromarray(unit, mode="F").resize(size, Image.Resampling.BILINEAR),
            dtype=np.float32,
        )
    return Image.fromarray(apply_colormap(unit, colormap), mode="RGB")


def overlay_image(
    values: NDArray[np.floating],
    base: Image.Image,
    colormap: str = "jet",
    alpha: float = 0.5,
    normalisation: Normalisation | None = None,
) -> Image.Image:
    """The heatmap blended over the caller's image at its original size."""
    base_rgb = base.convert("RGB")
    heat = heatmap_image(values, colormap, normalisation, size=base_rgb.size)
    return Image.blend(base_rgb, heat, alpha)


def encode_png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=False, compress_level=6)
    return buf.getvalue()


def _map_of(artifact: AttributionMap) -> NDArray[np.float32]:
    values = np.asarray(artifact.values, np.float32)
    if values.ndim != 2:
        raise InvalidFormat(
            f"Attribution {artifact.name!r} has axes {artifact.axes}; a heatmap needs two "
            "(y, x). Ask for json or npy.",
            details={"artifact": artifact.name, "axes": artifact.axes},
        )
    return values


@renderer("attribution", "png")
def attribution_png(artifact: AttributionMap, ctx: RenderContext) -> bytes:
    if tuple(artifact.axes_) == ("word",):  # text: the highlighted words
        from engine.render.text import words_png

        return words_png(artifact, ctx)
    if artifact.axes_ and artifact.axes_[-1] == "time":  # series: curve + heat band
        from engine.render.series import attribution_series_png

        return attribution_series_png(artifact, ctx)
    return encode_png(heatmap_image(_map_of(artifact), ctx.colormap))


@renderer("attribution", "overlay", axes=image_axes)
def attribution_overlay(artifact: AttributionMap, ctx: RenderContext) -> bytes:
    return encode_png(overlay_image(_map_of(artifact), ctx.image(), ctx.colormap, ctx.alpha))
