"""Gradient × input (Shrikumar et al., 2016), in the model's input space."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import AttributionMap, Result
from engine.methods.backprop import Reduce, gradients, input_gradient_batch, reduce_channels
from engine.methods.base import MethodSpec, Progress
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import ALL_OBJECTIVES, Objective, ScoreKind


class GradientXInputParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reduce: Reduce = Field(default="signed", description="How channels are combined.")
    score: ScoreKind = "logit"


def check(params: GradientXInputParams, model: LoadedModel) -> None:
    model.check_gradients()


def gradient_x_input(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: GradientXInputParams,
    progress: Progress,
) -> Result:
    x = model.to_model_input(image.pixels[None])
    out, g, _, passes = gradients(model, x, objective)
    progress(1.0)
    return Result(
        [AttributionMap("attribution", reduce_channels(g * x, model, params.reduce))],
        model_calls=passes,
        extras={"backward_passes": 1},
        output=out if objective.layer is None else None,
    )


def gradient_x_input_batch(
    model: LoadedModel,
    images: list[ImageInput],
    objectives: list[Objective],
    params: GradientXInputParams,
) -> list[Result]:
    """Gradient × input of several images, each with its own objective: one VJP per tensor
    the objectives read (one in all for class objectives)."""
    return input_gradient_batch(
        model, images, objectives, lambda g, x: reduce_channels(g * x, model, params.reduce)
    )


SPEC = register(
    MethodSpec(
        name="gradient_x_input",
        params_model=GradientXInputParams,
        fn=gradient_x_input,
        description="Gradient times input (the model's normalised input), summed over channels.",
        kind="gradient",
        execution="sync",
        objectives=ALL_OBJECTIVES,
        check=check,
        batch_fn=gradient_x_input_batch,
    )
)
