"""What a method explains or maximises, on the wire (resolved by engine/objectives.py).

``target`` (a class index, a label or ``"top1"``) stays the shorthand for the class
objective; ``objective`` names any of these.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, StrictInt

LayerName = Annotated[str, Field(min_length=1, max_length=512)]


class ClassObjective(BaseModel):
    """A class score: the logit (default) or the softmax probability of a class."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["class"] = "class"
    target: StrictInt | str = Field(
        default="top1", description='A class index, a label, or "top1" (the predicted class).'
    )
    score: Literal["logit", "probability"] | None = Field(
        default=None, description="Default: the method's `score` param (logit)."
    )


class ChannelObjective(BaseModel):
    """The mean of one channel of a layer over its positions."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["channel"]
    layer: LayerName
    channel: int = Field(ge=0)


class NeuronObjective(BaseModel):
    """One channel of a spatial layer at one position (default: the centre)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["neuron"]
    layer: LayerName
    channel: int = Field(ge=0)
    y: int | None = Field(default=None, ge=0)
    x: int | None = Field(default=None, ge=0)


class LayerNormObjective(BaseModel):
    """The mean squared activation of a layer (DeepDream's objective)."""

    model_config = ConfigDict(extra="forbid")

    kind: Literal["layer_norm"]
    layer: LayerName


class DirectionObjective(BaseModel):
    """The dot product with a vector in the layer's channel space, averaged over positions."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    kind: Literal["direction"]
    layer: LayerName
    vector: list[float] = Field(min_length=1, max_length=65_536)


ObjectiveRequest = Annotated[
    ClassObjective | ChannelObjective | NeuronObjective | LayerNormObjective | DirectionObjective,
    Field(discriminator="kind"),
]
