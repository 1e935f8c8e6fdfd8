"""DeepDream (Mordvintsev, Olah & Tyka, 2015): gradient ascent on the caller's image to
amplify what a layer sees in it, octave by octave.

The recipe is the original notebook's: the image is split into ``octaves`` levels, each
``octave_scale`` smaller than the last (the detail lost by each downscale is kept); from
the smallest level up, each level runs ``steps`` steps of

    g = d objective / d image          (at a random roll of the image, rolled back)
    image += step_size · g / mean|g|    (then clipped to the valid range)

and the next level is the upscaled result plus the detail of that level. Images are in
[0, 1] (``step_size`` 0.01 ≈ 2.5 of 255 per step). The model sees each level's image
resized (bilinear) to its input size, through the manifest's preprocessing; the
gradient comes back through both adjoints (``engine.visualisation``).

The objective is the request's: a layer norm of a middle layer is the classic one
(``{"kind": "layer_norm", "layer": "blocks.6.expand"}`` on EfficientNet-Lite0), and any
channel, neuron, direction or class works too.
"""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.artifact_types.inside import Comparison
from engine.artifacts import Curve, ImageArtifact, Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind, objective_tensor
from engine.visualisation.grid import to_uint8
from engine.visualisation.model_io import ModelInput, UnitGradients
from engine.visualisation.threads import single_threaded_blas
from engine.visualisation.transforms import Resize


class DeepDreamParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    octaves: int = Field(default=4, ge=1, le=8, description="Levels of the image pyramid.")
    octave_scale: float = Field(
        default=1.4, ge=1.05, le=3.0, description="Size ratio between two levels."
    )
    steps: int = Field(default=10, ge=1, le=200, description="Steps per octave.")
    step_size: float = Field(
        default=0.01, gt=0.0, le=1.0,
        description="Each step moves pixels (in 0..1) by this times the gradient divided "
        "by its mean |g|.",
    )
    jitter: int = Field(
        default=32, ge=0, le=256,
        description="Largest random roll of the image per step, in pixels (seams move, so "
        "they never accumulate).",
    )
    seed: int = Field(default=0, ge=0, le=2**32 - 1, description="Random seed of the rolls.")
    score: ScoreKind = Field(default="logit", description="A class objective's score.")


def cost(params: DeepDreamParams, model: LoadedModel) -> int:
    """Passes: a VJP a step, and a forward pass a step for a value-dependent objective
    (a layer norm, the usual one), plus the objective on the original and the dream."""
    return 2 * params.octaves * params.steps + 2


def _resize(img: NDArray[np.float32], hw: tuple[int, int]) -> NDArray[np.float32]:
    """(3, h, w) -> (3, *hw), bilinear (align_corners=True)."""
    if img.shape[1:] == hw:
        return img
    out: NDArray[np.float32] = Resize((img.shape[1], img.shape[2]), hw).forward(img[None])[0]
    return out


def deepdream(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: DeepDreamParams,
    progress: Progress,
) -> Result:
    rng = np.random.default_rng(params.seed)
    grads = UnitGradients(model, [objective])
    to_model = ModelInput(model)
    model_hw = model.input_hw
    original = np.ascontiguousarray(image.pixels.transpose(2, 0, 1) / 255.0, np.float32)

    def evaluate(img: NDArray[np.float32]) -> float:
        x = to_model.forward(_resize(img, model_hw)[None])
        t = model.tensor_values(x, objective_tensor(objective, model))
        return float(objective.value(t)[0])

    # the pyramid: each level's lost detail, smallest level last
    details: list[NDArray[np.float32]] = []
    img = original
    for _ in range(params.octaves - 1):
        h, w = img.shape[1:]
        lo = _resize(img, (max(8, round(h / params.octave_scale)),
                           max(8, round(w / params.octave_scale))))
        details.append(img - _resize(lo, (h, w)))
        img = lo
    total = params.octaves * params.steps
    values: list[float] = []
    sizes: list[list[int]] = []
    passes = 0
    with single_threaded_blas():
        for octave in range(params.octaves):
            if octave > 0:
                detail = details[-octave]
                img = _resize(img, (detail.shape[1], detail.shape[2])) + detail
            h, w = img.shape[1:]
            sizes.append([int(h), int(w)])
            to_input = Resize((h, w), model_hw)
            for _ in range(params.steps):
                dy = int(rng.integers(-params.jitter, params.jitter + 1)) if params.jitter else 0
                dx = int(rng.integers(-params.jitter, params.jitter + 1)) if params.jitter else 0
                rolled = np.roll(img, (dy, dx), axis=(1, 2))
                x = to_model.forward(to_input.forward(rolled[None]))
                v, g, used = grads(x)
                passes += used
                values.append(float(v[0]))
                grad = np.roll(to_input.adjoint(to_model.adjoint(g))[0], (-dy, -dx), axis=(1, 2))
                img = img + np.float32(params.step_size) * grad / (np.abs(grad).mean() + 1e-8)
                np.clip(img, 0.0, 1.0, out=img)
                progress(len(values) / total)
    before, after = evaluate(original), evaluate(img)
    passes += 2
    steps = np.arange(1, len(values) + 1, dtype=np.float64)
    return Result(
        [
            ImageArtifact("dream", to_uint8(img), f"{objective.describe()}"),
            ImageArtifact("original", to_uint8(original)),
            Curve("objective", steps, np.asarray(values), "step", "objective"),
            Comparison("before_after", "original", "dream", np.asarray([before, after])),
        ],
        model_calls=passes,
        views={"png": "dream"},
        extras={
            "layer": objective_tensor(objective, model),
            "objective_original": before,
            "objective_dream": after,
            "octave_sizes": sizes,
            "backward_passes": len(values),
        },
    )


SPEC = register(
    MethodSpec(
        name="deepdream",
        params_model=DeepDreamParams,
        fn=deepdream,
        description="DeepDream: gradient ascent on the image, octave by octave, amplifying "
        "what the objective's layer sees; the dream, the original and the objective per step.",
        kind="visualisation",
        execution="job",
        inputs="item",
        objectives=("layer_norm", "channel", "neuron", "direction", "class"),
        cost=cost,
    )
)
