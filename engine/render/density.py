"""Distributions (``distributions``) as Summit's density bars, PNG: one row per channel (in
the artifact's order: the most different first when two sets were compared), one band per
input set in the set's colour, one cell per bin whose opacity is the set's share of its
images in that bin over the largest share in the row (so sets of any size compare; an empty
bin is white). A key of the sets' colours on top; each row labelled with its layer and
channel, and its value range at the right.

``ctx.options``: ``rows`` (the most rows drawn, default 32) and ``sets`` (indices of the sets
to draw, default all).
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from engine.artifact_types.distributions import Distributions
from engine.render.groups import PALETTE
from engine.render.heatmap import encode_png
from engine.render.registry import RenderContext, renderer

MAX_ROWS = 32
LABEL_W, PLOT_W, RANGE_W = 150, 384, 130
BAND_H, ROW_GAP, TOP, KEY_H = 10, 8, 26, 18


def set_colour(k: int) -> tuple[int, int, int]:
    r, g, b = (int(v) for v in PALETTE[k % len(PALETTE)])
    return r, g, b


def opacity(a: Distributions, rows: list[int], sets: list[int]) -> NDArray[np.float64]:
    """(rows, sets, bins) in [0, 1]: each set's share of its images per bin over the largest
    share in its row among the drawn sets (0 for a row with no images)."""
    d = a.density()[np.asarray(rows, np.int64)][:, np.asarray(sets, np.int64), :]
    top = d.max(axis=(1, 2), keepdims=True) if d.size else d
    out: NDArray[np.float64] = np.where(top > 0, d / np.where(top > 0, top, 1.0), 0.0)
    return out


def layout(a: Distributions, ctx: RenderContext) -> tuple[list[int], list[int], int]:
    """(rows drawn, sets drawn, cell width)."""
    limit = int(ctx.options.get("rows", MAX_ROWS))
    rows = list(a.order[: max(1, limit)])
    sets: list[int] = [int(s) for s in ctx.options.get("sets", range(len(a.sets)))
                       if 0 <= int(s) < len(a.sets)] or list(range(len(a.sets)))
    cell = max(1, PLOT_W // max(1, a.counts.shape[2]))
    return rows, sets, cell


def row_height(n_sets: int) -> int:
    return n_sets * BAND_H + ROW_GAP


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def density_image(a: Distributions, ctx: RenderContext) -> Image.Image:
    rows, sets, cell = layout(a, ctx)
    bins = a.counts.shape[2]
    plot_w = cell * bins
    width = LABEL_W + plot_w + RANGE_W
    top = TOP + KEY_H
    height = top + len(rows) * row_height(len(sets)) + 6
    canvas = np.full((height, width, 3), 255, np.uint8)
    alpha = opacity(a, rows, sets)
    for i in range(len(rows)):
        y0 = top + i * row_height(len(sets))
        for j, s in enumerate(sets):
            colour = np.asarray(set_colour(s), np.float64)
            cells = 255.0 - alpha[i, j][:, None] * (255.0 - colour[None, :])  # (bins, 3)
            band = np.repeat(np.rint(cells).astype(np.uint8), cell, axis=0)  # (plot_w, 3)
            yb = y0 + j * BAND_H
            canvas[yb : yb + BAND_H - 1, LABEL_W : LABEL_W + plot_w] = band[None]
    img = Image.fromarray(canvas, mode="RGB")
    draw = ImageDraw.Draw(img)
    title = f"{a.name} · {a.statistic} per image"
    if a.compared:
        title += " · ranked by " + " vs ".join(a.sets[i] for i in a.compared)
    draw.text((8, 6), _clip(title, 100), fill=(0, 0, 0))
    x = 8
    for s in sets:
        draw.rectangle((x, TOP + 2, x + 10, TOP + 12), fill=set_colour(s))
        label = f"{_clip(a.sets[s], 24)} ({a.sizes[s]})"
        draw.text((x + 14, TOP + 1), label, fill=(0, 0, 0))
        x += 14 + 7 * len(label) + 12
    for i, r in enumerate(rows):
        y0 = top + i * row_height(len(sets))
        mid = y0 + (len(sets) * BAND_H) // 2 - 6
        draw.text((8, mid), _clip(f"{a.layers[r]} · ch {a.channels[r]}", 22), fill=(0, 0, 0))
        lo, hi = float(a.edges[r, 0]), float(a.edges[r, -1])
        draw.text((LABEL_W + plot_w + 6, mid), f"{lo:.3g} … {hi:.3g}", fill=(68, 68, 68))
        draw.rectangle((LABEL_W - 1, y0 - 1, LABEL_W + plot_w, y0 + len(sets) * BAND_H - 1),
                       outline=(200, 200, 200))
    return img


@renderer("distributions", "png")
def density_png(a: Distributions, ctx: RenderContext) -> bytes:
    return encode_png(density_image(a, ctx))


def cell_box(a: Distributions, ctx: RenderContext, row: int, set_index: int, bin_index: int
             ) -> tuple[int, int, int, int]:
    """The pixel box (x0, y0, x1, y1), exclusive ends, of one density cell in the PNG: the
    ``row``-th row drawn, the ``set_index``-th set drawn, a bin (for tests and clients)."""
    _, sets, cell = layout(a, ctx)
    y0 = TOP + KEY_H + row * row_height(len(sets)) + set_index * BAND_H
    x0 = LABEL_W + bin_index * cell
    return x0, y0, x0 + cell, y0 + BAND_H - 1

