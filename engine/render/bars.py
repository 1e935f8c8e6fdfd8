"""Feature weights as a signed bar chart, sorted by |weight|, each bar labelled with the
feature and the row's value (or the condition LIME weighed), PNG and SVG."""

from __future__ import annotations

from html import escape

from PIL import Image, ImageDraw

from engine.artifact_types.features import FeatureWeights
from engine.render.heatmap import encode_png
from engine.render.registry import RenderContext, renderer

MAX_BARS = 30
"""Bars drawn; the rest are summed into one "other features" bar."""
ROW, LABEL_W, BAR_W, VALUE_W, TOP = 22, 260, 320, 80, 34
POSITIVE = (31, 119, 180)  # blue: pushes the score up
NEGATIVE = (214, 39, 40)  # red: pushes it down


def _rows(a: FeatureWeights, limit: int) -> list[tuple[str, float]]:
    order = a.order()
    rows = [(a.label(i), float(a.weights[i])) for i in order[:limit]]
    rest = order[limit:]
    if rest:
        rows.append((f"{len(rest)} other features", float(sum(a.weights[i] for i in rest))))
    return rows


def _title(a: FeatureWeights) -> str:
    parts = [a.name]
    if a.f_x is not None:
        parts.append(f"score {a.f_x:.4g}")
    if a.base is not None:
        parts.append(f"base {a.base:.4g}")
    return " · ".join(parts)


def _clip(text: str, n: int = 40) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _geometry(rows: list[tuple[str, float]]) -> tuple[int, int, float, float]:
    """(width, height, x of the zero line, pixels per unit)."""
    width = LABEL_W + BAR_W + VALUE_W
    height = TOP + ROW * max(len(rows), 1) + 10
    lo = min([0.0, *(w for _, w in rows)])
    hi = max([0.0, *(w for _, w in rows)])
    span = hi - lo if hi > lo else 1.0
    scale = BAR_W / span
    return width, height, LABEL_W + (-lo) * scale, scale


@renderer("feature_weights", "png")
def bars_png(a: FeatureWeights, ctx: RenderContext) -> bytes:
    rows = _rows(a, int(ctx.options.get("max_bars", MAX_BARS)))
    width, height, zero, scale = _geometry(rows)
    img = Image.new("RGB", (width, height), "white")
    draw = ImageDraw.Draw(img)
    draw.text((8, 8), _title(a), fill=(0, 0, 0))
    for k, (label, w) in enumerate(rows):
        y = TOP + k * ROW
        x1 = zero + w * scale
        box = (min(zero, x1), y + 3, max(zero, x1), y + ROW - 3)
        draw.rectangle(box, fill=POSITIVE if w >= 0 else NEGATIVE)
        draw.text((8, y + 5), _clip(label), fill=(0, 0, 0))
        draw.text((LABEL_W + BAR_W + 6, y + 5), f"{w:+.4g}", fill=(0, 0, 0))
    draw.line([(zero, TOP - 2), (zero, height - 6)], fill=(68, 68, 68))
    return encode_png(img)


@renderer("feature_weights", "svg")
def bars_svg(a: FeatureWeights, ctx: RenderContext) -> bytes:
    rows = _rows(a, int(ctx.options.get("max_bars", MAX_BARS)))
    width, height, zero, scale = _geometry(rows)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="12">',
        '<rect width="100%" height="100%" fill="white"/>',
        f'<text x="8" y="18">{escape(_title(a))}</text>',
    ]
    for k, (label, w) in enumerate(rows):
        y = TOP + k * ROW
        x1 = zero + w * scale
        colour = "#%02x%02x%02x" % (POSITIVE if w >= 0 else NEGATIVE)
        parts.append(
            f'<rect x="{min(zero, x1):.1f}" y="{y + 3}" width="{abs(x1 - zero):.1f}" '
            f'height="{ROW - 6}" fill="{colour}"><title>{escape(label)}: {w:.6g}</title></rect>'
        )
        parts.append(f'<text x="8" y="{y + 15}">{escape(_clip(label))}</text>')
        parts.append(f'<text x="{LABEL_W + BAR_W + 6}" y="{y + 15}">{w:+.4g}</text>')
    parts.append(
        f'<line x1="{zero:.1f}" y1="{TOP - 2}" x2="{zero:.1f}" y2="{height - 6}" stroke="#444"/>'
    )
    parts.append("</svg>")
    return "".join(parts).encode()
