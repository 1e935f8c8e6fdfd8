"""Each random transform's adjoint against finite differences (and the dot-product test),
with the forward maps checked on hand-computed cases."""

from __future__ import annotations

import numpy as np
import pytest

from engine.visualisation.transforms import (
    ANGLES,
    SCALES,
    Chain,
    Pad,
    Resize,
    Rotate,
    Transform,
    Translate,
    resize_only,
    scale,
    standard_transforms,
)

HW = (11, 13)


def check_adjoint(t: Transform, seed: int = 0) -> None:
    """The linear part L(x) = t(x) - t(0): <L x, g> == <x, adjoint(g)>, and the adjoint's
    entries are the finite-difference derivatives of <t(x), g> (exact for affine maps)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(2, 3, *t.in_hw))
    g = rng.normal(size=(2, 3, *t.out_hw))
    y0 = t.forward(np.zeros_like(x))
    lhs = np.sum((t.forward(x) - y0) * g)
    adj = t.adjoint(g)
    assert adj.shape == x.shape
    assert lhs == pytest.approx(np.sum(x * adj), rel=1e-10, abs=1e-10)
    loss = lambda z: float(np.sum(t.forward(z) * g))  # noqa: E731
    for _ in range(5):
        idx = tuple(int(rng.integers(s)) for s in x.shape)
        e = np.zeros_like(x)
        e[idx] = 1.0
        fd = (loss(x + 1e-3 * e) - loss(x - 1e-3 * e)) / 2e-3
        assert fd == pytest.approx(adj[idx], rel=1e-6, abs=1e-9)


@pytest.mark.parametrize("pads", [(3, 3, 3, 3), (0, 2, 5, 1)])
def test_pad(pads: tuple[int, int, int, int]) -> None:
    t = Pad(HW, pads, 0.5)
    check_adjoint(t)
    y = t.forward(np.ones((1, 1, *HW)))
    assert y.shape == (1, 1, HW[0] + pads[0] + pads[1], HW[1] + pads[2] + pads[3])
    assert y.sum() == pytest.approx(HW[0] * HW[1] + 0.5 * (y.size - HW[0] * HW[1]))


@pytest.mark.parametrize(("dy", "dx"), [(0, 0), (2, 5), (-3, 1), (0, -7), (11, 0)])
def test_translate(dy: int, dx: int) -> None:
    t = Translate(HW, dy, dx)
    check_adjoint(t)
    x = np.arange(HW[0] * HW[1], dtype=np.float64).reshape(1, 1, *HW)
    y = t.forward(x)
    for yy, xx in [(5, 6), (0, 0), (10, 12)]:
        sy, sx = yy - dy, xx - dx
        inside = 0 <= sy < HW[0] and 0 <= sx < HW[1]
        assert y[0, 0, yy, xx] == (x[0, 0, sy, sx] if inside else 0.0)


@pytest.mark.parametrize("out_hw", [(17, 9), (11, 13), (5, 26), (1, 3)])
def test_resize(out_hw: tuple[int, int]) -> None:
    t = Resize(HW, out_hw, np.float64)
    check_adjoint(t)


def test_resize_is_bilinear_with_aligned_corners() -> None:
    x = np.array([[0.0, 3.0], [6.0, 9.0]])[None, None]
    y = Resize((2, 2), (3, 4), np.float64).forward(x)
    # corners kept; rows at 0, 0.5, 1; columns at 0, 1/3, 2/3, 1
    np.testing.assert_allclose(y[0, 0, :, 0], [0.0, 3.0, 6.0])
    np.testing.assert_allclose(y[0, 0, 0], [0.0, 1.0, 2.0, 3.0])
    np.testing.assert_allclose(y[0, 0, 2], [6.0, 7.0, 8.0, 9.0])
    # a linear ramp stays a ramp, bands of the blocked product included
    ramp = np.arange(100, dtype=np.float64)[None, None, None, :].repeat(3, axis=2)
    big = Resize((3, 100), (3, 199), np.float64).forward(ramp)
    np.testing.assert_allclose(big[0, 0, 0], np.arange(199) / 2)


@pytest.mark.parametrize("degrees", [0.0, 7.0, -10.0, 90.0, 33.3])
def test_rotate(degrees: float) -> None:
    t = Rotate(HW, degrees, np.float64)
    check_adjoint(t)


def test_rotation_forward() -> None:
    x = np.zeros((1, 1, 5, 5))
    x[0, 0, 2, 4] = 1.0  # right of the centre
    y90 = Rotate((5, 5), 90.0, np.float64).forward(x)
    # OpenCV / kornia convention: positive angles turn counter-clockwise on screen (y down)
    assert y90[0, 0, 0, 2] == pytest.approx(1.0) and y90.sum() == pytest.approx(1.0)
    np.testing.assert_array_equal(Rotate((5, 5), 0.0).forward(x), x)
    # a constant image stays constant inside, and zeros come in at the corners
    y = Rotate((9, 9), 10.0, np.float64).forward(np.ones((1, 1, 9, 9)))
    assert y[0, 0, 4, 4] == pytest.approx(1.0) and y[0, 0, 0, 0] < 1.0


@pytest.mark.parametrize("factor", [0.9, 0.96, 1.0, 1.04, 1.1])
def test_scale(factor: float) -> None:
    chain = Chain(HW, scale(HW, factor))
    check_adjoint(chain)
    h = int(np.ceil(factor * HW[0] - 1e-9))
    if factor >= 1:
        assert chain.out_hw == (h, int(np.ceil(factor * HW[1] - 1e-9)))
    else:  # padded back up to (about) the size, as Lucent's random_scale
        assert chain.out_hw[0] >= HW[0] - 1


@pytest.mark.parametrize("seed", range(6))
def test_standard_transforms_chain(seed: int) -> None:
    rng = np.random.default_rng(seed)
    chain = standard_transforms(rng, (16, 16), (24, 24))
    assert chain.out_hw == (24, 24)
    check_adjoint(chain, seed)
    kinds = [type(t).__name__ for t in chain.transforms]
    assert kinds[0] == "Pad" and kinds[1] == "Translate" and kinds[-1] == "Resize"


def test_standard_transforms_draw_lucents_choices() -> None:
    assert SCALES[0] == pytest.approx(0.9) and SCALES[-1] == pytest.approx(1.1)
    assert len(SCALES) == 11 and ANGLES.count(0) == 6 and max(ANGLES) == 10
    rng = np.random.default_rng(0)
    angles = set()
    for _ in range(200):
        chain = standard_transforms(rng, (16, 16))
        pad = chain.transforms[0]
        assert isinstance(pad, Pad) and pad.pads == (12, 12, 12, 12) and pad.value == 0.5
        jitter = chain.transforms[1]
        assert isinstance(jitter, Translate) and 0 <= jitter.dy < 8 and 0 <= jitter.dx < 8
        last = chain.transforms[-1]
        assert isinstance(last, Translate) and 0 <= last.dy < 2 and 0 <= last.dx < 2
        angles |= {t.degrees for t in chain.transforms if isinstance(t, Rotate)}
    assert angles <= set(range(-10, 11)) - {0} and len(angles) > 10


def test_resize_only() -> None:
    assert resize_only((8, 8), (8, 8)).transforms == []
    chain = resize_only((8, 8), (12, 10))
    assert chain.out_hw == (12, 10)
    check_adjoint(chain)
