"""activation_maps in the objective vocabulary (channels by index: a channel objective;
by top activation: a layer-norm objective), on the pointwise CNN whose activations are
known by hand, and its channel table built from numpy columns (the same table, stored as
one array)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.artifacts import Table, pack, unpack
from engine.column_table import ColumnTable
from engine.errors import InvalidParams
from engine.methods.activation_maps import ActivationMapsParams, activation_maps
from engine.methods.base import no_progress
from engine.methods.registry import get_method
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Channel, ClassScore, LayerNorm, Objective
from lantern_testing.inside import by_hand, pointwise_cnn, scene
from lantern_testing.loaded import loaded

SIZE = 8


@pytest.fixture
def setup(tmp_path: Path) -> tuple[LoadedModel, np.ndarray, np.ndarray]:
    kernel, head, img = scene(size=SIZE, channels=6)
    return loaded(tmp_path, pointwise_cnn(kernel, head, SIZE), SIZE, ["a", "b", "c"]), kernel, img


def run(model: LoadedModel, img: np.ndarray, objective: Objective, **params: object) -> object:
    return activation_maps(model, ImageInput(img), objective,
                           ActivationMapsParams.model_validate(params), no_progress)


def test_a_channel_objective_picks_its_channel(setup: tuple) -> None:
    model, kernel, img = setup
    a = by_hand(kernel, img).reshape(SIZE, SIZE, -1)
    out = run(model, img, Channel("act", 1, 4), channels=[2, 4])
    assert out.extras["channels"] == [4, 2] and out.extras["layer"] == "act"
    np.testing.assert_allclose(out.values, a[..., [4, 2]].mean(axis=2), rtol=1e-5, atol=1e-3)


def test_a_layer_norm_objective_picks_the_top_channels(setup: tuple) -> None:
    model, kernel, img = setup
    means = by_hand(kernel, img).mean(axis=0)
    out = run(model, img, LayerNorm("act", 1), top_k=3)
    assert out.extras["channels"] == [int(c) for c in np.argsort(-means, kind="stable")[:3]]
    # the class objective keeps the params' layer
    assert run(model, img, ClassScore(0), layer="conv", top_k=2).extras["layer"] == "conv"


def test_refusals(setup: tuple) -> None:
    model, _, img = setup
    spec = get_method("activation_maps")
    assert spec.check_objective is not None
    with pytest.raises(InvalidParams, match="differ"):
        spec.check_objective(ActivationMapsParams(layer="conv"), model, Channel("act", 1, 0))
    with pytest.raises(InvalidParams, match="do not exist"):
        spec.check_objective(ActivationMapsParams(channels=[6]), model, LayerNorm("act", 1))
    with pytest.raises(InvalidParams, match="not a spatial layer"):
        spec.check_objective(ActivationMapsParams(), model, LayerNorm("flat", 1))
    with pytest.raises(InvalidParams, match="do not exist"):
        run(model, img, Channel("act", 1, 0), channels=[9])


def test_the_channel_table_from_columns(setup: tuple) -> None:
    model, kernel, img = setup
    out = run(model, img, ClassScore(0))
    table = out.artifact("channel_stats")
    assert isinstance(table, ColumnTable) and table.shape == [6, 6]
    a = by_hand(kernel, img)
    data = table.data()
    assert [r[0] for r in data["rows"]] == list(range(6))
    assert all(isinstance(r[0], int) for r in data["rows"])
    np.testing.assert_allclose([r[2] for r in data["rows"]], a.max(axis=0), rtol=1e-5)
    np.testing.assert_allclose([r[4] for r in data["rows"]], a.std(axis=0), rtol=1e-4,
                               atol=1e-4)
    # stored as one array, read back as the plain Table it is (same JSON)
    [back], _ = unpack(pack([table]))
    assert isinstance(back, Table) and back.data() == data
    plain = Table("t", data["columns"], data["rows"])
    assert np.array_equal(plain.arrays()["rows"], table.arrays()["rows"])
    assert plain.stored_meta() == table.stored_meta()
