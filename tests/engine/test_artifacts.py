"""Typed artifacts: storage round trips, their JSON, and the renderers registered by type."""

from __future__ import annotations

import io
import json

import numpy as np
import pytest
from PIL import Image

from engine.artifacts import (
    ARTIFACT_TYPES,
    AttributionMap,
    Curve,
    ImageArtifact,
    Result,
    Segments,
    Table,
    pack,
    unpack,
)
from engine.errors import InvalidFormat, UnknownArtifact
from engine.render.registry import RenderContext, formats_of, render

VALUES = np.arange(12, dtype=np.float32).reshape(3, 4) / 11
ALL = [
    AttributionMap("attribution", VALUES),
    AttributionMap("features", np.array([0.5, -1.0], np.float32), ("feature",), ["a", "b"]),
    ImageArtifact("grid", np.full((2, 3, 3), 7, np.uint8), "caption"),
    Segments("segments", np.array([[0, 1], [1, 1]], np.int32), np.array([2.0, -1.0]), [0], [1]),
    Curve("deletion", np.linspace(0, 1, 3), np.array([1.0, 0.5, 0.0]), "x", "y", 0.5),
    Table("stats", ["channel", "mean"], [[0, 1.5], [1, 2.5]]),
]


def test_every_type_is_registered() -> None:
    assert set(ARTIFACT_TYPES) >= {"attribution", "image", "segments", "curve", "table"}


def test_pack_and_unpack_round_trip_every_type() -> None:
    out, views = unpack(pack(ALL, {"png": "grid"}))
    assert views == {"png": "grid"}
    assert [type(a) for a in out] == [type(a) for a in ALL]
    for a, b in zip(ALL, out, strict=True):
        assert json.loads(render(a, "json")) == json.loads(render(b, "json"))
        for key, arr in a.arrays().items():
            np.testing.assert_array_equal(arr, b.arrays()[key])


def test_json_carries_float32_values() -> None:
    body = json.loads(render(AttributionMap("a", np.array([[1 / 3]], np.float64)), "json"))
    assert body["data"]["values"] == [[0.33333334]]  # float32's shortest repr, not 17 digits
    assert body["axes"] == ["y", "x"] and body["shape"] == [1, 1]


def test_renderers_by_type() -> None:
    ctx = RenderContext(input_image=lambda: Image.new("RGB", (8, 6), "white"))
    assert formats_of("attribution") == ["json", "npy", "png", "overlay", "html"]
    assert "svg" in formats_of("curve") and "png" in formats_of("image")
    png = Image.open(io.BytesIO(render(ALL[0], "png")))
    assert png.size == (4, 3)
    overlay = Image.open(io.BytesIO(render(ALL[0], "overlay", ctx)))
    assert overlay.size == (8, 6)  # drawn over the caller's image at its size
    grid = np.asarray(Image.open(io.BytesIO(render(ALL[2], "png"))))
    assert grid.shape == (2, 3, 3) and (grid == 7).all()
    seg = np.asarray(Image.open(io.BytesIO(render(ALL[3], "png", ctx))))
    assert seg.shape == (6, 8, 3)
    svg = render(ALL[4], "svg").decode()
    assert svg.startswith("<svg") and "deletion (AUC 0.500)" in svg and "polyline" in svg
    npy = np.load(io.BytesIO(render(ALL[0], "npy")))
    np.testing.assert_array_equal(npy, VALUES)


def test_a_format_a_type_lacks_is_refused() -> None:
    with pytest.raises(InvalidFormat, match="svg"):
        render(ALL[0], "svg")
    with pytest.raises(InvalidFormat, match="two"):
        render(ALL[1], "png")  # a 1-D attribution has no heatmap
    with pytest.raises(InvalidFormat, match="input image"):
        render(ALL[0], "overlay")


def test_result_names_are_unique_and_looked_up() -> None:
    r = Result(ALL[:3], model_calls=1, views={"png": "grid"})
    assert r.values is VALUES and r.view("png") == "grid" and r.view("overlay") == "attribution"
    with pytest.raises(UnknownArtifact):
        r.artifact("nope")
    with pytest.raises(ValueError, match="repeat"):
        Result([ALL[0], ALL[0]], model_calls=1)
