"""Model-parameter randomisation: statistics by hand, the rewritten initialisers, the
identity check (0 layers) and the drop for gradient methods."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from engine.methods.registry import get_method
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import ClassScore
from engine.quality.sanity import (
    average_ranks,
    model_randomisation,
    parameterised_nodes,
    randomise_model,
    spearman,
    ssim,
)
from lantern_testing.loaded import loaded
from lantern_testing.models import conv_classifier

SIZE = 16


def inits(model: onnx.ModelProto) -> dict[str, np.ndarray]:
    return {t.name: numpy_helper.to_array(t) for t in model.graph.initializer}


@pytest.fixture
def model(tmp_path: Path) -> LoadedModel:
    return loaded(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])


@pytest.fixture
def image() -> ImageInput:
    rng = np.random.default_rng(0)
    return ImageInput(rng.uniform(0, 255, (SIZE, SIZE, 3)).astype(np.float32))


def test_average_ranks_and_spearman_by_hand() -> None:
    np.testing.assert_allclose(average_ranks(np.asarray([10, 20, 20, 5])), [2, 3.5, 3.5, 1])
    a = np.asarray([[1.0, 2.0], [3.0, 4.0]])
    assert spearman(a, a**3 + 7) == pytest.approx(1.0)
    assert spearman(a, -a) == pytest.approx(-1.0)
    # ranks [1, 2, 3, 4] vs [2, 1, 4, 3]: 1 - 6 Σd² / (n (n² - 1)) = 1 - 6·4/60 = 0.6
    assert spearman(a, np.asarray([[2.0, 1.0], [4.0, 3.0]])) == pytest.approx(0.6)
    assert spearman(a, np.zeros((2, 2))) is None
    x = np.random.default_rng(0).normal(size=200).round(1)  # with ties
    y = x + np.random.default_rng(1).normal(size=200)
    stats = pytest.importorskip("scipy.stats")
    assert spearman(x, y) == pytest.approx(float(stats.spearmanr(x, y).statistic))


def test_ssim_of_normalised_maps() -> None:
    rng = np.random.default_rng(0)
    a = rng.uniform(size=(16, 16))
    assert ssim(a, 3 * a + 2) == pytest.approx(1.0)  # min–max normalisation
    assert ssim(a, rng.uniform(size=(16, 16))) < 0.3  # type: ignore[operator]
    assert ssim(np.zeros((16, 16)), np.ones((16, 16))) is None


def test_randomise_rewrites_the_top_layers_only(model: LoadedModel) -> None:
    proto = model.proto()
    assert [n.name for n in parameterised_nodes(proto)] == ["fc", "conv"]
    before = inits(proto)
    same, names = randomise_model(proto, 0)
    assert names == [] and same.SerializeToString() == proto.SerializeToString()
    one, names = randomise_model(proto, 1, seed=3)
    after = inits(one)
    assert names == ["fc"]
    np.testing.assert_array_equal(after["cw"], before["cw"])
    assert not np.allclose(after["fw"], before["fw"])
    assert after["fw"].std() == pytest.approx(before["fw"].std(), rel=0.8)
    # seeded, and the original is untouched
    np.testing.assert_array_equal(inits(randomise_model(proto, 1, seed=3)[0])["fw"], after["fw"])
    np.testing.assert_array_equal(inits(model.proto())["fw"], before["fw"])
    both, names = randomise_model(proto, 5, mode="shuffle")
    assert names == ["fc", "conv"]
    for k in ("cw", "fw"):
        np.testing.assert_array_equal(np.sort(inits(both)[k].ravel()), np.sort(before[k].ravel()))
        assert not np.array_equal(inits(both)[k], before[k])


@pytest.mark.parametrize("method", ["saliency", "grad_cam"])
def test_identity_check_and_drop_after_randomisation(
    model: LoadedModel, image: ImageInput, method: str
) -> None:
    spec = get_method(method)
    params = spec.parse_params({})
    original = spec.fn(model, image, ClassScore(0), params, lambda f: None).values
    same = model_randomisation(
        model, image, ClassScore(0), spec, params, top_k=0, original=original,
    )
    assert same.layers == []
    assert same.spearman == pytest.approx(1.0, abs=1e-9)
    assert same.ssim == pytest.approx(1.0, abs=1e-6)
    np.testing.assert_allclose(same.randomised_values, original, rtol=1e-5, atol=1e-7)
    assert same.forward_passes >= 1 and same.backward_passes == 1
    # all layers randomised, five seeds: little rank correlation is left
    rhos = []
    for seed in range(5):
        r = model_randomisation(model, image, ClassScore(0), spec, params, top_k=2, seed=seed)
        assert r.layers == ["fc", "conv"]
        assert r.backward_passes == 2  # the original and the randomised map
        rhos.append(0.0 if r.spearman is None else r.spearman)
    assert max(rhos) < 0.5, rhos
    assert 1.0 - float(np.mean(rhos)) > 0.7, rhos
