"""Colour maps, heatmap PNGs and overlays."""

from engine.render.colormap import COLORMAPS, apply_colormap
from engine.render.heatmap import encode_png, heatmap_image, normalise, overlay_image

__all__ = [
    "COLORMAPS",
    "apply_colormap",
    "encode_png",
    "heatmap_image",
    "normalise",
    "overlay_image",
]
