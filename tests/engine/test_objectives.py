"""Objectives: values and seeds by hand, resolution against a model (and its refusals), and
gradients of inner-layer objectives through saliency, checked against the known answer of a
linear layer."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from api_schemas.objectives import (
    ChannelObjective,
    ClassObjective,
    DirectionObjective,
    LayerNormObjective,
    NeuronObjective,
)
from engine.errors import InvalidObjective, UnknownLayer
from engine.methods.base import no_progress
from engine.methods.saliency import SaliencyParams, saliency
from engine.models.runtime import LoadedModel
from engine.objectives import (
    Channel,
    ClassScore,
    Direction,
    LayerNorm,
    Neuron,
    resolve_objective,
)
from lantern_testing.loaded import loaded
from lantern_testing.models import conv_classifier

RNG = np.random.default_rng(3)
T = RNG.normal(size=(2, 4, 3, 5)).astype(np.float32)  # (N, C, H, W)


@pytest.fixture
def conv(tmp_path: Path) -> LoadedModel:
    return loaded(tmp_path, conv_classifier(8, 8, 3), 8, ["a", "b", "c"])


def test_class_score_logit_and_probability() -> None:
    z = np.array([[1.0, 2.0, 0.5]], np.float32)
    np.testing.assert_allclose(ClassScore(1).value(z), [2.0])
    p = np.exp(z) / np.exp(z).sum()
    np.testing.assert_allclose(ClassScore(1, "probability").value(z), p[:, 1], rtol=1e-6)
    np.testing.assert_array_equal(ClassScore(2).seed(z), [[0.0, 0.0, 1.0]])
    # d p1 / d z = p1 (e1 - p)
    expected = p[0, 1] * (np.eye(3)[1] - p[0])
    np.testing.assert_allclose(ClassScore(1, "probability").seed(z)[0], expected, rtol=1e-5)
    assert ClassScore(1, "probability").needs_value_for_seed
    assert not ClassScore(1).needs_value_for_seed


def test_channel_neuron_norm_direction_by_hand() -> None:
    ch = Channel("l", 1, channel=2)
    np.testing.assert_allclose(ch.value(T), T[:, 2].mean(axis=(1, 2)), rtol=1e-6)
    s = ch.seed(T)
    assert s.shape == T.shape and np.isclose(s[:, 2].sum(), 2.0) and s[:, :2].sum() == 0
    ne = Neuron("l", 1, channel=3, y=1, x=4)
    np.testing.assert_allclose(ne.value(T), T[:, 3, 1, 4])
    assert ne.seed(T)[0, 3, 1, 4] == 1.0 and ne.seed(T).sum() == 2.0
    ln = LayerNorm("l", 1)
    np.testing.assert_allclose(ln.value(T), (T.reshape(2, -1) ** 2).mean(axis=1), rtol=1e-6)
    np.testing.assert_allclose(ln.seed(T), 2 * T / T[0].size, rtol=1e-6)
    v = (0.5, -1.0, 2.0, 0.0)
    d = Direction("l", 1, vector=v)
    dots = np.einsum("nchw,c->nhw", T, np.asarray(v, np.float32))
    np.testing.assert_allclose(d.value(T), dots.reshape(2, -1).mean(axis=1), rtol=1e-5)
    np.testing.assert_allclose(d.seed(T)[0, :, 0, 0], np.asarray(v) / 15, rtol=1e-6)


def test_channels_last_layers() -> None:
    nhwc = np.moveaxis(T, 1, -1).copy()
    np.testing.assert_allclose(
        Channel("l", -1, channel=2).value(nhwc), Channel("l", 1, channel=2).value(T), rtol=1e-6
    )
    seed = Neuron("l", -1, channel=3, y=1, x=4).seed(nhwc)
    assert seed[0, 1, 4, 3] == 1.0


def seed_is_the_gradient(objective: object, t: np.ndarray) -> None:
    """The seed is d value / d t: finite differences on every element."""
    eps = 1e-3
    t64 = t.astype(np.float64)
    seed = objective.seed(t)  # type: ignore[attr-defined]
    for idx in [(0, 1, 2, 3), (1, 2, 0, 0), (0, 3, 1, 4)]:
        up, down = t64.copy(), t64.copy()
        up[idx] += eps
        down[idx] -= eps
        fd = (objective.value(up) - objective.value(down))[idx[0]] / (2 * eps)  # type: ignore[attr-defined]
        assert fd == pytest.approx(float(seed[idx]), rel=1e-3, abs=1e-6)


@pytest.mark.parametrize(
    "objective",
    [
        Channel("l", 1, channel=2),
        Neuron("l", 1, channel=3, y=1, x=4),
        LayerNorm("l", 1),
        Direction("l", 1, vector=(0.5, -1.0, 2.0, 0.0)),
    ],
)
def test_every_seed_is_the_gradient_of_its_value(objective: object) -> None:
    seed_is_the_gradient(objective, T)


def test_resolution_checks_the_model(conv: LoadedModel) -> None:
    assert resolve_objective(ClassObjective(target="b"), conv) == ClassScore(1, "logit", "b")
    logits = np.array([0.0, 0.0, 5.0], np.float32)
    assert resolve_objective(ClassObjective(target="top1"), conv, "probability", logits).index == 2
    ch = resolve_objective(ChannelObjective(kind="channel", layer="act", channel=3), conv)
    assert ch == Channel("act", 1, 3)
    ne = resolve_objective(NeuronObjective(kind="neuron", layer="act", channel=0), conv)
    assert (ne.y, ne.x) == (4, 4)  # type: ignore[attr-defined]
    with pytest.raises(UnknownLayer):
        resolve_objective(ChannelObjective(kind="channel", layer="nope", channel=0), conv)
    with pytest.raises(InvalidObjective, match=r"channels 0\.\.3"):
        resolve_objective(ChannelObjective(kind="channel", layer="act", channel=4), conv)
    with pytest.raises(InvalidObjective, match="no spatial extent"):
        resolve_objective(NeuronObjective(kind="neuron", layer="flat", channel=0), conv)
    with pytest.raises(InvalidObjective, match="outside"):
        resolve_objective(NeuronObjective(kind="neuron", layer="act", channel=0, y=8), conv)
    with pytest.raises(InvalidObjective, match="components"):
        resolve_objective(DirectionObjective(kind="direction", layer="act", vector=[1.0]), conv)
    assert isinstance(
        resolve_objective(LayerNormObjective(kind="layer_norm", layer="act"), conv), LayerNorm
    )


def test_saliency_of_an_inner_channel_is_its_known_gradient(conv: LoadedModel) -> None:
    # "conv" (3×3, pad 1) is linear in the input: d mean(conv[:, c]) / d x[k, i, j] is the
    # sum of the kernel taps that reach (i, j) from every output position, over 64 positions
    cw = np.random.default_rng(0).normal(size=(4, 3, 3, 3)).astype(np.float64)  # as built
    c = 1
    expected = np.zeros((3, 8, 8))
    for p in range(8):
        for q in range(8):
            for di in range(3):
                for dj in range(3):
                    i, j = p + di - 1, q + dj - 1
                    if 0 <= i < 8 and 0 <= j < 8:
                        expected[:, i, j] += cw[c, :, di, dj] / 64.0
    from engine.modalities.image import ImageInput

    pixels = RNG.uniform(0, 255, (8, 8, 3)).astype(np.float32)
    objective = Channel("conv", 1, channel=c)
    a = saliency(conv, ImageInput(pixels), objective, SaliencyParams(reduce="signed"), no_progress)
    np.testing.assert_allclose(a.values, expected.sum(axis=0), rtol=1e-5, atol=1e-6)
    assert a.output is None  # the output was not the objective's tensor


def test_a_channel_or_neuron_outside_the_tensor_is_a_typed_refusal_not_an_index_error() -> None:
    # where static shapes left the layer's size unknown at submit, the tensor decides
    t = np.zeros((1, 4, 3, 3), np.float32)
    for objective in (Channel("act", 1, 4), Neuron("act", 1, 2, 0, 3), Neuron("act", 1, 0, 3, 0)):
        with pytest.raises(InvalidObjective) as err:
            objective.seed(t)
        assert err.value.details["shape"] == [1, 4, 3, 3]
        with pytest.raises(InvalidObjective):
            objective.value(t)
    # inside, channels last too
    assert Channel("act", -1, 2).seed(np.zeros((1, 3, 3, 4), np.float32))[..., 2].sum() == 1.0
    assert Neuron("act", 1, 3, 2, 2).value(np.ones((1, 4, 3, 3), np.float32)).tolist() == [1.0]
