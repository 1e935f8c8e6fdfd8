"""Image artifacts (a channel grid, a feature visualisation) as PNG."""

from __future__ import annotations

from PIL import Image

from engine.artifacts import ImageArtifact
from engine.render.heatmap import encode_png
from engine.render.registry import RenderContext, renderer


@renderer("image", "png")
def image_png(artifact: ImageArtifact, ctx: RenderContext) -> bytes:
    return encode_png(Image.fromarray(artifact.pixels, mode="RGB"))
