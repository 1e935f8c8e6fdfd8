"""Reference images that perturbation methods put in place of hidden pixels."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image, ImageFilter

BaselineName = Literal["zero", "mean", "blur"]
Baseline = BaselineName | tuple[int, int, int]


def baseline_pixels(
    pixels: NDArray[np.float32], baseline: Baseline, blur_radius: float = 10.0
) -> NDArray[np.float32]:
    """A (H, W, 3) image of the same size as ``pixels`` (0..255)."""
    if baseline == "zero":
        return np.zeros_like(pixels)
    if baseline == "mean":
        return np.broadcast_to(pixels.mean(axis=(0, 1), keepdims=True), pixels.shape).astype(
            np.float32
        )
    if baseline == "blur":
        img = Image.fromarray(np.clip(np.rint(pixels), 0, 255).astype(np.uint8), mode="RGB")
        blurred = img.filter(ImageFilter.GaussianBlur(radius=blur_radius))
        return np.asarray(blurred, dtype=np.float32)
    colour = np.asarray(baseline, dtype=np.float32).reshape(1, 1, 3)
    return np.broadcast_to(colour, pixels.shape).astype(np.float32)
