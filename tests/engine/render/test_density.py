"""Density bars (engine/render/density.py) of a hand-made ``distributions`` artifact: a cell's
opacity is its set's share of images in the bin over the row's largest share (the largest
is the set's full colour, an empty bin white, half the share half-way to white), rows in the
artifact's order, bands only for the sets asked; the type's JSON, .npy and storage."""

from __future__ import annotations

import io

import numpy as np
import orjson
import pytest
from PIL import Image

from engine.artifact_types.distributions import Distributions
from engine.artifacts import pack, unpack
from engine.render.density import BAND_H, cell_box, layout, set_colour
from engine.render.registry import RenderContext, formats_of, render


def artifact() -> Distributions:
    # row 0: set A (4 images) all in bin 0; set B (2 images) one in bin 1, one in bin 3
    # row 1: set A 2 / 2 in bins 2, 3; set B both in bin 2
    counts = np.asarray([[[4, 0, 0, 0], [0, 1, 0, 1]],
                         [[0, 0, 2, 2], [0, 0, 2, 0]]], np.int64)
    edges = np.asarray([np.linspace(0, 1, 5), np.linspace(-2, 2, 5)])
    means = np.asarray([[0.1, 0.6], [1.0, 0.5]])
    return Distributions("distributions", counts, edges, means, ["A", "B"], [4, 2],
                         ["conv", "conv"], [0, 7], order=[1, 0], compared=[0, 1])


def pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"))


def colour_at(img: np.ndarray, box: tuple[int, int, int, int]) -> tuple[int, ...]:
    x0, y0, x1, y1 = box
    patch = img[y0:y1, x0:x1].reshape(-1, 3)
    assert (patch == patch[0]).all()  # one colour per cell
    return tuple(int(v) for v in patch[0])


def test_opacity_is_the_share_over_the_rows_largest() -> None:
    a = artifact()
    ctx = RenderContext()
    img = pixels(render(a, "png", ctx))
    blue, orange = set_colour(0), set_colour(1)
    # drawn row 0 is artifact row 1 (the order): A's share 0.5 in bins 2, 3; B's 1.0 in bin 2
    assert colour_at(img, cell_box(a, ctx, 0, 1, 2)) == orange  # the row's largest share
    half = tuple(round(255 - 0.5 * (255 - c)) for c in blue)
    assert colour_at(img, cell_box(a, ctx, 0, 0, 2)) == half
    assert colour_at(img, cell_box(a, ctx, 0, 0, 3)) == half
    assert colour_at(img, cell_box(a, ctx, 0, 0, 0)) == (255, 255, 255)  # empty bin
    assert colour_at(img, cell_box(a, ctx, 0, 1, 3)) == (255, 255, 255)
    # drawn row 1 is artifact row 0: A 1.0 in bin 0 (full), B 0.5 in bins 1, 3
    assert colour_at(img, cell_box(a, ctx, 1, 0, 0)) == blue
    half_orange = tuple(round(255 - 0.5 * (255 - c)) for c in orange)
    assert colour_at(img, cell_box(a, ctx, 1, 1, 1)) == half_orange
    assert colour_at(img, cell_box(a, ctx, 1, 1, 0)) == (255, 255, 255)
    assert img.shape[0] > 2 * 2 * BAND_H


def test_only_the_sets_and_rows_asked() -> None:
    a = artifact()
    ctx = RenderContext(options={"sets": [1], "rows": 1})
    rows, sets, _ = layout(a, ctx)
    assert rows == [1] and sets == [1]
    img = pixels(render(a, "png", ctx))
    # one band (B's) in the one row: B's bin 2 is the row's largest
    assert colour_at(img, cell_box(a, ctx, 0, 0, 2)) == set_colour(1)
    full = pixels(render(a, "png"))
    assert img.shape[0] < full.shape[0]
    assert layout(a, RenderContext(options={"sets": [9]}))[1] == [0, 1]  # nothing valid: all


def test_json_npy_and_storage() -> None:
    a = artifact()
    assert formats_of("distributions") == ["json", "npy", "png"]
    body = orjson.loads(render(a, "json"))
    assert body["type"] == "distributions" and body["axes"] == ["row", "set", "bin"]
    assert body["data"]["counts"] == a.counts.tolist()
    assert body["data"]["edges"][1] == [-2.0, -1.0, 0.0, 1.0, 2.0]
    assert body["data"]["order"] == [1, 0] and body["data"]["channels"] == [0, 7]
    assert body["meta"]["compared"] == ["A", "B"] and body["meta"]["sizes"] == [4, 2]
    npy = np.load(io.BytesIO(render(a, "npy")))
    np.testing.assert_array_equal(npy, a.counts)
    np.testing.assert_allclose(a.density()[0, 1], [0, 0.5, 0, 0.5])
    (back,), _ = unpack(pack([a]))
    assert isinstance(back, Distributions)
    assert render(back, "json") == render(a, "json")
    with pytest.raises(ValueError, match="shape"):
        Distributions("d", a.counts, a.edges[:, :3], a.means, a.sets, a.sizes, a.layers,
                      a.channels)
