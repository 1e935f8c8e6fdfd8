"""Random geometric transforms of a batch of images, each with its exact adjoint.

Feature visualisation optimises an image that the model sees through small random
transforms drawn afresh at every step — Lucid's ``standard_transforms``, as Lucent
ships them: pad 12 (constant 0.5), jitter 8, a random scale from 0.90..1.10, a random
rotation of -10..10 degrees (0 more often), jitter again. Every transform is an affine
map of the pixels: ``forward`` applies it to (n, c, h, w), ``adjoint`` applies the
transpose of its linear part to a gradient of the output's shape, so the chain rule runs
back through them with no autodiff. One draw applies to the whole batch (as in Lucent).

* `Pad`: constant border; its adjoint crops.
* `Translate`: an integer shift with zeros shifted in (Lucent's ``jitter``, kornia's
  ``translate``); its adjoint shifts back.
* `Resize`: bilinear, ``align_corners=True`` (torch's ``Upsample``/``interpolate``),
  as two small dense matrices (rows × cols): ``Ry · x · Rxᵀ``; the adjoint is
  ``Ryᵀ · g · Rx``.
* `Rotate`: bilinear resampling about the centre with zeros outside (kornia's
  ``warp_affine``), as a sparse matrix of four weights per output pixel; the adjoint is
  its transpose.
* `scale`: Lucent's ``random_scale``: resize to ``ceil(s · size)``, padded with zeros
  back to the size when smaller.
"""

from __future__ import annotations

import math
from abc import ABC, abstractmethod
from collections.abc import Sequence
from typing import Any

import numpy as np
import scipy.sparse
from numpy.typing import NDArray

Array = NDArray[Any]
HW = tuple[int, int]

#: Lucent's ``random_scale`` choices: 1 + (i - 5) / 50 for i in 0..10 (0.90 .. 1.10).
SCALES: tuple[float, ...] = tuple(1 + (i - 5) / 50.0 for i in range(11))
#: Lucent's ``random_rotate`` choices: -10..10 degrees, and 0 five more times.
ANGLES: tuple[int, ...] = (*range(-10, 11), 0, 0, 0, 0, 0)


class Transform(ABC):
    """An affine map of images (n, c, *in_hw) -> (n, c, *out_hw)."""

    in_hw: HW
    out_hw: HW

    @abstractmethod
    def forward(self, x: Array) -> Array: ...

    @abstractmethod
    def adjoint(self, g: Array) -> Array:
        """The transpose of the linear part, applied to ``g`` (n, c, *out_hw)."""


class Pad(Transform):
    """A constant border of ``top, bottom, left, right`` pixels."""

    def __init__(self, in_hw: HW, pads: tuple[int, int, int, int], value: float = 0.0) -> None:
        self.in_hw = in_hw
        self.pads = pads
        self.value = value
        t, b, left, r = pads
        self.out_hw = (in_hw[0] + t + b, in_hw[1] + left + r)

    @classmethod
    def uniform(cls, in_hw: HW, width: int, value: float = 0.0) -> Pad:
        return cls(in_hw, (width, width, width, width), value)

    def forward(self, x: Array) -> Array:
        t, _, left, _ = self.pads
        h, w = self.in_hw
        out = np.full((*x.shape[:2], *self.out_hw), self.value, dtype=x.dtype)
        out[..., t : t + h, left : left + w] = x
        return out

    def adjoint(self, g: Array) -> Array:
        t, _, left, _ = self.pads
        h, w = self.in_hw
        return np.ascontiguousarray(g[..., t : t + h, left : left + w])


def _shift_slices(n: int, d: int) -> tuple[slice, slice]:
    """out[dst] = in[src] for a shift by d along an axis of length n."""
    if d >= 0:
        return slice(d, n), slice(0, max(n - d, 0))
    return slice(0, max(n + d, 0)), slice(-d, n)


class Translate(Transform):
    """out[y, x] = in[y - dy, x - dx]; zeros where that falls outside."""

    def __init__(self, in_hw: HW, dy: int, dx: int) -> None:
        self.in_hw = self.out_hw = in_hw
        self.dy, self.dx = int(dy), int(dx)

    def _move(self, x: Array, dy: int, dx: int) -> Array:
        if dy == 0 and dx == 0:
            return x
        h, w = x.shape[-2:]
        ydst, ysrc = _shift_slices(h, dy)
        xdst, xsrc = _shift_slices(w, dx)
        out = np.zeros_like(x)
        out[..., ydst, xdst] = x[..., ysrc, xsrc]
        return out

    def forward(self, x: Array) -> Array:
        return self._move(x, self.dy, self.dx)

    def adjoint(self, g: Array) -> Array:
        return self._move(g, -self.dy, -self.dx)


