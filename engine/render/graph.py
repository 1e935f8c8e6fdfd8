"""A ``graph`` artifact drawn: layers as columns (input side on the left), each node its
max-activating patch in a box (or a plain box without one) with its channel and score
under it, edges as curves from the lower layer's node to the upper one's, their width and
opacity by weight. The SVG and the PNG (Pillow) use the artifact's one layout
(:meth:`engine.artifact_types.graph.Graph.layout`)."""

from __future__ import annotations

from typing import Any
from xml.sax.saxutils import escape, quoteattr

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from engine.artifact_types.graph import Graph, png_data_uri
from engine.render.heatmap import encode_png
from engine.render.registry import RenderContext, renderer

EDGE_RGB = (31, 119, 180)
BOX_RGB = (60, 60, 60)
TEXT_RGB = (30, 30, 30)
MAX_EDGE = 8.0
#: The PNG is drawn at this scale of the layout (crisper patches and lines).
PNG_SCALE = 2


def edge_width(weight: float) -> float:
    return 1.0 + (MAX_EDGE - 1.0) * float(min(max(weight, 0.0), 1.0))


def _fmt(v: float) -> str:
    return f"{v:.2f}" if abs(v) < 100 else f"{v:.0f}"


Curve = tuple[float, float, float, float]


def _geometry(g: Graph) -> tuple[dict[str, Any], list[tuple[dict[str, Any], Curve]]]:
    """The layout and each edge with its curve (x0, y0, x1, y1): from the right side of the
    lower node to the left side of the upper one, at mid-height."""
    lay = g.layout()
    pos = lay["positions"]
    curves: list[tuple[dict[str, Any], Curve]] = []
    for e in g.edges:
        a, b = pos.get(str(e["source"])), pos.get(str(e["target"]))
        if a is None or b is None:
            continue
        curves.append((e, (float(a["x"] + a["size"]), float(a["y"] + a["size"] / 2),
                           float(b["x"]), float(b["y"] + b["size"] / 2))))
    return lay, curves


@renderer("graph", "svg")
def graph_svg(g: Graph, ctx: RenderContext) -> bytes:
    lay, curves = _geometry(g)
    w, h = lay["width"], lay["height"]
    out = [f'<svg xmlns="http://www.w3.org/2000/svg" width="{w:.0f}" height="{h:.0f}" '
           f'viewBox="0 0 {w:.0f} {h:.0f}" font-family="sans-serif" font-size="11">',
           f'<rect width="{w:.0f}" height="{h:.0f}" fill="#ffffff"/>']
    if g.title:
        out.append(f'<title>{escape(g.title)}</title>')
    for col in lay["columns"]:
        out.append(f'<text class="layer" x="{col["x"]:.1f}" y="20" text-anchor="middle" '
                   f'font-weight="bold">{escape(str(col["layer"]))}</text>')
    out.append('<g class="edges" fill="none">')
    for e, (x0, y0, x1, y1) in curves:
        mid = (x0 + x1) / 2
        wt = float(e["weight"])
        out.append(
            f'<path class="edge" data-source={quoteattr(str(e["source"]))} '
            f'data-target={quoteattr(str(e["target"]))} '
            f'd="M{x0:.1f},{y0:.1f} C{mid:.1f},{y0:.1f} {mid:.1f},{y1:.1f} {x1:.1f},{y1:.1f}" '
            f'stroke="rgb{EDGE_RGB}" stroke-width="{edge_width(wt):.2f}" '
            f'stroke-opacity="{0.25 + 0.6 * min(max(wt, 0.0), 1.0):.2f}">'
            f'<title>{escape(str(e["source"]))} → {escape(str(e["target"]))}: weight '
            f'{_fmt(wt)}</title></path>')
    out.append("</g><g class=\"nodes\">")
    pos = lay["positions"]
    for node in g.nodes:
        p = pos[str(node["id"])]
        x, y, s = p["x"], p["y"], p["size"]
        out.append(f'<g class="node" data-id={quoteattr(str(node["id"]))}>')
        out.append(f'<title>{escape(str(node["layer"]))} channel {node["channel"]}: score '
                   f'{_fmt(float(node["score"]))}</title>')
        k = node.get("patch")
        if isinstance(k, int) and k < len(g.patches):
            out.append(f'<image x="{x:.1f}" y="{y:.1f}" width="{s:.0f}" height="{s:.0f}" '
                       f'preserveAspectRatio="none" style="image-rendering:pixelated" '
                       f'href="{png_data_uri(g.patches[k])}"/>')
        out.append(f'<rect x="{x:.1f}" y="{y:.1f}" width="{s:.0f}" height="{s:.0f}" '
                   f'fill="none" stroke="rgb{BOX_RGB}" stroke-width="1"/>')
        out.append(f'<text x="{x + s / 2:.1f}" y="{y + s + 12:.1f}" text-anchor="middle">'
                   f'c{node["channel"]} · {_fmt(float(node["score"]))}</text></g>')
    out.append("</g></svg>")
    return "\n".join(out).encode()


def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    try:
        return ImageFont.load_default(size=size)
    except TypeError:  # pragma: no cover - Pillow < 10.1
        return ImageFont.load_default()


def _bezier(x0: float, y0: float, x1: float, y1: float, steps: int = 24
            ) -> list[tuple[float, float]]:
    t = np.linspace(0.0, 1.0, steps)[:, None]
    mid = (x0 + x1) / 2
    p = np.asarray([[x0, y0], [mid, y0], [mid, y1], [x1, y1]], np.float64)
    pts = ((1 - t) ** 3 * p[0] + 3 * (1 - t) ** 2 * t * p[1] + 3 * (1 - t) * t ** 2 * p[2]
           + t ** 3 * p[3])
    return [(float(a), float(b)) for a, b in pts]


@renderer("graph", "png")
def graph_png(g: Graph, ctx: RenderContext) -> bytes:
    lay, curves = _geometry(g)
    k = PNG_SCALE
    img = Image.new("RGB", (int(lay["width"] * k), int(lay["height"] * k)), (255, 255, 255))
    edges = Image.new("RGBA", img.size, (255, 255, 255, 0))
    de = ImageDraw.Draw(edges)
    for e, (x0, y0, x1, y1) in curves:
        wt = min(max(float(e["weight"]), 0.0), 1.0)
        alpha = int(255 * (0.25 + 0.6 * wt))
        de.line([(x * k, y * k) for x, y in _bezier(x0, y0, x1, y1)],
                fill=(*EDGE_RGB, alpha), width=max(1, round(edge_width(wt) * k)), joint="curve")
    img.paste(edges, (0, 0), edges)
    d = ImageDraw.Draw(img)
    font = _font(11 * k)
    bold = _font(12 * k)
    for col in lay["columns"]:
        d.text((col["x"] * k, 20 * k), str(col["layer"]), fill=TEXT_RGB, font=bold,
               anchor="ms")
    for node in g.nodes:
        p = lay["positions"][str(node["id"])]
        x, y, s = (round(p[c] * k) for c in ("x", "y", "size"))
        idx = node.get("patch")
        if isinstance(idx, int) and idx < len(g.patches):
            patch = Image.fromarray(np.asarray(g.patches[idx], np.uint8), mode="RGB")
            img.paste(patch.resize((s, s), Image.Resampling.NEAREST), (x, y))
        d.rectangle((x, y, x + s - 1, y + s - 1), outline=BOX_RGB, width=max(1, k // 2))
        d.text((x + s / 2, y + s + 12 * k), f"c{node['channel']} · {_fmt(float(node['score']))}",
               fill=TEXT_RGB, font=font, anchor="ms")
    return encode_png(img)
