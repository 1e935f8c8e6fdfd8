"""An ``embedding`` as a scatter PNG: each dataset point a dot coloured by the artifact's
``colour_by`` (label, prediction, or correct / wrong), the caller's placed inputs as
numbered black-ringed diamonds on top, and a legend (each colour's key and its count).
The palette is the viewer's (``service/static/renderers/scatter.js``)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from engine.artifact_types.embedding import Embedding
from engine.render.heatmap import encode_png
from engine.render.registry import RenderContext, renderer

#: Categorical colours (Tableau 10, then its light tints): a class's colour is its index's.
PALETTE: list[tuple[int, int, int]] = [
    (31, 119, 180), (255, 127, 14), (44, 160, 44), (214, 39, 40), (148, 103, 189),
    (140, 86, 75), (227, 119, 194), (127, 127, 127), (188, 189, 34), (23, 190, 207),
    (174, 199, 232), (255, 187, 120), (152, 223, 138), (255, 152, 150), (197, 176, 213),
    (196, 156, 148), (247, 182, 210), (199, 199, 199), (219, 219, 141), (158, 218, 229),
]
UNKNOWN = (190, 190, 190)  # unlabelled, or a class beyond the palette's 20
CORRECT, WRONG = (44, 160, 44), (214, 39, 40)
PLOT, PAD, LEGEND_W, ROW = 560, 14, 190, 18
MAX_LEGEND = 20


@dataclass(frozen=True)
class Key:
    """Per point the index of its legend entry; per entry its name and colour."""

    of_point: NDArray[np.int64]
    names: list[str]
    colours: list[tuple[int, int, int]]


def colour(k: int) -> tuple[int, int, int]:
    return PALETTE[k] if 0 <= k < len(PALETTE) else UNKNOWN


def key(a: Embedding, colour_by: str | None = None) -> Key:
    by = colour_by or a.colour_by
    if by == "correct":
        c = np.asarray(a.correct, np.int64)
        of = np.where(c == 1, 0, np.where(c == 0, 1, 2)).astype(np.int64)
        return Key(of, ["correct", "wrong", "no label"], [CORRECT, WRONG, UNKNOWN])
    if by == "prediction":
        names = list(a.labels)
        of = np.asarray(a.prediction, np.int64)
    else:
        names = list(a.classes)
        of = np.asarray(a.label, np.int64)
    colours = [colour(k) for k in range(len(names))]
    if (of < 0).any():  # unlabelled points: one more entry
        of = np.where(of < 0, len(names), of)
        names.append("unlabelled")
        colours.append(UNKNOWN)
    return Key(of, names, colours)


def project(a: Embedding, size: int = PLOT, pad: int = PAD
            ) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """Pixel positions (x right, y down) of the dataset's and the placed points in a
    ``size`` square with a ``pad`` margin, one scale for both axes (the map's aspect)."""
    every = np.concatenate([a.xy.reshape(-1, 2), a.placed_xy.reshape(-1, 2)]).astype(np.float64)
    lo = every.min(axis=0) if len(every) else np.zeros(2)
    hi = every.max(axis=0) if len(every) else np.ones(2)
    span = float(max((hi - lo).max(), 1e-12))
    inner = size - 2 * pad
    offset = pad + (inner - (hi - lo) / span * inner) / 2  # centred on the shorter axis

    def to_px(xy: NDArray[np.float32]) -> NDArray[np.float64]:
        p = (np.asarray(xy, np.float64).reshape(-1, 2) - lo) / span * inner + offset
        p[:, 1] = size - p[:, 1]  # y up on the map, down in the image
        return p

    return to_px(a.xy), to_px(a.placed_xy)


def radius(n: int) -> int:
    return 3 if n <= 2000 else 2 if n <= 20000 else 1


def draw(a: Embedding, colour_by: str | None = None) -> Image.Image:
    k = key(a, colour_by)
    n = int(a.xy.shape[0])
    legend_rows = min(len(k.names), MAX_LEGEND) + (1 if len(k.names) > MAX_LEGEND else 0)
    legend_rows += 1 if len(a.placed_xy) else 0
    height = max(PLOT, PAD + 20 + ROW * legend_rows + PAD)
    img = Image.new("RGB", (PLOT + LEGEND_W, height), "white")
    g = ImageDraw.Draw(img)
    g.rectangle((0, 0, PLOT - 1, PLOT - 1), outline=(220, 220, 220))
    pts, placed = project(a)
    r = radius(n)
    for (x, y), c in zip(pts.tolist(), k.of_point.tolist(), strict=True):
        g.ellipse((x - r, y - r, x + r, y + r), fill=k.colours[c])
    for p, (x, y) in enumerate(placed.tolist()):
        s = 7
        diamond = [(x, y - s), (x + s, y), (x, y + s), (x - s, y)]
        g.polygon(diamond, fill=(255, 255, 255), outline=(0, 0, 0), width=2)
        g.text((x + s + 2, y - s - 2), str(p + 1), fill=(0, 0, 0))
    # the legend
    lx, ly = PLOT + 10, PAD
    by = colour_by or a.colour_by
    g.text((lx, ly), f"colour: {by}", fill=(0, 0, 0))
    counts = np.bincount(k.of_point, minlength=len(k.names)) if n else np.zeros(len(k.names))
    for j, name in enumerate(k.names[:MAX_LEGEND]):
        y = ly + 20 + j * ROW
        g.rectangle((lx, y + 2, lx + 11, y + 13), fill=k.colours[j])
        g.text((lx + 18, y + 2), f"{name[:18]} ({int(counts[j])})", fill=(0, 0, 0))
    rows = min(len(k.names), MAX_LEGEND)
    if len(k.names) > MAX_LEGEND:
        g.text((lx + 18, ly + 20 + rows * ROW + 2),
               f"+{len(k.names) - MAX_LEGEND} more", fill=(90, 90, 90))
        rows += 1
    if len(a.placed_xy):
        y = ly + 20 + rows * ROW + 7
        g.polygon([(lx + 6, y - 5), (lx + 11, y), (lx + 6, y + 5), (lx + 1, y)],
                  fill=(255, 255, 255), outline=(0, 0, 0))
        g.text((lx + 18, y - 5), f"placed ({len(a.placed_xy)})", fill=(0, 0, 0))
    return img


@renderer("embedding", "png")
def scatter_png(a: Embedding, ctx: RenderContext) -> bytes:
    by = ctx.options.get("colour_by")
    return encode_png(draw(a, by if by in ("label", "prediction", "correct") else None))
