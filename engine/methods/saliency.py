"""Saliency (Simonyan et al., 2014): the gradient of the target's score w.r.t. the input."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

from engine.methods.backprop import Reduce, gradients, reduce_channels
from engine.methods.base import Attribution, MethodSpec, Progress
from engine.methods.registry import register
from engine.methods.scoring import ScoreKind
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel


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
    model: LoadedModel, image: ImageInput, target: int, params: SaliencyParams, progress: Progress
) -> Attribution:
    x = model.to_model_input(image.pixels[None])
    _, g, _, passes = gradients(model, x, target, params.score)
    progress(1.0)
    return Attribution(
        values=reduce_channels(g, model, params.reduce),
        model_calls=passes,
        extras={"backward_passes": 1},
    )


SPEC = register(
    MethodSpec(
        name="saliency",
        params_model=SaliencyParams,
        fn=saliency,
        description="Vanilla gradient saliency: |d score / d input|, reduced over channels.",
        kind="gradient",
        execution="sync",
        check=check,
    )
)
