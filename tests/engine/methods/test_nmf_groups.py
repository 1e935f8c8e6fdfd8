"""NMF groups on a tiny CNN whose activations and gradients are known by hand
(lantern_testing.inside): the factorisation is scikit-learn's on the same matrix, the
group maps are non-negative and sum to the activation norm map within its error, the
group attributions sum to the layer's gradient × activation (= the logit here), and each
group's visualisation is drawn from its direction."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from sklearn.decomposition import NMF

from engine.artifact_types.inside import Groups
from engine.artifacts import ImageArtifact, Table
from engine.errors import Cancelled, InvalidParams, UnknownLayer
from engine.methods.base import no_progress
from engine.methods.nmf_groups import NmfGroupsParams, group_attributions, nmf_groups
from engine.methods.registry import get_method
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import ClassScore
from engine.render.groups import PALETTE, groups_rgb
from engine.render.registry import render
from lantern_testing.inside import by_hand, pointwise_cnn, scene
from lantern_testing.loaded import loaded

SIZE = 8


@pytest.fixture
def setup(tmp_path: Path) -> tuple[LoadedModel, np.ndarray, np.ndarray, np.ndarray]:
    kernel, head, img = scene(size=SIZE)
    model = loaded(tmp_path, pointwise_cnn(kernel, head, SIZE), SIZE, ["a", "b", "c"])
    return model, kernel, head, img


def run(model: LoadedModel, img: np.ndarray, **params: object) -> object:
    p = NmfGroupsParams.model_validate({"layer": "act", "groups": 3, "visualise": False,
                                        **params})
    return nmf_groups(model, ImageInput(img), ClassScore(1), p, no_progress)


def test_reconstruction_error_equals_scikit_learns(setup: tuple) -> None:
    model, kernel, _, img = setup
    out = run(model, img, seed=3)
    a = by_hand(kernel, img)
    ref = NMF(n_components=3, random_state=3, max_iter=500)
    ref.fit(a)
    assert out.extras["reconstruction_error"] == pytest.approx(ref.reconstruction_err_,
                                                               rel=1e-6, abs=1e-9)
    # and it is the Frobenius error of the factors the method reports
    groups = out.artifact("groups")
    assert isinstance(groups, Groups) and groups.maps.shape == (3, SIZE, SIZE)
    assert out.extras["relative_error"] == pytest.approx(
        ref.reconstruction_err_ / np.linalg.norm(a), rel=1e-6)


def test_group_maps_are_non_negative_and_sum_to_the_norm_map(setup: tuple) -> None:
    model, kernel, _, img = setup
    out = run(model, img)
    groups = out.artifact("groups")
    assert isinstance(groups, Groups)
    maps = groups.maps.astype(np.float64)
    assert (maps >= 0).all()
    norm = np.linalg.norm(by_hand(kernel, img), axis=1).reshape(SIZE, SIZE)
    err = out.extras["reconstruction_error"]
    gap = float(np.linalg.norm(maps.sum(axis=0) - norm))
    assert gap <= err * (1 + 1e-5) + 1e-6, (gap, err)
    # a real bound: the sum is close to the norm map, not trivially under a huge error
    assert err < 0.2 * np.linalg.norm(norm)
    # groups come largest first
    mass = maps.sum(axis=(1, 2))
    assert list(mass) == sorted(mass, reverse=True)


def test_attributions_sum_to_the_layers_gradient_times_activation(setup: tuple) -> None:
    """Here Σ gradient × activation at "act" is the logit of the target (GAP + linear head,
    no bias): the group attributions must add up to it."""
    model, kernel, head, img = setup
    out = run(model, img)
    a = by_hand(kernel, img)
    logit = float((a.mean(axis=0) * head[1]).sum())
    assert out.extras["attribution_total"] == pytest.approx(logit, rel=1e-4)
    groups = out.artifact("groups")
    assert isinstance(groups, Groups)
    assert groups.attribution.sum() == pytest.approx(logit, rel=1e-4)
    key = out.artifact("key")
    assert isinstance(key, Table) and [r[0] for r in key.rows] == [0, 1, 2]
    assert sum(r[3] for r in key.rows) == pytest.approx(1.0)


def test_split_of_an_entry_that_the_factors_miss() -> None:
    """Where the reconstruction is 0 but the activation is not, its gradient × activation
    is shared evenly; elsewhere by each group's share of the entry (hand-computed)."""
    a = np.array([[1.0, 2.0]])
    g = np.array([[3.0, 5.0]])
    w = np.array([[1.0, 1.0]])
    h = np.array([[1.0, 0.0], [3.0, 0.0]])  # channel 1 reconstructed as 0
    attr = group_attributions(a, g, w, h)
    # entry (0,0): 3·1 split 1:3; entry (0,1): 5·2 split evenly
    np.testing.assert_allclose(attr, [0.75 + 5.0, 2.25 + 5.0])


def test_visualisations_of_the_groups_and_progress(setup: tuple) -> None:
    model, _, _, img = setup
    fractions: list[float] = []
    p = NmfGroupsParams(layer="act", groups=2, size=SIZE, steps=12)
    out = nmf_groups(model, ImageInput(img), ClassScore(0), p, fractions.append)
    groups = out.artifact("groups")
    assert isinstance(groups, Groups) and groups.thumbnails == ["group_0", "group_1"]
    for name in groups.thumbnails:
        art = out.artifact(name)
        assert isinstance(art, ImageArtifact) and art.pixels.shape == (SIZE, SIZE, 3)
    assert fractions[-1] == pytest.approx(1.0) and len(fractions) == 1 + 12
    assert out.model_calls == 1 + 2 * 12 == get_method("nmf_groups").cost(p, model)

    def cancel(f: float) -> None:
        if f > 0.5:
            raise Cancelled()

    with pytest.raises(Cancelled):
        nmf_groups(model, ImageInput(img), ClassScore(0), p, cancel)


def test_refusals(setup: tuple) -> None:
    model, _, _, img = setup
    spec = get_method("nmf_groups")
    with pytest.raises(UnknownLayer):
        spec.check(NmfGroupsParams(layer="nope"), model)
    with pytest.raises(InvalidParams, match="not a spatial layer"):
        spec.check(NmfGroupsParams(layer="flat"), model)
    with pytest.raises(InvalidParams, match="at most 6"):
        spec.check(NmfGroupsParams(layer="act", groups=7), model)
    with pytest.raises(InvalidParams, match="larger than the model's input"):
        spec.check(NmfGroupsParams(layer="act", size=SIZE + 1), model)
    with pytest.raises(InvalidParams, match="negative activations"):
        run(model, img, layer="conv")


def test_colour_coded_map() -> None:
    """A position held by one group takes its colour at full brightness where its total is
    the largest; an even mix of two groups at half the largest total is their mean colour,
    halved; an empty position is black."""
    maps = np.zeros((2, 1, 3))
    maps[0, 0, 0] = 2.0
    maps[0, 0, 1] = maps[1, 0, 1] = 0.5
    rgb = groups_rgb(maps, PALETTE[:2])
    np.testing.assert_array_equal(rgb[0, 0], PALETTE[0])
    want = np.rint((PALETTE[0].astype(float) + PALETTE[1]) / 2 * 0.5)
    np.testing.assert_array_equal(rgb[0, 1], want)
    np.testing.assert_array_equal(rgb[0, 2], [0, 0, 0])
    art = Groups("groups", maps.astype(np.float32), PALETTE[:2].copy(), np.zeros(2))
    png = render(art, "png")
    assert png[:4] == b"\x89PNG"
