"""The series plot PNG: lines per channel, heat bands where the attribution is large."""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from engine.artifacts import AttributionMap
from engine.modalities.time_series import SeriesPlot
from engine.render.registry import RenderContext, formats_of, render
from engine.render.series import BAND, GAP, MARGIN, PANEL, WIDTH


def _png(plot: SeriesPlot, colormap: str = "jet") -> np.ndarray:
    data = render(plot, "png", RenderContext(colormap=colormap))
    return np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), np.int32)


def test_band_is_hottest_where_the_attribution_peaks() -> None:
    t = 100
    a = np.zeros(t, np.float32)
    a[70] = 1.0
    plot = SeriesPlot("plot", np.sin(np.arange(t) / 5.0)[None].astype(np.float32), a, ["x"])
    img = _png(plot)
    assert img.shape == (MARGIN * 2 + PANEL + GAP + BAND + GAP, WIDTH + 2 * MARGIN, 3)
    band = img[MARGIN + PANEL + GAP + BAND // 2, MARGIN : MARGIN + WIDTH]
    hot = np.flatnonzero((band != band[0]).any(axis=1))  # cells unlike the cold background
    x70 = (70 * WIDTH) // t
    assert hot.size and hot.min() >= x70 - 2 and hot.max() <= x70 + WIDTH // t + 2
    # the line is drawn: dark pixels in the panel
    panel = img[MARGIN : MARGIN + PANEL]
    assert (panel.sum(axis=2) < 300).any()


def test_one_band_per_channel_for_channel_maps() -> None:
    s = np.zeros((3, 20), np.float32)
    a = np.zeros((3, 20), np.float32)
    a[1, 5] = -2.0
    img = _png(SeriesPlot("plot", s, a, ["a", "b", "c"]), "coolwarm")
    assert img.shape[0] == MARGIN * 2 + 3 * (PANEL + GAP) + 3 * (BAND + GAP)
    # row 1's band holds the one coloured cell (blue on coolwarm: negative)
    y = MARGIN + 2 * (PANEL + GAP) + (BAND + GAP) + BAND // 2
    cell = img[y, MARGIN + (5 * WIDTH) // 20 + 2]
    assert cell[2] > cell[0] + 60
    assert "png" in formats_of("series")


def test_the_plot_round_trips_through_storage() -> None:
    from engine.artifacts import ARTIFACT_TYPES

    a = np.arange(4, dtype=np.float32)
    plot = SeriesPlot("plot", np.ones((2, 4), np.float32), a, ["p", "q"])
    back = ARTIFACT_TYPES["series"].restore("plot", plot.stored_meta(), plot.arrays())
    assert isinstance(back, SeriesPlot) and back.channel_names == ["p", "q"]
    np.testing.assert_array_equal(back.attribution, plot.attribution)
    assert plot.to_json()["meta"]["attribution_axes"] == ["time"]
    assert AttributionMap("a", plot.attribution, ("time",)).axes == ["time"]


def test_a_time_attribution_png_is_a_curve_with_its_band_and_images_keep_heatmaps() -> None:
    a = np.zeros(30, np.float32)
    a[12] = 2.0
    data = render(AttributionMap("attribution", a, ("time",)), "png", RenderContext())
    img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"))
    assert img.shape == (MARGIN * 2 + PANEL + GAP + BAND + GAP, WIDTH + 2 * MARGIN, 3)
    two = np.zeros((2, 30), np.float32)
    data = render(AttributionMap("attribution", two, ("channel", "time")), "png")
    assert Image.open(io.BytesIO(data)).size[1] == MARGIN * 2 + 2 * (PANEL + GAP + BAND + GAP)
    # an image map is still the plain heatmap at its own size
    data = render(AttributionMap("attribution", np.zeros((5, 7), np.float32)), "png")
    assert Image.open(io.BytesIO(data)).size == (7, 5)
