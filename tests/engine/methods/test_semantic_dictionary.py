"""Semantic dictionary on a tiny CNN whose activations are known by hand: the top channels
at every position, the thumbnails and the sheet, and the thumbnail cache — filled by the
dictionary and by feature_visualisation, shared through files (another process reads it),
bounded — so that a second dictionary costs one forward pass."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from engine.artifact_types.inside import Dictionary
from engine.artifacts import ImageArtifact
from engine.errors import InvalidParams, UnknownLayer
from engine.methods.base import no_progress
from engine.methods.feature_visualisation import (
    FeatureVisualisationParams,
    feature_visualisation,
)
from engine.methods.registry import get_method
from engine.methods.semantic_dictionary import (
    SHEET_THUMB,
    SemanticDictionaryParams,
    semantic_dictionary,
)
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Channel, ClassScore
from engine.visualisation.cache import ThumbnailCache, cache_dir_of
from lantern_testing.inside import by_hand, pointwise_cnn, scene
from lantern_testing.loaded import loaded

SIZE = 8
STEPS = 6


@pytest.fixture
def setup(tmp_path: Path) -> tuple[LoadedModel, np.ndarray, np.ndarray]:
    kernel, head, img = scene(size=SIZE, channels=6)
    model = loaded(tmp_path, pointwise_cnn(kernel, head, SIZE), SIZE, ["a", "b", "c"])
    return model, kernel, img


def params(**kw: object) -> SemanticDictionaryParams:
    return SemanticDictionaryParams.model_validate(
        {"layer": "act", "top_n": 2, "size": SIZE, "steps": STEPS, **kw})


def dictionary(model: LoadedModel, img: np.ndarray, **kw: object) -> object:
    return semantic_dictionary(model, ImageInput(img), ClassScore(0), params(**kw), no_progress)


def test_top_channels_at_every_position(setup: tuple) -> None:
    model, kernel, img = setup
    out = dictionary(model, img)
    d = out.artifact("dictionary")
    assert isinstance(d, Dictionary) and d.channels.shape == (SIZE, SIZE, 2)
    a = by_hand(kernel, img).reshape(SIZE, SIZE, -1)
    for y in range(SIZE):
        for x in range(SIZE):
            want = sorted(range(a.shape[2]), key=lambda c: (-a[y, x, c], c))[:2]
            assert list(d.channels[y, x]) == want
            np.testing.assert_allclose(d.values[y, x], a[y, x, want], rtol=1e-5, atol=1e-4)
    units = sorted(set(d.channels.reshape(-1).tolist()))
    assert d.units == units and d.thumbnails == [f"channel_{c}" for c in units]
    for c in units:
        thumb = out.artifact(f"channel_{c}")
        assert isinstance(thumb, ImageArtifact) and thumb.pixels.shape == (SIZE, SIZE, 3)
    assert out.views == {"png": "sheet", "overlay": "dictionary"}


def test_the_sheet_puts_each_positions_thumbnails_in_its_cell(setup: tuple) -> None:
    model, _, img = setup
    out = dictionary(model, img, top_n=1)
    d, sheet = out.artifact("dictionary"), out.artifact("sheet")
    assert isinstance(d, Dictionary) and isinstance(sheet, ImageArtifact)
    cell = SHEET_THUMB + 3  # thumbnail + border
    assert sheet.pixels.shape == (SIZE * cell + 3, SIZE * cell + 3, 3)
    means = {c: out.artifact(f"channel_{c}").pixels.mean(axis=(0, 1))  # type: ignore[attr-defined]
             for c in d.units}
    for y, x in [(0, 0), (SIZE - 1, SIZE - 1), (2, 5)]:
        tile = sheet.pixels[3 + y * cell : 3 + y * cell + SHEET_THUMB,
                            3 + x * cell : 3 + x * cell + SHEET_THUMB]
        np.testing.assert_allclose(tile.mean(axis=(0, 1)), means[int(d.channels[y, x, 0])],
                                   atol=2.0)


def test_a_second_dictionary_costs_one_forward_pass(setup: tuple) -> None:
    model, _, img = setup
    first = dictionary(model, img)
    units = first.extras["units"]
    assert first.extras["thumbnails_optimised"] == units > 1
    assert first.model_calls == 1 + units * STEPS
    assert first.model_calls <= get_method("semantic_dictionary").cost(params(), model)
    second = dictionary(model, img)
    assert second.model_calls == 1
    assert second.extras["thumbnails_cached"] == units
    assert second.extras["backward_passes"] == 0
    for name in first.artifact("dictionary").thumbnails:  # type: ignore[attr-defined]
        np.testing.assert_array_equal(second.artifact(name).pixels,  # type: ignore[attr-defined]
                                      first.artifact(name).pixels)  # type: ignore[attr-defined]
    # other params are other thumbnails
    assert dictionary(model, img, seed=1).extras["thumbnails_cached"] == 0


def test_feature_visualisation_fills_the_cache(setup: tuple) -> None:
    """FV of the layer's channels with the same params: the dictionary then optimises
    nothing, and its thumbnails are FV's images."""
    model, _, img = setup
    fv = feature_visualisation(
        model, None, Channel("act", 1, 0),
        FeatureVisualisationParams(size=SIZE, steps=STEPS, channels=[1, 2, 3, 4, 5]),
        no_progress)
    assert fv.extras["thumbnails_cached"] == 6
    out = dictionary(model, img)
    assert out.model_calls == 1 and out.extras["thumbnails_optimised"] == 0
    for c in out.artifact("dictionary").units:  # type: ignore[attr-defined]
        np.testing.assert_array_equal(out.artifact(f"channel_{c}").pixels,  # type: ignore[attr-defined]
                                      fv.artifact(f"unit_{c}").pixels)  # type: ignore[attr-defined]


