"""Images in (0, 1) to the model and gradients back: the manifest's preprocessing and its
adjoint, the units of a visualisation, and one batched VJP step with a seed per row."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.errors import InvalidParams
from engine.models.runtime import LoadedModel
from engine.objectives import (
    Channel,
    ClassScore,
    Neuron,
    Objective,
    objective_tensor,
)
from engine.visualisation.param import mix_channels

Array = NDArray[Any]


class ModelInput:
    """Images (n, 3, H, W) RGB in [0, 1] at the model's input size -> the model's input
    tensor: pixels (× 255) through the manifest's preprocessing, ``model.to_model_input``
    (scale, mean, std, channel order, layout) — and the adjoint of its linear part.

    The codec maps each pixel affinely: model channel j = Σ_k a[j, k] · pixel_k + b_j (a
    channel permutation times a diagonal). ``a`` and ``b`` are read off the codec itself
    by probing it with unit colours, and checked against it on a random image, so this
    is the codec's own map; applying it here, in the images' NCHW layout, saves the two
    layout transposes a ``to_model_input`` call per step would take.
    """

    def __init__(self, model: LoadedModel) -> None:
        self.model = model
        self.nchw = not model.channels_last
        probes = np.zeros((4, 1, 1, 3), np.float32)
        for k in range(3):
            probes[k, 0, 0, k] = 1.0
        out = np.asarray(model.to_model_input(probes), np.float64).reshape(4, 3)
        self.a: NDArray[np.float64] = (out[:3] - out[3]).T
        self.b: NDArray[np.float64] = out[3]
        check = np.random.default_rng(0).uniform(0.0, 1.0, (2, 3, 3, 5)).astype(np.float32)
        want = model.to_model_input(np.ascontiguousarray(check.transpose(0, 2, 3, 1)) * 255)
        got = self.forward(check)
        if got.shape != want.shape or not np.allclose(got, want, rtol=1e-4, atol=1e-4):
            raise RuntimeError("the model's preprocessing is not a per-pixel affine map")

    def forward(self, x01: Array) -> NDArray[np.float32]:
        """``model.to_model_input(255 · x01)`` for x01 (n, 3, H, W)."""
        x = mix_channels(255.0 * self.a, x01.astype(np.float32, copy=False))
        x += self.b.astype(np.float32)[None, :, None, None]
        return x if self.nchw else np.ascontiguousarray(x.transpose(0, 2, 3, 1))

    def adjoint(self, g: Array) -> NDArray[np.float32]:
        """d/d(x01) of sum(g · forward(x01)); ``g`` in the model's layout."""
        g32 = g.astype(np.float32, copy=False)
        out = mix_channels(255.0 * self.a.T, g32, axis=1 if self.nchw else 3)
        return out if self.nchw else np.ascontiguousarray(out.transpose(0, 3, 1, 2))


def channel_count(model: LoadedModel, objective: Objective) -> int | None:
    """Channels of the objective's layer (classes for a class objective), where known."""
    if isinstance(objective, ClassScore):
        return len(model.labels)
    shape = model.layer_shapes().get(objective_tensor(objective, model), ())
    if not shape:
        return None
    axis = getattr(objective, "channel_axis", 1) % len(shape) if len(shape) > 2 else 1
    d = shape[axis]
    return d if isinstance(d, int) and d > 0 else None


