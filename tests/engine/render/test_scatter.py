"""The embedding scatter PNG: points drawn where the map puts them in their key's colour
(label, prediction, correct / wrong), placed points as black-ringed white diamonds on top,
a legend with each colour's swatch; the aspect of the map kept."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.artifact_types.embedding import Embedding
from engine.render.registry import RenderContext, formats_of, render
from engine.render.scatter import (
    CORRECT,
    PALETTE,
    PLOT,
    UNKNOWN,
    WRONG,
    key,
    project,
)


def artifact(colour_by: str = "label", placed: bool = True) -> Embedding:
    """Six points in three corners of a 10 x 10 square (two per class); point 5 is
    predicted wrong, point 4 unlabelled; one placed point in the empty corner."""
    xy = np.asarray([[0, 0], [0.3, 0], [10, 0], [10, 0.3], [0, 10], [0.3, 10]], np.float32)
    label = np.asarray([0, 0, 1, 1, -1, 2], np.int64)
    prediction = np.asarray([0, 0, 1, 1, 2, 1], np.int64)
    correct = np.asarray([1, 1, 1, 1, -1, 0], np.int8)
    px = np.asarray([[10, 10]], np.float32) if placed else np.zeros((0, 2), np.float32)
    return Embedding(
        "embedding", xy, np.arange(6), [f"im{i}.png" for i in range(6)], label, prediction,
        correct, ["a", "b", "c"], ["a", "b", "c"], colour_by,  # type: ignore[arg-type]
        px, np.asarray([0] * len(px), np.int64), np.zeros((len(px), 2), np.int64),
        np.zeros((len(px), 2), np.float32), ["place[0]"] * len(px))


def png(a: Embedding) -> np.ndarray:
    data = render(a, "png", RenderContext())
    assert data[:8] == b"\x89PNG\r\n\x1a\n"
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))


def at(img: np.ndarray, p: np.ndarray) -> tuple[int, int, int]:
    x, y = (round(v) for v in np.asarray(p, np.float64).tolist())
    return tuple(int(v) for v in img[y, x])  # type: ignore[return-value]


@pytest.mark.parametrize(
    ("colour_by", "expected"),
    [
        ("label", [PALETTE[0], PALETTE[0], PALETTE[1], PALETTE[1], UNKNOWN, PALETTE[2]]),
        ("prediction", [PALETTE[0], PALETTE[0], PALETTE[1], PALETTE[1], PALETTE[2],
                        PALETTE[1]]),
        ("correct", [CORRECT, CORRECT, CORRECT, CORRECT, UNKNOWN, WRONG]),
    ],
)
def test_points_in_their_keys_colour(colour_by: str, expected: list[tuple[int, ...]]) -> None:
    a = artifact(colour_by, placed=False)
    img = png(a)
    pts, _ = project(a)
    assert [at(img, p) for p in pts] == [tuple(c) for c in expected]
    # the legend: one swatch per entry, in the key's colours, with counts
    k = key(a)
    swatches = {tuple(int(v) for v in img[24 + 14 + 7 + j * 18, PLOT + 15])
                for j in range(len(k.names))}
    assert swatches == {tuple(c) for c in k.colours}
    if colour_by == "label":
        assert k.names == ["a", "b", "c", "unlabelled"]


def test_map_geometry_and_placed_marker() -> None:
    a = artifact()
    img = png(a)
    assert img.shape == (PLOT, PLOT + 190, 3)
    pts, placed = project(a)
    # a square map fills the square plot: corners at the margins, y up
    np.testing.assert_allclose(pts[0], [14, PLOT - 14])
    np.testing.assert_allclose(placed[0], [PLOT - 14, 14])
    np.testing.assert_allclose(pts[4], [14, 14])
    # the placed diamond: white inside, a black ring 5 px out, not a class colour
    assert at(img, placed[0]) == (255, 255, 255)
    ring = img[int(placed[0][1]) - 8 : int(placed[0][1]) + 9,
               int(placed[0][0]) - 8 : int(placed[0][0]) + 9]
    assert (ring.sum(axis=2) == 0).sum() >= 8
    # elsewhere the background is white
    assert at(img, np.asarray([PLOT / 2, PLOT / 2])) == (255, 255, 255)


def test_a_wide_map_keeps_its_aspect() -> None:
    a = artifact(placed=False)
    a.xy = np.asarray([[0, 0], [1, 0], [2, 0], [3, 0], [4, 0], [4, 1]], np.float32)
    pts, _ = project(a)
    assert pts[:, 0].min() == pytest.approx(14) and pts[:, 0].max() == pytest.approx(PLOT - 14)
    height = pts[:, 1].max() - pts[:, 1].min()
    assert height == pytest.approx((PLOT - 28) / 4)  # 1 of 4 map units, the same scale
    assert pts[:, 1].mean() == pytest.approx(PLOT / 2, abs=(PLOT - 28) / 8 + 1)


def test_formats_offered() -> None:
    assert formats_of("embedding") == ["json", "npy", "png"]
    a = artifact()
    npy = render(a, "npy")
    arr = np.load(io.BytesIO(npy))
    np.testing.assert_array_equal(arr, a.xy)
