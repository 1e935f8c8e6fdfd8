"""Objectives: what a method explains or maximises.

An objective is a scalar per input item, read off one tensor of the model — the output (a
class score) or any listed layer (a channel, a neuron, the layer's norm, a direction in its
channel space). Each objective gives

* ``value(t)``: the objective of every item of a batch of that tensor, ``(N,)`` float64, and
* ``seed(t)``: the cotangent of the tensor that makes a vector-Jacobian product the
  gradient of ``value`` — of the tensor's own shape, so the VJP builder differentiates an
  inner ``[N, C, H, W]`` layer as well as an ``[N, classes]`` head.

``needs_value_for_seed`` says whether the seed depends on the tensor's value (a probability,
a layer norm); a gradient method then runs a forward pass first.

Requests name objectives with :mod:`api_schemas.objectives`; :func:`resolve_objective` checks
one against a model (layer exists, channel and position in range) and builds it.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from api_schemas.objectives import (
    ChannelObjective,
    ClassObjective,
    DirectionObjective,
    LayerNormObjective,
    NeuronObjective,
    ObjectiveRequest,
)
from engine.errors import InvalidObjective, UnknownLayer
from engine.targets import resolve_target

if TYPE_CHECKING:
    from engine.models.runtime import LoadedModel

ScoreKind = Literal["logit", "probability"]
ObjectiveKind = Literal["class", "channel", "neuron", "layer_norm", "direction"]

#: Every objective kind, for a method that takes them all.
ALL_OBJECTIVES: tuple[ObjectiveKind, ...] = (
    "class",
    "channel",
    "neuron",
    "layer_norm",
    "direction",
)


def softmax(logits: NDArray[np.float32]) -> NDArray[np.float32]:
    z = logits - logits.max(axis=-1, keepdims=True)
    e = np.exp(z)
    out: NDArray[np.float32] = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return out


class Objective(ABC):
    """A scalar per item of a batch, read off ``tensor`` (``None`` = the model's output)."""

    kind: ClassVar[ObjectiveKind]

    @property
    @abstractmethod
    def layer(self) -> str | None:
        """The tensor the objective reads; ``None`` for the model's output."""

    @property
    def needs_value_for_seed(self) -> bool:
        return False

    @abstractmethod
    def value(self, t: NDArray[np.float32]) -> NDArray[np.float64]:
        """The objective of each item of ``t`` (N, ...) -> (N,)."""

    @abstractmethod
    def seed(self, t: NDArray[np.float32]) -> NDArray[np.float32]:
        """d value / d t, of t's shape (only t's shape is read unless needs_value_for_seed)."""

    @abstractmethod
    def describe(self) -> dict[str, Any]:
        """The objective on the wire (a result's ``objective``)."""

    def as_request(self) -> dict[str, Any]:
        """The request that resolves to this objective with no forward pass (stored on a
        job, so its chunks never resolve "top1" again)."""
        return self.describe()


@dataclass(frozen=True)
class ClassScore(Objective):
    """The logit, or the softmax probability, of one class of the output.

    ``activated``: the output already is probabilities (a scikit-learn classifier through
    skl2onnx: its manifest says ``scores: probabilities``); both score kinds then read the
    output as it is, never a softmax of probabilities."""

    index: int
    score: ScoreKind = "logit"
    label: str = ""
    activated: bool = False
    kind: ClassVar[ObjectiveKind] = "class"

    @property
    def layer(self) -> str | None:
        return None

    @property
    def _softmax(self) -> bool:
        return self.score == "probability" and not self.activated

    @property
    def needs_value_for_seed(self) -> bool:
        return self._softmax

    def value(self, t: NDArray[np.float32]) -> NDArray[np.float64]:
        t2 = t.reshape(t.shape[0], -1)
        if self._softmax:
            return softmax(t2)[:, self.index].astype(np.float64)
        return t2[:, self.index].astype(np.float64)

    def seed(self, t: NDArray[np.float32]) -> NDArray[np.float32]:
        """logit: the one-hot of the class; probability: d p_i / d z = p_i (e_i - p)."""
        n, classes = t.shape[0], int(np.prod(t.shape[1:]))
        one_hot = np.zeros((n, classes), np.float32)
        one_hot[:, self.index] = 1.0
        if not self._softmax:
            return one_hot.reshape(t.shape)
        p = softmax(t.reshape(n, classes))
        out = (p[:, self.index : self.index + 1] * (one_hot - p)).astype(np.float32)
        return out.reshape(t.shape)

    def describe(self) -> dict[str, Any]:
        return {"kind": "class", "index": self.index, "label": self.label, "score": self.score}

    def as_request(self) -> dict[str, Any]:
        return {"kind": "class", "target": self.index, "score": self.score}


@dataclass(frozen=True)
class _LayerObjective(Objective):
    tensor: str
    channel_axis: int = 1  # axis of channels in the layer's value (1: NCHW, -1: NHWC)

    @property
    def layer(self) -> str | None:
        return self.tensor

    def _spatial_axes(self, t: NDArray[Any]) -> tuple[int, ...]:
        ca = self.channel_axis % t.ndim
        return tuple(a for a in range(1, t.ndim) if a != ca)

    def _channel_first(self, t: NDArray[Any]) -> NDArray[Any]:
        return np.moveaxis(t, self.channel_axis % t.ndim, 1) if t.ndim > 2 else t

    def _at(self, t: NDArray[Any], channel: int, *position: int) -> NDArray[Any]:
        """``t`` with channels first, checked to hold ``channel`` (and ``position``): where
        the graph's static shapes left a layer's size unknown at submit, the tensor itself
        decides, as the same typed refusal (invalid_objective), never an IndexError."""
        view = self._channel_first(t)
        sizes = view.shape[1 : 2 + len(position)]
        wanted = (channel, *position)
        if len(sizes) < len(wanted) or any(
            not 0 <= i < n for i, n in zip(wanted, sizes, strict=True)
        ):
            raise InvalidObjective(
                f"Layer {self.tensor!r} has shape {list(t.shape)}: channel {channel}"
                + (f" at {list(position)}" if position else "")
                + " does not exist in it. Pick a channel (and position) inside the layer.",
                details={"layer": self.tensor, "shape": list(t.shape), "channel": channel},
            )
        return view


@dataclass(frozen=True)
class Channel(_LayerObjective):
    """The mean of one channel of a layer over its positions (Lucid's ``channel``)."""

    channel: int = 0
    kind: ClassVar[ObjectiveKind] = "channel"

    def value(self, t: NDArray[np.float32]) -> NDArray[np.float64]:
        c: NDArray[np.float32] = self._at(t, self.channel)[:, self.channel]
        out: NDArray[np.float64] = c.reshape(c.shape[0], -1).mean(axis=1).astype(np.float64)
        return out

    def seed(self, t: NDArray[np.float32]) -> NDArray[np.float32]:
        s = np.zeros(t.shape, np.float32)
        view = self._at(s, self.channel)  # a view: writes land in s
        positions = int(np.prod(view.shape[2:])) if view.ndim > 2 else 1
        view[:, self.channel] = 1.0 / positions
        return s

    def describe(self) -> dict[str, Any]:
        return {"kind": "channel", "layer": self.tensor, "channel": self.channel}


@dataclass(frozen=True)
class Neuron(_LayerObjective):
    """One channel at one position of a spatial layer (Lucid's ``neuron``)."""

    channel: int = 0
    y: int = 0
    x: int = 0
    kind: ClassVar[ObjectiveKind] = "neuron"

    def value(self, t: NDArray[np.float32]) -> NDArray[np.float64]:
        return self._at(t, self.channel, self.y, self.x)[:, self.channel, self.y, self.x].astype(
            np.float64
        )

    def seed(self, t: NDArray[np.float32]) -> NDArray[np.float32]:
        s = np.zeros(t.shape, np.float32)
        self._at(s, self.channel, self.y, self.x)[:, self.channel, self.y, self.x] = 1.0
        return s

    def describe(self) -> dict[str, Any]:
        return {
            "kind": "neuron",
            "layer": self.tensor,
            "channel": self.channel,
            "y": self.y,
            "x": self.x,
        }


@dataclass(frozen=True)
class LayerNorm(_LayerObjective):
    """The mean of the squared activations of a layer (DeepDream's objective)."""

    kind: ClassVar[ObjectiveKind] = "layer_norm"

    @property
    def needs_value_for_seed(self) -> bool:
        return True

    def value(self, t: NDArray[np.float32]) -> NDArray[np.float64]:
        t64 = t.reshape(t.shape[0], -1).astype(np.float64)
        out: NDArray[np.float64] = (t64 * t64).mean(axis=1)
        return out

    def seed(self, t: NDArray[np.float32]) -> NDArray[np.float32]:
        size = int(np.prod(t.shape[1:]))
        out: NDArray[np.float32] = (2.0 * t / size).astype(np.float32)
        return out

    def describe(self) -> dict[str, Any]:
        return {"kind": "layer_norm", "layer": self.tensor}


@dataclass(frozen=True)
class Direction(_LayerObjective):
    """The dot product of each position's channel vector with ``vector``, averaged over
    positions (Lucid's ``direction``)."""

    vector: tuple[float, ...] = field(default=())
    kind: ClassVar[ObjectiveKind] = "direction"

    def _v(self, ndim: int) -> NDArray[np.float32]:
        v = np.asarray(self.vector, np.float32)
        return v.reshape((1, -1) + (1,) * (ndim - 2))

    def value(self, t: NDArray[np.float32]) -> NDArray[np.float64]:
        c = self._channel_first(t).astype(np.float64)
        dots = (c * self._v(c.ndim)).sum(axis=1)
        out: NDArray[np.float64] = dots.reshape(dots.shape[0], -1).mean(axis=1)
        return out

    def seed(self, t: NDArray[np.float32]) -> NDArray[np.float32]:
        s = np.zeros(t.shape, np.float32)
        view = self._channel_first(s)
        positions = int(np.prod(view.shape[2:])) if view.ndim > 2 else 1
        view[...] = self._v(view.ndim) / positions
        return s

    def describe(self) -> dict[str, Any]:
        return {"kind": "direction", "layer": self.tensor, "vector": list(self.vector)}


# -- resolution against a model -----------------------------------------------------------


def _layer_shape(model: LoadedModel, layer: str) -> tuple[int | str | None, ...]:
    shapes = model.layer_shapes()
    if layer not in shapes:
        known = list(shapes)
        raise UnknownLayer(
            f"The model has no layer {layer!r}. Pick one listed by GET /v1/models/{{model}}.",
            details={"layer": layer, "layers": known[-20:]},
        )
    return shapes[layer]


def _channel_axis(model: LoadedModel, rank: int) -> int:
    return 1 if rank <= 2 or not model.channels_last else -1


def _dim(shape: tuple[int | str | None, ...], axis: int) -> int | None:
    d = shape[axis]
    return d if isinstance(d, int) and d > 0 else None


def _check_channel(layer: str, channel: int, count: int | None) -> None:
    if count is not None and not 0 <= channel < count:
        raise InvalidObjective(
            f"Channel {channel} does not exist: layer {layer!r} has channels 0..{count - 1}.",
            details={"layer": layer, "channel": channel, "channels": count},
        )


def resolve_objective(
    request: ObjectiveRequest,
    model: LoadedModel,
    score: ScoreKind = "logit",
    logits: NDArray[np.float32] | None = None,
) -> Objective:
    """The objective a request names, checked against the model.

    A class objective's ``"top1"`` needs ``logits`` (the output on the input); without them
    it resolves to class 0 (for checks before the input is run). ``score`` is the method's
    ``score`` param, used unless the class objective names its own.
    """
    if isinstance(request, ClassObjective):
        index = resolve_target(request.target, model.labels, logits)
        return ClassScore(
            index, request.score or score, model.labels[index], model.outputs_probabilities
        )
    shape = _layer_shape(model, request.layer)
    rank = len(shape)
    axis = _channel_axis(model, rank)
    channels = _dim(shape, axis)
    if isinstance(request, ChannelObjective):
        _check_channel(request.layer, request.channel, channels)
        return Channel(request.layer, axis, request.channel)
    if isinstance(request, NeuronObjective):
        if rank != 4:
            raise InvalidObjective(
                f"Layer {request.layer!r} has no spatial extent (shape {list(shape)}); a neuron "
                "objective needs a rank-4 layer. Use a channel objective, or a spatial layer.",
                details={"layer": request.layer, "shape": list(shape)},
            )
        _check_channel(request.layer, request.channel, channels)
        hw_axes = (2, 3) if axis == 1 else (1, 2)
        h, w = _dim(shape, hw_axes[0]), _dim(shape, hw_axes[1])
        y = request.y if request.y is not None else (h // 2 if h else 0)
        x = request.x if request.x is not None else (w // 2 if w else 0)
        if (h is not None and not 0 <= y < h) or (w is not None and not 0 <= x < w):
            raise InvalidObjective(
                f"Position ({y}, {x}) is outside layer {request.layer!r} ({h}×{w}).",
                details={"layer": request.layer, "y": y, "x": x, "height": h, "width": w},
            )
        return Neuron(request.layer, axis, request.channel, y, x)
    if isinstance(request, LayerNormObjective):
        return LayerNorm(request.layer, axis)
    if isinstance(request, DirectionObjective):
        if channels is not None and len(request.vector) != channels:
            raise InvalidObjective(
                f"The direction has {len(request.vector)} components; layer {request.layer!r} "
                f"has {channels} channels.",
                details={"layer": request.layer, "length": len(request.vector)},
            )
        return Direction(request.layer, axis, tuple(float(v) for v in request.vector))
    raise InvalidObjective(f"Unknown objective {request!r}.")  # pragma: no cover


def class_objective(target: int | str) -> ClassObjective:
    """The ``target`` shorthand as an objective request."""
    return ClassObjective(kind="class", target=target)


def objective_tensor(objective: Objective, model: LoadedModel) -> str:
    """The graph tensor an objective reads."""
    return objective.layer or model.output_name


def class_index(objective: Objective) -> int:
    """The class of a class objective (methods that explain classes only)."""
    if not isinstance(objective, ClassScore):
        raise InvalidObjective(
            f"This method explains a class score, not a {objective.kind} objective. "
            "Give a class objective (or `target`).",
            details={"kind": objective.kind},
        )
    return objective.index


def class_score(model: LoadedModel, index: int, params: object = None) -> ClassScore:
    """The class objective of class ``index``, scored as the method's ``score`` param says."""
    score: ScoreKind = getattr(params, "score", "logit")
    return ClassScore(index, score, model.labels[index], model.outputs_probabilities)