def unit_objectives(
    model: LoadedModel, objective: Objective, channels: list[int] | None
) -> tuple[list[Objective], list[str]]:
    """The objective and the same objective at each of ``channels`` (other channels of
    its layer, other classes of the output), duplicates dropped; their artifact names
    (``unit_<channel>``, or ``unit_0`` for an objective with no channel)."""
    base = _unit_index(objective)
    if not channels:
        return [objective], [f"unit_{0 if base is None else base}"]
    if base is None:
        raise InvalidParams(
            f"`channels` picks more channels of a channel, neuron or class objective; a "
            f"{objective.kind} objective has none. Leave `channels` out.",
            details={"kind": objective.kind, "channels": channels},
        )
    count = channel_count(model, objective)
    bad = [c for c in channels if c < 0 or (count is not None and c >= count)]
    if bad:
        top = "?" if count is None else str(count - 1)
        raise InvalidParams(
            f"Channels {bad} do not exist: {objective.layer or 'the output'} has channels "
            f"0..{top}.",
            details={"channels": bad, "count": count},
        )
    order = list(dict.fromkeys([base, *channels]))
    units = [_at_channel(model, objective, c) for c in order]
    return units, [f"unit_{c}" for c in order]


def _unit_index(objective: Objective) -> int | None:
    if isinstance(objective, Channel | Neuron):
        return objective.channel
    if isinstance(objective, ClassScore):
        return objective.index
    return None


def _at_channel(model: LoadedModel, objective: Objective, c: int) -> Objective:
    if isinstance(objective, ClassScore):
        return replace(objective, index=c, label=model.labels[c])
    if isinstance(objective, Channel | Neuron):
        return replace(objective, channel=c)
    raise AssertionError(objective)  # pragma: no cover


def tensor_shape(model: LoadedModel, tensor: str, n: int) -> tuple[int, ...]:
    """The shape of ``tensor`` for n images (from shape inference, else a probe)."""
    if tensor == model.output_name:
        return (n, len(model.labels))
    shape = model.layer_shapes().get(tensor)
    rest = shape[1:] if shape else ()
    if rest and all(isinstance(d, int) and d > 0 for d in rest):
        return (n, *(int(d) for d in rest if isinstance(d, int)))
    h, w = model.input_hw
    probe = model.tensor_values(model.to_model_input(np.zeros((1, h, w, 3), np.float32)), tensor)
    return (n, *probe.shape[1:])


class UnitGradients:
    """One batched VJP through the model: row i's seed is unit i's objective, so every
    image gets the gradient of its own unit, in one pass for the whole batch.

    ``extra_seed(t)``, when given, adds a seed that depends on the tensor's value (the
    diversity term); it and value-dependent objectives (a layer norm, a probability)
    take one forward pass before the VJP.
    """

    def __init__(self, model: LoadedModel, units: list[Objective]) -> None:
        self.model = model
        self.units = units
        self.tensor = objective_tensor(units[0], model)
        self.output = None if self.tensor == model.output_name else self.tensor
        self.needs_value = any(u.needs_value_for_seed for u in units)
        self._fixed_seed: NDArray[np.float32] | None = None

    def _seed(self, t: Array) -> NDArray[np.float32]:
        return np.concatenate(
            [u.seed(t[i : i + 1]) for i, u in enumerate(self.units)]
        ).astype(np.float32, copy=False)

    def __call__(
        self, x: NDArray[np.float32], extra_seed: Any = None
    ) -> tuple[NDArray[np.float64], NDArray[np.float32], int]:
        """(each unit's objective on its image, d objective_i / d x_i, forward passes)."""
        n = int(x.shape[0])
        passes = 0
        if self.needs_value or extra_seed is not None:
            t = self.model.tensor_values(x, self.tensor)
            passes += n
            seed = self._seed(t)
            if extra_seed is not None:
                seed = seed + np.asarray(extra_seed(t), np.float32)
        else:
            if self._fixed_seed is None or self._fixed_seed.shape[0] != n:
                zeros = np.zeros(tensor_shape(self.model, self.tensor, n), np.float32)
                self._fixed_seed = self._seed(zeros)
            seed = self._fixed_seed
        res = self.model.vjp(x, seed, output=self.output)
        passes += n
        value = np.asarray(res.logits, np.float32)
        values = np.array([u.value(value[i : i + 1])[0] for i, u in enumerate(self.units)])
        return values, np.asarray(res.grad, np.float32), passes
