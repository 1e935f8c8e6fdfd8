"""The image parameterisation's adjoints against finite differences: inverse FFT (even and
odd sizes, the DC and Nyquist columns), colour decorrelation, sigmoid, and the chain."""

from __future__ import annotations

import numpy as np
import pytest

from engine.visualisation.param import (
    COLOR_CORRELATION_SVD_SQRT,
    COLOR_MATRIX,
    FFTImage,
    ImageParam,
    decorrelate,
    decorrelate_adjoint,
    rfft2d_freqs,
    sigmoid,
)


def directional_fd(f, x, d, eps=1e-6):  # type: ignore[no-untyped-def]
    return (f(x + eps * d) - f(x - eps * d)) / (2 * eps)


@pytest.mark.parametrize("hw", [(8, 8), (7, 9), (6, 5), (1, 4), (16, 12)])
def test_inverse_fft_adjoint(hw: tuple[int, int]) -> None:
    """<spatial(p), g> = <p, spatial_adjoint(g)> for every coefficient, imaginary parts of
    the DC and Nyquist columns (which irfft ignores) included."""
    rng = np.random.default_rng(0)
    f = FFTImage(*hw)
    p = rng.normal(size=(2, 3, *f.spectrum_shape))
    g = rng.normal(size=(2, 3, *hw))
    lhs = np.sum(f.spatial(p) * g)
    rhs = np.sum(p * f.spatial_adjoint(g))
    assert lhs == pytest.approx(rhs, rel=1e-12, abs=1e-12)
    # and coefficient by coefficient, against finite differences of the forward map
    grad = f.spatial_adjoint(g)
    loss = lambda q: float(np.sum(f.spatial(q) * g))  # noqa: E731
    for idx in [(0, 0, 0, 0, 0), (1, 2, 0, 0, 1), (0, 1, hw[0] - 1, f.spectrum_shape[1] - 1, 1),
                (1, 0, hw[0] // 2, f.spectrum_shape[1] // 2, 0)]:
        e = np.zeros_like(p)
        e[idx] = 1.0
        assert directional_fd(loss, p, e) == pytest.approx(grad[idx], rel=1e-6, abs=1e-9)


def test_spectrum_scale_is_one_over_frequency() -> None:
    f = FFTImage(8, 8)
    freqs = rfft2d_freqs(8, 8)
    assert freqs.shape == (8, 5)
    assert f.scale[0, 0] == pytest.approx(8.0)  # DC: 1 / (1 / max(h, w))
    assert f.scale[0, 1] == pytest.approx(8.0)  # the lowest frequency, 1/8
    assert f.scale[4, 4] == pytest.approx(1 / np.hypot(0.5, 0.5))


def test_colour_matrix_is_lucids_normalised() -> None:
    norms = np.linalg.norm(COLOR_CORRELATION_SVD_SQRT, axis=0)
    np.testing.assert_allclose(COLOR_MATRIX, COLOR_CORRELATION_SVD_SQRT / norms.max())
    assert np.linalg.norm(COLOR_MATRIX, axis=0).max() == pytest.approx(1.0)
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 3, 4, 5))
    want = np.einsum("ck,nkhw->nchw", COLOR_MATRIX, x)
    np.testing.assert_allclose(decorrelate(x), want, rtol=1e-12)
    g = rng.normal(size=x.shape)
    assert np.sum(decorrelate(x) * g) == pytest.approx(np.sum(x * decorrelate_adjoint(g)))


def test_sigmoid_is_stable() -> None:
    x = np.array([-1000.0, -10.0, 0.0, 10.0, 1000.0])
    s = sigmoid(x)
    assert np.isfinite(s).all() and s[2] == 0.5
    np.testing.assert_allclose(s[1:4], 1 / (1 + np.exp(-x[1:4])))


@pytest.mark.parametrize("decorrelated", [True, False])
def test_chain_to_the_spectrum_matches_finite_differences(decorrelated: bool) -> None:
    """spectrum -> irfft -> colour -> sigmoid: ImageParam.backward is the gradient of
    <image(p), g> in random directions and at single coefficients."""
    rng = np.random.default_rng(2)
    ip = ImageParam(10, 7, decorrelate=decorrelated)
    p = ip.init(rng, 2, sd=0.5)  # large enough that the sigmoid is far from linear
    g = rng.normal(size=(2, 3, 10, 7))
    loss = lambda q: float(np.sum(ip.image(q) * g))  # noqa: E731
    ip.image(p)
    grad = ip.backward(g)
    for _ in range(3):
        d = rng.normal(size=p.shape)
        assert directional_fd(loss, p, d) == pytest.approx(np.sum(grad * d), rel=1e-6)
    e = np.zeros_like(p)
    e[1, 2, 3, 2, 1] = 1.0
    assert directional_fd(loss, p, e) == pytest.approx(grad[1, 2, 3, 2, 1], rel=1e-5, abs=1e-9)


def test_initial_image_is_mid_grey_and_float32_works() -> None:
    ip = ImageParam(16, 16)
    p = ip.init(np.random.default_rng(0), 3).astype(np.float32)
    img = ip.image(p)
    assert img.dtype == np.float32 and img.shape == (3, 3, 16, 16)
    assert np.abs(img - 0.5).max() < 0.05
    gp = ip.backward(np.ones_like(img))
    assert gp.dtype == np.float32 and gp.shape == p.shape
