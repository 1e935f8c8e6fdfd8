from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from engine.render.colormap import COLORMAPS, apply_colormap
from engine.render.heatmap import encode_png, heatmap_image, normalise, overlay_image


def test_normalise_modes() -> None:
    v = np.array([[-2.0, 0.0], [1.0, 4.0]])
    np.testing.assert_allclose(normalise(v, "positive"), [[0, 0], [0.25, 1]])
    np.testing.assert_allclose(normalise(v, "absolute"), [[0.5, 0], [0.25, 1]])
    np.testing.assert_allclose(normalise(v, "signed"), [[0.25, 0.5], [0.625, 1]])


def test_normalise_all_zero_and_nan() -> None:
    z = np.zeros((2, 2))
    assert np.all(normalise(z, "positive") == 0)
    assert np.all(normalise(z, "signed") == 0.5)
    assert np.all(np.isfinite(normalise(np.array([[np.nan, 1.0]]), "positive")))


@pytest.mark.parametrize("name", sorted(COLORMAPS))
def test_colormaps_have_256_entries_and_their_end_colours(name: str) -> None:
    lut = COLORMAPS[name]
    assert lut.shape == (256, 3) and lut.dtype == np.uint8
    ends = apply_colormap(np.array([[0.0, 1.0]]), name)
    np.testing.assert_array_equal(ends[0, 0], lut[0])
    np.testing.assert_array_equal(ends[0, 1], lut[255])


def test_known_colours() -> None:
    assert tuple(COLORMAPS["gray"][128]) == (128, 128, 128)
    assert tuple(COLORMAPS["jet"][255]) == (128, 0, 0)
    assert tuple(COLORMAPS["viridis"][0]) == (68, 1, 84)


def test_heatmap_png_decodes_with_the_values_shape() -> None:
    v = np.zeros((10, 20))
    v[5, 10] = 1.0
    png = encode_png(heatmap_image(v, "gray"))
    img = Image.open(io.BytesIO(png))
    assert img.format == "PNG" and img.size == (20, 10)
    assert img.getpixel((10, 5)) == (255, 255, 255)
    assert img.getpixel((0, 0)) == (0, 0, 0)


def test_overlay_is_at_the_callers_size_and_blends() -> None:
    base = Image.new("RGB", (40, 30), (0, 0, 200))
    v = np.ones((8, 8))
    out = overlay_image(v, base, colormap="gray", alpha=0.25)
    assert out.size == (40, 30)
    # blend: 0.75 * base + 0.25 * white
    r, g, b = out.getpixel((20, 15))  # type: ignore[misc]
    assert abs(r - 64) <= 1 and abs(g - 64) <= 1 and abs(b - 214) <= 1
    assert overlay_image(v, base, alpha=0.0).getpixel((3, 3)) == (0, 0, 200)
