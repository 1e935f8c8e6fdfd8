"""Occlusion sensitivity (Zeiler & Fergus, 2014).

A window slides over the image with a stride; each position is replaced by a baseline and
the drop of the target's score is credited to every pixel the window covers. A pixel's
attribution is the mean drop over the windows that cover it (as Captum's ``Occlusion``).
All windows of a chunk go to ONNX Runtime as one batch.
"""

from __future__ import annotations

from typing import Annotated

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import InvalidParams
from engine.methods.base import Attribution, ImageInput, MethodSpec, Progress
from engine.methods.baselines import BaselineName, baseline_pixels
from engine.methods.registry import register
from engine.methods.scoring import ScoreKind, target_scores
from engine.models.runtime import LoadedModel

Colour = tuple[
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
]


class OcclusionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window: int = Field(default=16, ge=1, le=4096, description="Window side in pixels.")
    stride: int = Field(default=8, ge=1, le=4096, description="Step between windows in pixels.")
    baseline: BaselineName | Colour = Field(
        default="zero",
        description='What hides a window: "zero" (black), "mean" colour, "blur", or [r, g, b].',
    )
    blur_radius: float = Field(default=10.0, gt=0, le=100, description="Gaussian radius for blur.")
    score: ScoreKind = Field(default="logit", description="Measure the logit or the probability.")
    batch_size: int = Field(default=16, ge=1, le=256, description="Windows per ONNX Runtime call.")


def window_positions(size: int, window: int, stride: int) -> list[int]:
    return list(range(0, size - window + 1, stride))


def _check(params: OcclusionParams, model: LoadedModel) -> None:
    h, w = model.input_hw
    if params.window > min(h, w):
        raise InvalidParams(
            f"window {params.window} is larger than the model's input ({h}×{w}). "
            f"Use a window of at most {min(h, w)} pixels.",
            details={"window": params.window, "input_size": [h, w]},
        )


def occlusion(
    model: LoadedModel,
    image: ImageInput,
    target: int,
    params: OcclusionParams,
    progress: Progress,
) -> Attribution:
    _check(params, model)
    h, w, k = image.height, image.width, params.window
    ys = window_positions(h, k, params.stride)
    xs = window_positions(w, k, params.stride)
    windows = [(y, x) for y in ys for x in xs]

    x0 = model.to_model_input(image.pixels[None])
    xb = model.to_model_input(
        baseline_pixels(image.pixels, params.baseline, params.blur_radius)[None]
    )
    nchw = model.manifest.layout == "NCHW"
    f0 = float(target_scores(model.run(x0), target, params.score)[0])

    total = np.zeros((h, w), dtype=np.float64)
    count = np.zeros((h, w), dtype=np.float64)
    step = params.batch_size
    for start in range(0, len(windows), step):
        chunk = windows[start : start + step]
        batch = np.repeat(x0, len(chunk), axis=0)
        for i, (y, x) in enumerate(chunk):
            if nchw:
                batch[i, :, y : y + k, x : x + k] = xb[0, :, y : y + k, x : x + k]
            else:
                batch[i, y : y + k, x : x + k, :] = xb[0, y : y + k, x : x + k, :]
        drops = f0 - target_scores(model.run(batch), target, params.score)
        for (y, x), d in zip(chunk, drops, strict=True):
            total[y : y + k, x : x + k] += d
            count[y : y + k, x : x + k] += 1.0
        progress(min(1.0, (start + len(chunk)) / len(windows)))

    values = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return Attribution(
        values=values.astype(np.float32),
        model_calls=1 + len(windows),
        extras={"windows": len(windows), "target_score": f0},
    )


SPEC = register(
    MethodSpec(
        name="occlusion",
        params_model=OcclusionParams,
        fn=occlusion,
        description="Occlusion sensitivity: the score drop when a sliding window is hidden.",
        kind="perturbation",
        execution="job",
        check=_check,
    )
)
