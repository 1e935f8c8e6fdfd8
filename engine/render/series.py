"""The series plot: each channel as a line, the attribution as a heat band under it.

A :class:`~engine.modalities.time_series.SeriesPlot` renders to PNG: one panel per channel
(its line, scaled to the panel, with a faint zero line when zero is in range), each followed
by a band of its own row of a (channel, time) attribution, or one band under the last
panel for a (time,) attribution. Bands use the context's colour map: signed values on a
diverging map are centred at 0.5, otherwise |values| (when any is negative) or the positive
part are scaled by the maximum (:func:`engine.render.heatmap.normalise`).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from engine.artifacts import AttributionMap
from engine.modalities.time_series import SeriesPlot
from engine.render.colormap import DIVERGING, apply_colormap
from engine.render.heatmap import Normalisation, encode_png, normalise
from engine.render.registry import RenderContext, renderer

WIDTH = 720
MARGIN = 8
PANEL = 96
BAND = 16
GAP = 6
LINE = (31, 41, 55)
ZERO = (209, 213, 219)


def _normalisation(values: NDArray[np.floating], colormap: str) -> Normalisation:
    if colormap in DIVERGING:
        return "signed"
    return "absolute" if float(np.min(values, initial=0.0)) < 0 else "positive"


def series_image(plot: SeriesPlot, colormap: str = "jet") -> Image.Image:
    series = np.asarray(plot.series, np.float64)
    attr = np.asarray(plot.attribution, np.float64)
    c, t = series.shape
    rows = attr if attr.ndim == 2 else attr[None, :]
    per_channel = attr.ndim == 2 and rows.shape[0] == c
    height = MARGIN * 2 + c * (PANEL + GAP) + (c if per_channel else 1) * (BAND + GAP)
    img = Image.new("RGB", (WIDTH + 2 * MARGIN, height), (255, 255, 255))
    draw = ImageDraw.Draw(img)
    # normalised over every row together, so the bands of channels compare
    unit = normalise(rows, _normalisation(rows, colormap))
    xs = MARGIN + np.arange(t) * (WIDTH - 1) / max(t - 1, 1)

    def band(row: NDArray[np.float32], y: int) -> None:
        strip = Image.fromarray(apply_colormap(row[None, :], colormap), mode="RGB")
        img.paste(strip.resize((WIDTH, BAND), Image.Resampling.NEAREST), (MARGIN, y))

    y = MARGIN
    for ch in range(c):
        v = series[ch]
        lo, hi = float(v.min()), float(v.max())
        span = hi - lo if hi > lo else 1.0

        def to_y(val: float, y0: int = y, lo: float = lo, span: float = span) -> float:
            return y0 + PANEL - 1 - (val - lo) / span * (PANEL - 1)

        if lo <= 0 <= hi:
            z = to_y(0.0)
            draw.line([(MARGIN, z), (MARGIN + WIDTH - 1, z)], fill=ZERO)
        draw.line([(float(xs[i]), to_y(float(v[i]))) for i in range(t)], fill=LINE, width=2)
        y += PANEL + GAP
        if per_channel:
            band(unit[ch], y)
            y += BAND + GAP
    if not per_channel:
        band(unit[0], y)
    return img


def attribution_series_png(artifact: AttributionMap, ctx: RenderContext) -> bytes:
    """A (time,) or (channel, time) attribution alone: its own curve per row with its heat
    band under it (the ``attribution`` PNG of series methods; ``plot`` has the input)."""
    values = np.asarray(artifact.values, np.float32)
    rows = values if values.ndim == 2 else values.reshape(1, -1)
    names = artifact.feature_names or [f"ch{i}" for i in range(rows.shape[0])]
    return encode_png(series_image(SeriesPlot(artifact.name, rows, values, names), ctx.colormap))


@renderer("series", "png")
def series_png(artifact: SeriesPlot, ctx: RenderContext) -> bytes:
    return encode_png(series_image(artifact, ctx.colormap))