def _bilinear_rows(n_out: int, n_in: int) -> NDArray[np.float64]:
    """(n_out, n_in) linear interpolation, align_corners=True: out i samples in at
    i · (n_in - 1) / (n_out - 1)."""
    m = np.zeros((n_out, n_in))
    if n_in == 1 or n_out == 1:
        m[:, 0] = 1.0
        return m
    src = np.arange(n_out) * ((n_in - 1) / (n_out - 1))
    i0 = np.minimum(np.floor(src).astype(np.int64), n_in - 2)
    frac = src - i0
    rows = np.arange(n_out)
    m[rows, i0] += 1.0 - frac
    m[rows, i0 + 1] += frac
    return m


#: Output rows per block of a banded resize matrix.
BAND_ROWS = 32


class _Banded:
    """A banded (n_out, n_in) matrix as row blocks with the input columns they touch, so
    a product costs its band, not the dense n_out × n_in (each block is a small BLAS
    product; the interpolation matrix has 2 non-zeros a row)."""

    def __init__(self, m: NDArray[np.float64], dtype: Any) -> None:
        self.n_out, self.n_in = m.shape
        self.blocks: list[tuple[int, int, int, int, Array, Array]] = []
        for o0 in range(0, self.n_out, BAND_ROWS):
            o1 = min(o0 + BAND_ROWS, self.n_out)
            cols = np.flatnonzero(np.abs(m[o0:o1]).sum(axis=0))
            i0, i1 = (int(cols[0]), int(cols[-1]) + 1) if cols.size else (0, 1)
            block = m[o0:o1, i0:i1].astype(dtype)
            self.blocks.append((o0, o1, i0, i1, block, np.ascontiguousarray(block.T)))

    def rows(self, x: Array) -> Array:
        """M applied along axis -2: (..., n_in, w) -> (..., n_out, w)."""
        out = np.empty((*x.shape[:-2], self.n_out, x.shape[-1]), x.dtype)
        for o0, o1, i0, i1, b, _ in self.blocks:
            np.matmul(b.astype(x.dtype, copy=False), x[..., i0:i1, :], out=out[..., o0:o1, :])
        return out

    def rows_t(self, g: Array) -> Array:
        """Mᵀ along axis -2: (..., n_out, w) -> (..., n_in, w)."""
        out = np.zeros((*g.shape[:-2], self.n_in, g.shape[-1]), g.dtype)
        for o0, o1, i0, i1, _, bt in self.blocks:
            out[..., i0:i1, :] += np.matmul(bt.astype(g.dtype, copy=False), g[..., o0:o1, :])
        return out

    def cols(self, x: Array) -> Array:
        """M applied along axis -1: (..., h, n_in) -> (..., h, n_out)."""
        out = np.empty((*x.shape[:-1], self.n_out), x.dtype)
        for o0, o1, i0, i1, _, bt in self.blocks:
            np.matmul(x[..., i0:i1], bt.astype(x.dtype, copy=False), out=out[..., o0:o1])
        return out

    def cols_t(self, g: Array) -> Array:
        """Mᵀ along axis -1: (..., h, n_out) -> (..., h, n_in)."""
        out = np.zeros((*g.shape[:-1], self.n_in), g.dtype)
        for o0, o1, i0, i1, b, _ in self.blocks:
            out[..., i0:i1] += np.matmul(g[..., o0:o1], b.astype(g.dtype, copy=False))
        return out


class Resize(Transform):
    """Bilinear resize (align_corners=True), separable: Ry · x · Rxᵀ (banded)."""

    def __init__(self, in_hw: HW, out_hw: HW, dtype: Any = np.float32) -> None:
        self.in_hw, self.out_hw = in_hw, out_hw
        self.ry = _Banded(_bilinear_rows(out_hw[0], in_hw[0]), dtype)
        self.rx = _Banded(_bilinear_rows(out_hw[1], in_hw[1]), dtype)

    def forward(self, x: Array) -> Array:
        if self.in_hw == self.out_hw:
            return x
        return self.ry.rows(self.rx.cols(x))

    def adjoint(self, g: Array) -> Array:
        if self.in_hw == self.out_hw:
            return g
        return self.rx.cols_t(self.ry.rows_t(g))


def rotation_matrix(hw: HW, degrees: float, dtype: Any = np.float32) -> scipy.sparse.csr_matrix:
    """(h·w, h·w): bilinear sampling of an image rotated by ``degrees`` about its centre
    ((w - 1) / 2, (h - 1) / 2), zeros outside (kornia's ``get_rotation_matrix2d`` +
    ``warp_affine``: output pixel p samples the input at R⁻¹ (p - c) + c)."""
    h, w = hw
    theta = math.radians(degrees)
    cos, sin = math.cos(theta), math.sin(theta)
    cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
    yy, xx = np.meshgrid(np.arange(h, dtype=np.float64), np.arange(w, dtype=np.float64),
                         indexing="ij")
    dy, dx = yy - cy, xx - cx
    sx = (cos * dx - sin * dy + cx).ravel()
    sy = (sin * dx + cos * dy + cy).ravel()
    x0 = np.floor(sx).astype(np.int64)
    y0 = np.floor(sy).astype(np.int64)
    fx, fy = sx - x0, sy - y0
    # four taps a row (a tap outside the image keeps weight 0), so the CSR arrays are
    # built directly, with no sorting
    taps_cols = np.empty((h * w, 4), np.int64)
    taps_vals = np.empty((h * w, 4), np.float64)
    for t, (oy, ox, wgt) in enumerate((
        (0, 0, (1 - fy) * (1 - fx)),
        (0, 1, (1 - fy) * fx),
        (1, 0, fy * (1 - fx)),
        (1, 1, fy * fx),
    )):
        yi, xi = y0 + oy, x0 + ox
        inside = (yi >= 0) & (yi < h) & (xi >= 0) & (xi < w)
        taps_cols[:, t] = np.where(inside, yi * w + xi, 0)
        taps_vals[:, t] = np.where(inside, wgt, 0.0)
    indptr = np.arange(0, 4 * h * w + 1, 4, dtype=np.int64)
    return scipy.sparse.csr_matrix(
        (taps_vals.ravel().astype(dtype), taps_cols.ravel(), indptr), shape=(h * w, h * w)
    )


