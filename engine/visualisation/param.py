"""The image parameterisation of feature visualisation (Lucid's, as Lucent ships it).

The optimised variable is a spectrum, not pixels: for each image and colour channel, the
real and imaginary parts of the half-plane 2-D Fourier coefficients (``rfft2`` layout,
``(h, w // 2 + 1)``). The image is

    spatial = irfft2(scale · spectrum, norm="ortho") / 4       (scale = 1 / frequency)
    rgb     = sigmoid(COLOR · spatial)                          (per pixel, 3 × 3)

so a step of the same size on every coefficient changes low frequencies most (the
"decorrelated" parameterisation of Olah et al., Distill 2017), and the colour matrix —
the square root of ImageNet's colour correlation, normalised by its largest column norm —
decorrelates the colour channels. The sigmoid keeps every pixel in (0, 1).

Each forward map has its exact adjoint here (numpy/scipy only, no autodiff), so the
gradient of anything downstream w.r.t. the image becomes the gradient w.r.t. the
spectrum: ``ImageParam.image(p)`` then ``ImageParam.backward(g)``. The tests check every
adjoint against finite differences.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.fft
from numpy.typing import NDArray

#: Lucid's ``color_correlation_svd_sqrt``: the square root of ImageNet's colour
#: correlation matrix (rows: output channel, columns: decorrelated channel).
COLOR_CORRELATION_SVD_SQRT = np.asarray(
    [[0.26, 0.09, 0.02], [0.27, 0.00, -0.05], [0.27, -0.09, 0.03]], np.float64
)
#: ... normalised by its largest column norm (Lucid's ``color_correlation_normalized``).
COLOR_MATRIX: NDArray[np.float64] = COLOR_CORRELATION_SVD_SQRT / np.max(
    np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0)
)
#: Lucid's constant dividing the inverse FFT ("increasing this seems to reduce saturation").
MAGIC = 4.0

Array = NDArray[Any]


def rfft2d_freqs(h: int, w: int) -> NDArray[np.float64]:
    """The frequency magnitude of each coefficient of an ``rfft2`` of an h × w image."""
    fy = np.fft.fftfreq(h)[:, None]
    fx = np.fft.rfftfreq(w)[None, :]
    out: NDArray[np.float64] = np.sqrt(fx * fx + fy * fy)
    return out


def _as_complex(p: Array) -> Array:
    """(..., 2) real, imaginary -> complex (...), without a copy when p is contiguous."""
    complex_type = np.complex64 if p.dtype == np.float32 else np.complex128
    c = np.ascontiguousarray(p).view(complex_type)
    return c[..., 0]


class FFTImage:
    """Spectra (n, 3, h, w // 2 + 1, 2) (real, imaginary) <-> images (n, 3, h, w)."""

    def __init__(self, h: int, w: int, decay_power: float = 1.0) -> None:
        self.h, self.w = int(h), int(w)
        freqs = rfft2d_freqs(self.h, self.w)
        self.scale: NDArray[np.float64] = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power
        # irfft reads the interior columns twice (as themselves and as their conjugate
        # mirror) and the DC and Nyquist columns once: the adjoint weights them so
        cols = np.full(self.scale.shape[1], 2.0)
        cols[0] = 1.0
        if self.w % 2 == 0:
            cols[-1] = 1.0
        self._adjoint_weight: NDArray[np.float64] = self.scale * cols[None, :] / MAGIC
        self._forward_weight: NDArray[np.float64] = self.scale / MAGIC

    @property
    def spectrum_shape(self) -> tuple[int, int, int]:
        return (self.h, self.w // 2 + 1, 2)

    def init(self, rng: np.random.Generator, n: int, sd: float = 0.01) -> NDArray[np.float64]:
        """Lucid's initial spectra: normal with standard deviation ``sd``."""
        return rng.normal(0.0, sd, (n, 3, *self.spectrum_shape))

    def spatial(self, p: Array) -> Array:
        """Spectra -> images (n, 3, h, w) in the dtype of ``p``."""
        spectrum = _as_complex(p) * self._forward_weight.astype(p.dtype, copy=False)
        img = scipy.fft.irfft2(spectrum, s=(self.h, self.w), norm="ortho")
        out: Array = img.astype(p.dtype, copy=False)
        return out

    def spatial_adjoint(self, g: Array) -> Array:
        """The adjoint of `spatial`: d/d(spectra) of sum(g · spatial(p))."""
        spec = scipy.fft.rfft2(g, norm="ortho")
        spec *= self._adjoint_weight.astype(g.dtype, copy=False)
        out: Array = np.ascontiguousarray(spec).view(g.dtype).reshape(*spec.shape, 2)
        return out


def mix_channels(m: NDArray[np.float64], x: Array, axis: int = 1) -> Array:
    """out[..., c, ...] = sum_k m[c, k] · x[..., k, ...] along ``axis`` (3 channels), as
    elementwise sums: no BLAS call, so nothing competes for the cores with the model's
    thread pool."""
    lead: tuple[Any, ...] = (slice(None),) * (axis % x.ndim)
    xs = [x[(*lead, k)] for k in range(x.shape[axis])]
    a = axis % x.ndim
    out = np.empty((*x.shape[:a], m.shape[0], *x.shape[a + 1 :]), x.dtype)
    for c in range(m.shape[0]):
        acc = out[(*lead, c)]
        first = True
        for k in range(len(xs)):
            if m[c, k] == 0.0:  # a permutation times a diagonal: mostly zeros
                continue
            if first:
                np.multiply(xs[k], x.dtype.type(m[c, k]), out=acc)
                first = False
            else:
                acc += xs[k] * x.dtype.type(m[c, k])
        if first:
            acc[...] = 0
    return out


def decorrelate(x: Array) -> Array:
    """(n, 3, h, w) decorrelated colours -> RGB: each pixel's vector times COLOR_MATRIX."""
    return mix_channels(COLOR_MATRIX, x)


def decorrelate_adjoint(g: Array) -> Array:
    return mix_channels(COLOR_MATRIX.T, g)


def sigmoid(x: Array) -> Array:
    """(1 + tanh(x / 2)) / 2: stable for any |x|, in x's dtype (and 5× scipy's expit)."""
    out: Array = np.tanh(x * x.dtype.type(0.5))
    out += 1.0
    out *= 0.5
    return out


class ImageParam:
    """Spectra -> RGB images in (0, 1), (n, 3, h, w), and the chain rule back.

    ``image`` keeps what ``backward`` needs (the sigmoid's output) for the last call.
    """

    def __init__(
        self, h: int, w: int, *, decorrelate: bool = True, decay_power: float = 1.0
    ) -> None:
        self.fft = FFTImage(h, w, decay_power)
        self.decorrelate = decorrelate
        self._rgb: Array | None = None

    def init(self, rng: np.random.Generator, n: int, sd: float = 0.01) -> NDArray[np.float64]:
        return self.fft.init(rng, n, sd)

    def image(self, p: Array) -> Array:
        z = self.fft.spatial(p)
        if self.decorrelate:
            z = decorrelate(z)
        self._rgb = sigmoid(z)
        return self._rgb

    def backward(self, g: Array) -> Array:
        """d/d(spectra) of sum(g · image(p)) at the last ``image`` call's p."""
        if self._rgb is None:
            raise RuntimeError("backward before image")
        s = self._rgb
        gz = g * s * (1.0 - s)
        if self.decorrelate:
            gz = decorrelate_adjoint(gz)
        return self.fft.spatial_adjoint(gz)
