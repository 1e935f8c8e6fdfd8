"""Deletion and insertion curves (Petsiuk, Das & Saenko, "RISE", BMVC 2018).

Pixels are ranked by decreasing attribution (the (H, W) map; ties keep raster order).

- **deletion** starts from the image and, step by step, replaces the next
  ``pixels_per_step`` most important pixels with a *substrate* (``zero``: black, or the
  image's ``mean`` colour, both in pixel space 0..255 via
  :func:`engine.modalities.baselines.baseline_pixels`). A faithful map makes the target's
  probability fall fast: lower AUC is better.
- **insertion** starts from a blurred copy of the image and pastes the original pixels back
  in the same order. A faithful map makes the probability rise fast: higher AUC is better.

At each step the target's softmax probability is measured (``LoadedModel.scores`` →
softmax). With ``n = H·W`` pixels and ``s = ceil(n / pixels_per_step)`` steps the curve has
``s + 1`` points (the start included) and the score is the normalised trapezoid area over
x in [0, 1]: ``AUC = trapz(probs, dx=1/s)``. 224 pixels per step on 224×224 gives 224 steps,
225 forward passes. The step images are generated lazily, one batch at a time.

The insertion blur is the one of the RISE code: a Gaussian of σ = 5 on an 11-tap kernel.
It is implemented here explicitly, in numpy: the sampled Gaussian
``k[i] = exp(-i² / (2σ²))`` for ``i = -5..5``, normalised to sum 1, applied separably (rows,
then columns) with reflect padding at the borders ("reflect" = mirror without repeating the
edge pixel). (RISE's code builds its kernel by smoothing a delta with scipy and pads with
zeros; the sampled kernel is the textbook one, and reflect padding does not darken the
borders.)
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

from engine.methods.base import Progress, no_progress
from engine.modalities.baselines import baseline_pixels
from engine.models.runtime import LoadedModel, softmax

Substrate = Literal["zero", "mean"]
InsertionStart = Literal["blur", "zero", "mean"]

BLUR_SIGMA = 5.0
BLUR_TAPS = 11


@dataclass(frozen=True)
class CurveResult:
    """A deletion or insertion curve and its normalised area."""

    auc: float
    curve: list[float]
    forward_passes: int
    steps: int
    pixels_per_step: int

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def gaussian_kernel(sigma: float = BLUR_SIGMA, taps: int = BLUR_TAPS) -> NDArray[np.float64]:
    """The sampled 1-D Gaussian of ``taps`` taps (odd), normalised to sum 1."""
    if taps < 1 or taps % 2 == 0:
        raise ValueError(f"taps must be odd and positive, not {taps}")
    r = taps // 2
    i = np.arange(-r, r + 1, dtype=np.float64)
    k = np.exp(-(i**2) / (2.0 * sigma**2))
    out: NDArray[np.float64] = k / k.sum()
    return out


def _convolve_axis(
    x: NDArray[np.float64], k: NDArray[np.float64], axis: int
) -> NDArray[np.float64]:
    r = k.shape[0] // 2
    n = x.shape[axis]
    pad = [(0, 0)] * x.ndim
    pad[axis] = (r, r)
    mode = "reflect" if n > r else "symmetric" if n > 1 else "edge"
    xp = np.pad(x, pad, mode=mode)  # type: ignore[call-overload]
    out = np.zeros_like(x)
    for j, w in enumerate(k):
        out += w * np.take(xp, np.arange(j, j + n), axis=axis)
    return out


def gaussian_blur(
    pixels: NDArray[np.float32], sigma: float = BLUR_SIGMA, taps: int = BLUR_TAPS
) -> NDArray[np.float32]:
    """(H, W, 3) pixels blurred with the separable ``taps``-tap Gaussian (reflect borders)."""
    k = gaussian_kernel(sigma, taps)
    x = pixels.astype(np.float64)
    x = _convolve_axis(_convolve_axis(x, k, 0), k, 1)
    return x.astype(np.float32)


def pixel_order(attribution: NDArray[Any]) -> NDArray[np.int64]:
    """Rank of every pixel (H, W) by decreasing attribution: 0 = most important.

    Ties keep raster order; NaN counts as the least important.
    """
    flat = np.nan_to_num(attribution.astype(np.float64).ravel(), nan=-np.inf)
    order = np.argsort(-flat, kind="stable")
    rank = np.empty(order.shape[0], dtype=np.int64)
    rank[order] = np.arange(order.shape[0])
    return rank.reshape(attribution.shape)


def auc(curve: NDArray[np.float64] | list[float]) -> float:
    """Normalised trapezoid area of a curve sampled at ``len(curve)`` evenly spaced x in [0, 1]."""
    y = np.asarray(curve, dtype=np.float64)
    if y.shape[0] < 2:
        raise ValueError("a curve needs at least two points")
    dx = 1.0 / (y.shape[0] - 1)
    return float(dx * (y.sum() - 0.5 * (y[0] + y[-1])))


def _curve(
    model: LoadedModel,
    start: NDArray[np.float32],
    finish: NDArray[np.float32],
    target: int,
    attribution: NDArray[Any],
    pixels_per_step: int | None,
    batch_size: int,
    progress: Progress,
) -> CurveResult:
    """Step i shows ``finish`` at the ``i · pixels_per_step`` top-ranked pixels, ``start``
    elsewhere."""
    h, w = int(start.shape[0]), int(start.shape[1])
    if attribution.shape != (h, w):
        raise ValueError(f"attribution of shape {attribution.shape} for an image of {(h, w)}")
    if not 0 <= target < len(model.labels):
        raise ValueError(f"target {target} out of range for {len(model.labels)} classes")
    n = h * w
    per = w if pixels_per_step is None else int(pixels_per_step)
    if per < 1:
        raise ValueError("pixels_per_step must be at least 1")
    steps = math.ceil(n / per)
    rank = pixel_order(attribution)
    total = steps + 1
    probs: list[float] = []
    for b0 in range(0, total, batch_size):
        idx = np.arange(b0, min(b0 + batch_size, total))
        counts = np.minimum(idx * per, n)
        shown = (rank[None, :, :] < counts[:, None, None])[..., None]
        batch = np.where(shown, finish[None], start[None]).astype(np.float32)
        p = softmax(model.scores(batch))[:, target]
        probs.extend(float(v) for v in p)
        progress(min(1.0, (b0 + idx.shape[0]) / total))
    return CurveResult(
        auc=auc(probs), curve=probs, forward_passes=total, steps=steps, pixels_per_step=per
    )


def deletion(
    model: LoadedModel,
    pixels: NDArray[np.float32],
    target: int,
    attribution: NDArray[Any],
    *,
    pixels_per_step: int | None = None,
    substrate: Substrate = "zero",
    batch_size: int = 16,
    progress: Progress = no_progress,
) -> CurveResult:
    """The deletion curve of ``attribution`` (H, W) for ``pixels`` (H, W, 3, 0..255).

    ``pixels_per_step`` defaults to the image width (H steps: 224 on 224×224).
    """
    sub = baseline_pixels(pixels, substrate)
    return _curve(model, pixels, sub, target, attribution, pixels_per_step, batch_size, progress)


def insertion(
    model: LoadedModel,
    pixels: NDArray[np.float32],
    target: int,
    attribution: NDArray[Any],
    *,
    pixels_per_step: int | None = None,
    start: InsertionStart = "blur",
    batch_size: int = 16,
    progress: Progress = no_progress,
) -> CurveResult:
    """The insertion curve: from a blurred copy (σ = 5, 11 taps; or ``zero``/``mean``),
    the original pixels pasted back by decreasing attribution."""
    if start == "blur":
        base = gaussian_blur(pixels)
    else:
        base = baseline_pixels(pixels, start)
    return _curve(model, base, pixels, target, attribution, pixels_per_step, batch_size, progress)
