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

Each unit's image depends on its objective, its channel and the params alone (see
:mod:`engine.visualisation.optimise`), so the images of channel objectives are written to
the thumbnail cache that ``semantic_dictionary`` reads (``extras.thumbnails_cached``).
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import Artifact, Curve, ImageArtifact, Result
from engine.errors import InvalidParams
from engine.methods.base import MethodSpec, Progress, publish_preview
from engine.methods.registry import register
from engine.models.runtime import LoadedModel
from engine.objectives import (
    Channel,
    ClassScore,
    Neuron,
    Objective,
    ScoreKind,
    objective_tensor,
)
from engine.visualisation.cache import thumbnail_cache, thumbnail_key
from engine.visualisation.grid import image_grid, to_uint8
from engine.visualisation.model_io import unit_objectives
from engine.visualisation.optimise import Settings, optimise

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


def settings_of(params: FeatureVisualisationParams) -> Settings:
    return Settings(
        size=params.size,
        steps=params.steps,
        learning_rate=params.learning_rate,
        transforms=params.transforms,
        decorrelate=params.decorrelate,
        seed=params.seed,
        diversity=params.diversity,
    )


def unit_key(unit: Objective) -> int:
    """The index a unit's starting image is drawn with (its channel or class)."""
    if isinstance(unit, Channel | Neuron):
        return unit.channel
    if isinstance(unit, ClassScore):
        return unit.index
    return 0


def feature_visualisation(
    model: LoadedModel,
    item: None,
    objective: Objective,
    params: FeatureVisualisationParams,
    progress: Progress,
) -> Result:
    check(params, model)
    units, names = unit_objectives(model, objective, params.channels)
    n, steps = len(units), params.steps
    tensor = objective_tensor(objective, model)
    settings = settings_of(params)

    def preview(rgb: np.ndarray, step: int) -> None:
        publish_preview(progress, _images(rgb, names, step))

    run = optimise(model, units, [unit_key(u) for u in units], settings, progress, preview,
                   PREVIEW_EVERY)
    final = _images(run.rgb, names, steps)
    cached = _fill_cache(model, units, final, settings)
    x_axis = np.arange(1, steps + 1, dtype=np.float64)
    curves: list[Artifact] = [
        Curve(f"curve_{name.removeprefix('unit_')}", x_axis, run.values[i], "step", "objective")
        for i, name in enumerate(names)
    ]
    grid = ImageArtifact(
        "grid", image_grid([a.pixels for a in final if isinstance(a, ImageArtifact)]),
        f"{tensor}: {names}",
    )
    extras: dict[str, object] = {
        "layer": tensor,
        "units": [u.describe() for u in units],
        "size": params.size,
        "steps": steps,
        "transforms": params.transforms,
        "final_objective": [float(run.values[i, -1]) for i in range(n)],
        "backward_passes": steps * n,
        "thumbnails_cached": cached,
    }
    if run.diversities:
        extras["diversity"] = {"first": run.diversities[0], "last": run.diversities[-1]}
    return Result(
        [*final, grid, *curves], model_calls=run.passes, extras=extras, views={"png": "grid"}
    )


def _fill_cache(
    model: LoadedModel, units: list[Objective], images: list[Artifact], settings: Settings
) -> int:
    """Channel units' images into the thumbnail cache that semantic_dictionary reads (not
    with diversity: its rows depend on each other). Returns how many were written."""
    if settings.diversity > 0 and len(units) > 1:
        return 0
    cache = thumbnail_cache(model)
    written = 0
    for unit, art in zip(units, images, strict=True):
        if isinstance(unit, Channel) and isinstance(art, ImageArtifact):
            cache.put(thumbnail_key(model.version, unit.tensor, unit.channel, settings),
                      art.pixels)
            written += 1
    return written


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
