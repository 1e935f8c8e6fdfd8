"""The pointing game by hand: hits, misses, tolerance and ties."""

from __future__ import annotations

import math

import numpy as np
import pytest

from engine.quality.pointing import distance_to_box, hit_rate, pointing_game


def peak(y: int, x: int, size: int = 10) -> np.ndarray:
    m = np.zeros((size, size), np.float32)
    m[y, x] = 1.0
    return m


def test_hit_and_miss() -> None:
    box = (2, 5, 3, 7)  # rows 2..4, cols 3..6
    assert pointing_game(peak(2, 3), box).hit
    assert pointing_game(peak(4, 6), box).hit
    r = pointing_game(peak(5, 6), box)  # the row just below the box
    assert not r.hit and r.point == (5, 6) and r.distance == pytest.approx(1.0)
    assert not pointing_game(peak(0, 0), box).hit


def test_tolerance_is_euclidean_distance_to_the_box() -> None:
    box = (2, 5, 3, 7)
    # (7, 9): 3 rows below the last row (4), 3 cols right of the last col (6): distance √18
    r = pointing_game(peak(7, 9), box)
    assert r.distance == pytest.approx(math.sqrt(18))
    assert not pointing_game(peak(7, 9), box, tolerance=4.2).hit
    assert pointing_game(peak(7, 9), box, tolerance=4.25).hit
    np.testing.assert_allclose(
        distance_to_box(np.asarray([0, 3, 9]), np.asarray([3, 5, 5]), box), [2.0, 0.0, 5.0]
    )


def test_ties_all_maxima_must_be_inside() -> None:
    box = (2, 5, 3, 7)
    m = peak(3, 4)
    m[9, 9] = 1.0  # a second maximum far away
    r = pointing_game(m, box)
    assert not r.hit and r.n_maxima == 2
    assert pointing_game(m, box, ties="first").hit  # (3, 4) comes first in raster order
    m2 = np.zeros((10, 10))
    m2[2:5, 3:7] = 5.0  # a plateau filling the box
    assert pointing_game(m2, box).hit
    # a constant map misses unless the box is the whole image
    assert not pointing_game(np.zeros((10, 10)), box).hit
    assert pointing_game(np.zeros((10, 10)), (0, 10, 0, 10)).hit


def test_nan_is_ignored_and_bad_inputs() -> None:
    m = peak(3, 4)
    m[0, 0] = np.nan
    assert pointing_game(m, (2, 5, 3, 7)).hit
    with pytest.raises(ValueError):
        pointing_game(np.zeros((2, 2, 2)), (0, 1, 0, 1))
    with pytest.raises(ValueError):
        pointing_game(np.zeros((4, 4)), (2, 2, 0, 1))


def test_hit_rate() -> None:
    box = (2, 5, 3, 7)
    results = [pointing_game(peak(3, 4), box), pointing_game(peak(0, 0), box)]
    assert hit_rate(results) == 0.5
    assert math.isnan(hit_rate([]))
