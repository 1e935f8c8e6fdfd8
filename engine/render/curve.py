"""Curve artifacts (deletion/insertion curves, an objective over steps) as SVG and PNG."""

from __future__ import annotations

from html import escape

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageDraw

from engine.artifacts import Curve
from engine.render.heatmap import encode_png
from engine.render.registry import RenderContext, renderer

WIDTH, HEIGHT, PAD = 360, 220, 36


def _points(c: Curve) -> tuple[NDArray[np.float64], NDArray[np.float64], tuple[float, float]]:
    """Pixel coordinates of the curve inside the plot box, and the y range drawn."""
    x = np.asarray(c.x, np.float64)
    y = np.asarray(c.y, np.float64)
    finite = np.isfinite(y)
    lo = float(y[finite].min()) if finite.any() else 0.0
    hi = float(y[finite].max()) if finite.any() else 1.0
    lo, hi = min(lo, 0.0), max(hi, lo + 1e-12)
    x0, x1 = float(x.min()) if x.size else 0.0, float(x.max()) if x.size else 1.0
    span = x1 - x0 if x1 > x0 else 1.0
    px = PAD + (x - x0) / span * (WIDTH - 2 * PAD)
    py = HEIGHT - PAD - (np.where(finite, y, lo) - lo) / (hi - lo) * (HEIGHT - 2 * PAD)
    return px, py, (lo, hi)


def _title(c: Curve) -> str:
    return c.name + (f" (AUC {c.auc:.3f})" if c.auc is not None else "")


@renderer("curve", "svg")
def curve_svg(c: Curve, ctx: RenderContext) -> bytes:
    px, py, (lo, hi) = _points(c)
    path = " ".join(f"{a:.1f},{b:.1f}" for a, b in zip(px, py, strict=True))
    box = f'M{PAD},{PAD} V{HEIGHT - PAD} H{WIDTH - PAD}'
    svg = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" font-family="sans-serif" font-size="11">'
        f'<rect width="100%" height="100%" fill="white"/>'
        f'<path d="{box}" stroke="#444" fill="none"/>'
        f'<polyline points="{path}" stroke="#1f77b4" stroke-width="2" fill="none"/>'
        f'<text x="{WIDTH / 2}" y="16" text-anchor="middle">{escape(_title(c))}</text>'
        f'<text x="{WIDTH / 2}" y="{HEIGHT - 6}" text-anchor="middle">{escape(c.x_label)}</text>'
        f'<text x="10" y="{HEIGHT / 2}" transform="rotate(-90 10 {HEIGHT / 2})" '
        f'text-anchor="middle">{escape(c.y_label)}</text>'
        f'<text x="{PAD - 4}" y="{PAD + 4}" text-anchor="end">{hi:.3g}</text>'
        f'<text x="{PAD - 4}" y="{HEIGHT - PAD}" text-anchor="end">{lo:.3g}</text>'
        "</svg>"
    )
    return svg.encode()


@renderer("curve", "png")
def curve_png(c: Curve, ctx: RenderContext) -> bytes:
    img = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(img)
    draw.line([(PAD, PAD), (PAD, HEIGHT - PAD), (WIDTH - PAD, HEIGHT - PAD)], fill=(68, 68, 68))
    px, py, _ = _points(c)
    if px.size > 1:
        draw.line(list(zip(px.tolist(), py.tolist(), strict=True)), fill=(31, 119, 180), width=2)
    draw.text((PAD, 6), _title(c), fill=(0, 0, 0))
    return encode_png(img)