def test_a_units_image_does_not_depend_on_its_batch(setup: tuple) -> None:
    """What makes the cache sound: channel 3 optimised alone is channel 3 optimised with
    five others."""
    model, _, _ = setup
    p = FeatureVisualisationParams(size=SIZE, steps=STEPS)
    alone = feature_visualisation(model, None, Channel("act", 1, 3), p, no_progress)
    batch = feature_visualisation(model, None, Channel("act", 1, 0),
                                  p.model_copy(update={"channels": [1, 2, 3, 4, 5]}),
                                  no_progress)
    a = alone.artifact("unit_3").pixels.astype(int)  # type: ignore[attr-defined]
    b = batch.artifact("unit_3").pixels.astype(int)  # type: ignore[attr-defined]
    assert np.abs(a - b).max() <= 1


def test_the_cache_is_files_shared_by_processes_and_bounded(tmp_path: Path) -> None:
    directory = tmp_path / "thumbnails"
    code = (
        "import numpy as np, sys\n"
        "from engine.visualisation.cache import ThumbnailCache\n"
        f"ThumbnailCache({str(directory)!r}).put('ab' * 32, np.full((4, 4, 3), 7, np.uint8))\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=Path(__file__).parents[3])
    cache = ThumbnailCache(directory, max_bytes=3 * 300)
    got = cache.get("ab" * 32)
    assert got is not None and (got == 7).all()
    assert cache.get("cd" * 32) is None
    for i in range(6):  # each file ~176 bytes: the quota keeps the most recent few
        cache.put(f"{i:02d}" * 32, np.full((4, 4, 3), i, np.uint8))
    assert cache.size_bytes() <= 3 * 300
    assert cache.get("05" * 32) is not None and cache.get("00" * 32) is None


def test_the_cache_lives_with_the_data_dir(setup: tuple, tmp_path: Path) -> None:
    model, _, _ = setup
    assert cache_dir_of(model) == tmp_path / "thumbnails"


def test_refusals(setup: tuple) -> None:
    model, _, _ = setup
    spec = get_method("semantic_dictionary")
    with pytest.raises(UnknownLayer):
        spec.check(params(layer="nope"), model)
    with pytest.raises(InvalidParams, match="not a spatial layer"):
        spec.check(params(layer="flat"), model)
    with pytest.raises(InvalidParams, match="larger than the model's input"):
        spec.check(params(size=SIZE + 1), model)
    with pytest.raises(InvalidParams, match="more than layer"):
        spec.check(params(top_n=7), model)
    # the cost bound: min(channels, positions × top_n) units × steps, plus the forward pass
    assert spec.cost(params(top_n=2), model) == 1 + 6 * STEPS