class Rotate(Transform):
    """Rotation about the centre by ``degrees`` (bilinear, zeros outside), same size."""

    def __init__(self, in_hw: HW, degrees: float, dtype: Any = np.float32) -> None:
        self.in_hw = self.out_hw = in_hw
        self.degrees = float(degrees)
        self.matrix = rotation_matrix(in_hw, self.degrees, dtype)

    def _apply(self, m: Any, x: Array) -> Array:
        n, c = x.shape[:2]
        h, w = self.in_hw
        cols = np.ascontiguousarray(x.reshape(n * c, h * w).T)  # (h·w, n·c)
        out = np.asarray(m.astype(x.dtype, copy=False) @ cols)
        return np.ascontiguousarray(out.T).reshape(n, c, h, w)

    def forward(self, x: Array) -> Array:
        if self.degrees == 0.0:
            return x
        return self._apply(self.matrix, x)

    def adjoint(self, g: Array) -> Array:
        if self.degrees == 0.0:
            return g
        return self._apply(self.matrix.T, g)  # CSC: the transpose without a conversion


def scale(in_hw: HW, factor: float) -> list[Transform]:
    """Lucent's ``random_scale`` at one factor: resize to ceil(factor · size), then zeros
    around it back up to the size when it shrank (each side ceil(difference / 2))."""
    h, w = in_hw
    sh, sw = math.ceil(factor * h - 1e-9), math.ceil(factor * w - 1e-9)
    out: list[Transform] = [Resize(in_hw, (sh, sw))]
    py, px = max(0, math.ceil((h - sh) / 2)), max(0, math.ceil((w - sw) / 2))
    if py or px:
        out.append(Pad((sh, sw), (py, py, px, px), 0.0))
    return out


class Chain(Transform):
    """Transforms applied in order; the adjoint runs them back in reverse."""

    def __init__(self, in_hw: HW, transforms: Sequence[Transform]) -> None:
        self.in_hw = in_hw
        self.transforms = list(transforms)
        hw = in_hw
        for t in self.transforms:
            if t.in_hw != hw:
                raise ValueError(f"transform {t!r} takes {t.in_hw}, gets {hw}")
            hw = t.out_hw
        self.out_hw = hw

    def forward(self, x: Array) -> Array:
        for t in self.transforms:
            x = t.forward(x)
        return x

    def adjoint(self, g: Array) -> Array:
        for t in reversed(self.transforms):
            g = t.adjoint(g)
        return g


#: The standard transforms' parameters (Lucent's ``standard_transforms``).
PAD = 12
PAD_VALUE = 0.5
JITTER = 8
#: Lucent's list ends with jitter(4); the issue's recipe (and ours) with jitter 2.
FINAL_JITTER = 2


def standard_transforms(
    rng: np.random.Generator,
    in_hw: HW,
    out_hw: HW | None = None,
    *,
    final_jitter: int = FINAL_JITTER,
) -> Chain:
    """One draw of pad 12 (0.5), jitter 8, random scale, random rotation, jitter 2 —
    then a bilinear resize to ``out_hw`` (the model's input) when given."""
    ts: list[Transform] = [Pad.uniform(in_hw, PAD, PAD_VALUE)]
    hw = ts[-1].out_hw
    ts.append(Translate(hw, int(rng.integers(JITTER)), int(rng.integers(JITTER))))
    ts.extend(scale(hw, float(rng.choice(SCALES))))
    hw = ts[-1].out_hw
    angle = float(rng.choice(ANGLES))
    if angle != 0.0:
        ts.append(Rotate(hw, angle))
    ts.append(Translate(hw, int(rng.integers(final_jitter)), int(rng.integers(final_jitter))))
    if out_hw is not None and out_hw != hw:
        ts.append(Resize(hw, out_hw))
    return Chain(in_hw, ts)


def resize_only(in_hw: HW, out_hw: HW) -> Chain:
    """No random transforms: only the resize to the model's input (none when equal)."""
    return Chain(in_hw, [Resize(in_hw, out_hw)] if in_hw != out_hw else [])
