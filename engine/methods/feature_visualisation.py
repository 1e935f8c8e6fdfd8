"""Feature visualisation by optimisation (Olah et al., Distill 2017): the image a unit
answers most to, found by gradient ascent — Lucid's recipe as Lucent ships it.

* Parameterisation (`engine.visualisation.param`): an FFT spectrum scaled by 1/frequency,
  colour-decorrelated, through a sigmoid to (0, 1); pixels = 255 × that.
* Transforms, drawn afresh every step (`engine.visualisation.transforms`): pad 12
  (constant 0.5), jitter 8, random scale 0.90–1.10, random rotation ±10°, jitter 2.
* The model sees the transformed image **resized (bilinear) to its input size** (a graph
  has a fixed input size, and Lucent itself upsamples images smaller than 224 the same
  way), through the manifest's preprocessing, so any registered model works.
* Adam, learning rate 0.05, ``steps`` (512) steps, maximising each unit's objective.

Gradients come from one VJP of the whole batch per step (a seed per row: each image its
own unit), chained back in numpy through the preprocessing, the resize, the transforms,
the sigmoid, the colour matrix and the inverse FFT to the spectrum (each an exact
adjoint, checked against finite differences in the tests).

Units: the objective, plus the same objective at each of ``channels`` (more channels of
its layer, or more classes), one image each, optimised together as one batch. An
optional ``diversity`` weight subtracts Lucid's diversity term (Gram-matrix cosine
similarity across the batch, at the objective's layer).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import Artifact, Curve, ImageArtifact, Result
from engine.errors import InvalidParams
from engine.methods.base import MethodSpec, Progress, publish_preview
from engine.methods.registry import register
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind, objective_tensor
from engine.visualisation.adam import Adam
from engine.visualisation.diversity import diversity
from engine.visualisation.grid import image_grid, to_uint8
from engine.visualisation.model_io import ModelInput, UnitGradients, unit_objectives
from engine.visualisation.param import ImageParam
from engine.visualisation.threads import single_threaded_blas
from engine.visualisation.transforms import resize_only, standard_transforms

#: Steps between previews published while the job runs.
PREVIEW_EVERY = 64
MAX_UNITS = 64


class FeatureVisualisationParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    size: int = Field(
        default=128, ge=8, le=4096,
        description="Side of the square image optimised, in pixels; at most the model's "
        "input size (the model sees it resized to its input).",
    )
    steps: int = Field(default=512, ge=1, le=4096, description="Optimisation steps.")
    learning_rate: float = Field(default=0.05, gt=0.0, le=10.0, description="Adam's step.")
    channels: list[int] | None = Field(
        default=None, max_length=MAX_UNITS - 1,
        description="More channels of the objective's layer (or more classes), one image "
        "each, optimised with the objective's own as one batch.",
    )
    transforms: bool = Field(
        default=True,
        description="Lucid's random transforms (pad, jitter, scale, rotate, jitter) at every "
        "step; off: the image only resized to the model's input.",
    )
    decorrelate: bool = Field(default=True, description="Lucid's colour decorrelation.")
    diversity: float = Field(
        default=0.0, ge=0.0, le=1e6,
        description="Weight of Lucid's diversity penalty across the batch's images "
        "(Gram-matrix cosine similarity at the objective's layer; Lucid's example: 100). "
        "Adds a forward pass per step.",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Random seed.")
    score: ScoreKind = Field(default="logit", description="A class objective's score.")


def units_of(params: FeatureVisualisationParams) -> int:
    """Images optimised (an upper bound: a channel repeating the objective's is dropped)."""
    return 1 + len(params.channels or [])


def cost(params: FeatureVisualisationParams, model: LoadedModel) -> int:
    """One forward+backward pass per image per step."""
    return params.steps * units_of(params)


def check(params: FeatureVisualisationParams, model: LoadedModel) -> None:
    h, w = model.input_hw
    if params.size > min(h, w):
        raise InvalidParams(
            f"size {params.size} is larger than the model's input ({h}×{w}); ask for at "
            f"most {min(h, w)}.",
            details={"size": params.size, "input_size": [h, w]},
        )


def feature_visualisation(
    model: LoadedModel,
    item: None,
    objective: Objective,
    params: FeatureVisualisationParams,
    progress: Progress,
) -> Result:
    check(params, model)
    units, names = unit_objectives(model, objective, params.channels)
    n, size, steps = len(units), params.size, params.steps
    tensor = objective_tensor(objective, model)
    grads = UnitGradients(model, units)
    to_model = ModelInput(model)
    model_hw = model.input_hw
    rng = np.random.default_rng(params.seed)
    image = ImageParam(size, size, decorrelate=params.decorrelate)
    p = image.init(rng, n).astype(np.float32)
    adam = Adam(p.shape, params.learning_rate)
    values = np.zeros((n, steps))
    axis = getattr(objective, "channel_axis", 1)
    weight = params.diversity if n > 1 else 0.0
    diversities: list[float] = []

    def penalty(t: np.ndarray) -> np.ndarray:
        d, g = diversity(t, axis)
        diversities.append(d)
        return -weight * g

    passes = 0
    fixed = resize_only((size, size), model_hw)
    with single_threaded_blas():
        for step in range(steps):
            rgb = image.image(p)
            chain = (
                standard_transforms(rng, (size, size), model_hw) if params.transforms else fixed
            )
            x = to_model.forward(chain.forward(rgb))
            v, g, used = grads(x, penalty if weight > 0 else None)
            passes += used
            values[:, step] = v
            p = adam.ascend(p, image.backward(chain.adjoint(to_model.adjoint(g))))
            progress((step + 1) / steps)
            if (step + 1) % PREVIEW_EVERY == 0 and step + 1 < steps:
                publish_preview(progress, _images(image.image(p), names, step + 1))
    final = _images(image.image(p), names, steps)
    x_axis = np.arange(1, steps + 1, dtype=np.float64)
    curves: list[Artifact] = [
        Curve(f"curve_{name.removeprefix('unit_')}", x_axis, values[i], "step", "objective")
        for i, name in enumerate(names)
    ]
    grid = ImageArtifact(
        "grid", image_grid([a.pixels for a in final if isinstance(a, ImageArtifact)]),
        f"{tensor}: {names}",
    )
    extras: dict[str, object] = {
        "layer": tensor,
        "units": [u.describe() for u in units],
        "size": size,
        "steps": steps,
        "transforms": params.transforms,
        "final_objective": [float(values[i, -1]) for i in range(n)],
        "backward_passes": steps * n,
    }
    if diversities:
        extras["diversity"] = {"first": diversities[0], "last": diversities[-1]}
    return Result(
        [*final, grid, *curves], model_calls=passes, extras=extras, views={"png": "grid"}
    )


def _images(rgb: np.ndarray, names: list[str], step: int) -> list[Artifact]:
    return [
        ImageArtifact(name, to_uint8(rgb[i]), f"step {step}") for i, name in enumerate(names)
    ]


SPEC = register(
    MethodSpec(
        name="feature_visualisation",
        params_model=FeatureVisualisationParams,
        fn=feature_visualisation,
        description="Feature visualisation by optimisation (Lucid's recipe): the image each "
        "unit answers most to; one PNG per unit, a grid and the objective per step.",
        kind="visualisation",
        execution="job",
        inputs="none",
        objectives=("class", "channel", "neuron", "layer_norm", "direction"),
        check=check,
        check_objective=lambda params, model, objective: (
            unit_objectives(model, objective, params.channels) and None
        ),
        cost=cost,
    )
)
