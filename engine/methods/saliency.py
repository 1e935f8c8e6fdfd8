"""Saliency (Simonyan et al., 2014): the gradient of the target's score w.r.t. the input."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import AttributionMap, Result
from engine.methods.backprop import Reduce, gradients, input_gradient_batch, reduce_channels
from engine.methods.base import MethodSpec, Progress
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import ALL_OBJECTIVES, Objective, ScoreKind


class SaliencyParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    reduce: Reduce = Field(
        default="abs_max",
        description="Over channels: max of |g| (Simonyan), sum of |g|, or signed sum.",
    )
    score: ScoreKind = Field(default="logit", description="Differentiate the logit or probability.")


def check(params: SaliencyParams, model: LoadedModel) -> None:
    model.check_gradients()


def saliency(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: SaliencyParams,
    progress: Progress,
) -> Result:
    x = model.to_model_input(image.pixels[None])
    out, g, _, passes = gradients(model, x, objective)
    progress(1.0)
    return Result(
        [AttributionMap("attribution", reduce_channels(g, model, params.reduce))],
        model_calls=passes,
        extras={"backward_passes": 1},
        output=out if objective.layer is None else None,
    )


def saliency_batch(
    model: LoadedModel,
    images: list[ImageInput],
    objectives: list[Objective],
    params: SaliencyParams,
) -> list[Result]:
    """Saliency of several images, each with its own objective: one VJP per tensor the
    objectives read (one in all for class objectives)."""
    return input_gradient_batch(
        model, images, objectives, lambda g, _x: reduce_channels(g, model, params.reduce)
    )


SPEC = register(
    MethodSpec(
        name="saliency",
        params_model=SaliencyParams,
        fn=saliency,
        description="Vanilla gradient saliency: |d score / d input|, reduced over channels.",
        kind="gradient",
        execution="sync",
        objectives=ALL_OBJECTIVES,
        check=check,
        batch_fn=saliency_batch,
    )
)
