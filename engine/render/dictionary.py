"""A semantic dictionary (``dictionary``) over the input: ``overlay`` is the input image
with the layer's grid of positions drawn on it (the viewer places each position's
thumbnails in its cell; the method's ``sheet`` artifact is the same as one PNG)."""

from __future__ import annotations

from PIL import ImageDraw

from engine.artifact_types.inside import Dictionary
from engine.render.heatmap import encode_png
from engine.render.registry import RenderContext, renderer


@renderer("dictionary", "overlay")
def dictionary_overlay(artifact: Dictionary, ctx: RenderContext) -> bytes:
    base = ctx.image().convert("RGB")
    h, w = int(artifact.channels.shape[0]), int(artifact.channels.shape[1])
    draw = ImageDraw.Draw(base)
    width, height = base.size
    for i in range(1, w):
        x = round(i * width / w)
        draw.line([(x, 0), (x, height)], fill=(255, 255, 255), width=1)
    for j in range(1, h):
        y = round(j * height / h)
        draw.line([(0, y), (width, y)], fill=(255, 255, 255), width=1)
    return encode_png(base)
