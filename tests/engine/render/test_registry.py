"""The render registry offers a format only where a renderer draws the artifact."""

from __future__ import annotations

import numpy as np
import pytest

from engine.artifacts import AttributionMap
from engine.errors import InvalidFormat
from engine.render.registry import formats_for, formats_of, render


def test_an_image_map_has_an_overlay_and_no_html() -> None:
    image = AttributionMap("attribution", np.zeros((4, 4), np.float32))
    formats = formats_for(image)
    assert {"json", "npy", "png", "overlay"} <= set(formats)
    assert "html" not in formats
    with pytest.raises(InvalidFormat) as err:
        render(image, "html")
    assert err.value.details["formats"] == formats


def test_word_weights_have_html_and_no_overlay() -> None:
    words = AttributionMap(
        "attribution", np.array([0.5, -0.25], np.float32), axes_=("word",), feature_names=["a", "b"]
    )
    formats = formats_for(words)
    assert {"json", "npy", "png", "html"} <= set(formats)
    assert "overlay" not in formats
    assert b"<html" in render(words, "html").lower()
    with pytest.raises(InvalidFormat):
        render(words, "overlay")


def test_without_axes_every_renderer_of_the_type_is_listed() -> None:
    assert {"png", "overlay", "html"} <= set(formats_of("attribution"))
