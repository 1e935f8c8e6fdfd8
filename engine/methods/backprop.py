"""Gradients of an objective, and the channel reductions of the gradient methods."""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import numpy as np
from numpy.typing import NDArray

from engine.artifacts import AttributionMap, Result
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, objective_tensor

Reduce = Literal["abs_max", "abs_sum", "signed"]


def gradients(
    model: LoadedModel,
    x: NDArray[np.float32],
    objective: Objective,
    wrt: str | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32] | None, int]:
    """(objective tensor's value, gradient of the objective w.r.t. ``wrt`` (default: the
    input), ``wrt``'s activation when it is a layer, forward passes used).

    The VJP runs from the tensor the objective reads (the output, or any layer) with the
    objective's seed of that tensor's shape. An objective whose seed depends on the tensor's
    value (a probability, a layer norm) first needs a forward pass per image.
    """
    tensor = objective_tensor(objective, model)
    passes = 0
    if objective.needs_value_for_seed:
        value = model.tensor_values(x, tensor)
        passes += x.shape[0]
        seed = objective.seed(value)
    else:
        seed = objective.seed(np.zeros(_tensor_shape(model, tensor, x.shape[0]), np.float32))
    res = model.vjp(x, seed, wrt, output=None if tensor == model.output_name else tensor)
    passes += x.shape[0]
    return (
        np.asarray(res.logits, np.float32),
        np.asarray(res.grad, np.float32),
        None if res.activation is None else np.asarray(res.activation, np.float32),
        passes,
    )


def gradients_per_item(
    model: LoadedModel,
    x: NDArray[np.float32],
    objectives: list[Objective],
    wrt: str | None = None,
) -> tuple[NDArray[np.float32], NDArray[np.float32], NDArray[np.float32] | None, list[int]]:
    """:func:`gradients` for a batch whose item ``i`` has its own objective
    ``objectives[i]`` (all reading one tensor): one VJP over the stacked items with each
    item's own seed row; the forward passes are counted per item, as :func:`gradients`
    counts them for that item alone."""
    if len(objectives) != x.shape[0]:
        raise ValueError(f"{len(objectives)} objectives for {x.shape[0]} items")
    tensors = {objective_tensor(o, model) for o in objectives}
    if len(tensors) != 1:
        raise ValueError(f"the objectives read different tensors: {sorted(tensors)}")
    tensor = tensors.pop()
    needs = [o.needs_value_for_seed for o in objectives]
    value = model.tensor_values(x, tensor) if any(needs) else None
    zero = (
        np.zeros(_tensor_shape(model, tensor, 1), np.float32) if not all(needs) else None
    )
    rows = []
    for i, o in enumerate(objectives):
        if needs[i]:
            assert value is not None
            rows.append(o.seed(value[i : i + 1]))
        else:
            assert zero is not None
            rows.append(o.seed(zero))
    seed = np.concatenate(rows, axis=0)
    res = model.vjp(x, seed, wrt, output=None if tensor == model.output_name else tensor)
    return (
        np.asarray(res.logits, np.float32),
        np.asarray(res.grad, np.float32),
        None if res.activation is None else np.asarray(res.activation, np.float32),
        [1 + int(n) for n in needs],
    )


def input_gradient_batch(
    model: LoadedModel,
    images: list[ImageInput],
    objectives: list[Objective],
    values: Callable[[NDArray[np.float32], NDArray[np.float32]], NDArray[np.float32]],
) -> list[Result]:
    """The batch entry point of the input-gradient methods: each image's attribution
    ``values(gradient, model input)`` (both (1, ...)) for its own objective, from one VJP
    per tensor the objectives read (one in all for class objectives)."""
    by_tensor: dict[str, list[int]] = {}
    for i, o in enumerate(objectives):
        by_tensor.setdefault(objective_tensor(o, model), []).append(i)
    results: dict[int, Result] = {}
    for idxs in by_tensor.values():
        x = model.to_model_input(np.stack([images[i].pixels for i in idxs]))
        out, g, _, passes = gradients_per_item(model, x, [objectives[i] for i in idxs])
        for k, i in enumerate(idxs):
            results[i] = Result(
                [AttributionMap("attribution", values(g[k : k + 1], x[k : k + 1]))],
                model_calls=passes[k],
                extras={"backward_passes": 1},
                output=out[k : k + 1] if objectives[i].layer is None else None,
            )
    return [results[i] for i in range(len(images))]


def _tensor_shape(model: LoadedModel, tensor: str, n: int) -> tuple[int, ...]:
    if tensor == model.output_name:
        return (n, len(model.labels))
    shape = model.layer_shapes().get(tensor)
    rest = shape[1:] if shape else ()
    if not rest or not all(isinstance(d, int) and d > 0 for d in rest):
        # a layer of unknown size: its value tells
        h, w = model.input_hw
        zero = model.to_model_input(np.zeros((1, h, w, 3), np.float32))
        probe = model.tensor_values(zero, tensor)
        return (n, *probe.shape[1:])
    return (n, *(int(d) for d in rest if isinstance(d, int)))


def channel_axis(model: LoadedModel) -> int:
    return 3 if model.channels_last else 1


def reduce_channels(
    g: NDArray[np.float32], model: LoadedModel, how: Reduce
) -> NDArray[np.float32]:
    """(1, C, H, W) or (1, H, W, C) -> (H, W) (the first item of a batch)."""
    axis = channel_axis(model)
    if how == "abs_max":
        out = np.abs(g).max(axis=axis)
    elif how == "abs_sum":
        out = np.abs(g).sum(axis=axis)
    else:
        out = g.sum(axis=axis)
    return np.asarray(out[0], np.float32)
