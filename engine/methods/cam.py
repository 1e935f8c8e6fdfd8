"""CAM (Zhou et al., 2016): the class's linear-head weights applied to the last feature maps.

Needs a model whose output is a linear layer right after global average pooling; the
weights are read from the graph, and one forward pass gives the feature maps.
"""

from __future__ import annotations

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import AttributionMap, Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.layer_maps import to_chw, upsample
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, class_index


class CamParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    relu: bool = Field(default=True, description="Keep only positive evidence.")


def check(params: CamParams, model: LoadedModel) -> None:
    model.cam_head()


def cam(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: CamParams,
    progress: Progress,
) -> Result:
    (result,) = cam_batch(model, [image], [objective], params)
    progress(1.0)
    return result


def cam_batch(
    model: LoadedModel,
    images: list[ImageInput],
    objectives: list[Objective],
    params: CamParams,
) -> list[Result]:
    """CAM of several images, each for its own class, from one forward pass."""
    targets = [class_index(o) for o in objectives]
    head = model.cam_head()
    x = model.to_model_input(np.stack([im.pixels for im in images]))
    activation, logits = model.probe(x, [head.layer])
    out = logits.reshape(logits.shape[0], -1)
    results = []
    for i, (image, target) in enumerate(zip(images, targets, strict=True)):
        a = to_chw(activation[i : i + 1], model)
        m = np.tensordot(head.weights[target], a, axes=(0, 0)).astype(np.float32)
        if params.relu:
            m = np.maximum(m, 0.0)
        results.append(
            Result(
                [
                    AttributionMap("attribution", upsample(m, image.height, image.width)),
                    AttributionMap("cam", m),
                ],
                model_calls=1,
                extras={"layer": head.layer, "layer_shape": list(a.shape)},
                output=out[i : i + 1],
            )
        )
    return results


SPEC = register(
    MethodSpec(
        name="cam",
        params_model=CamParams,
        fn=cam,
        description="Class activation mapping from the weights of a global-pool + linear head.",
        kind="cam",
        execution="sync",
        check=check,
        batch_fn=cam_batch,
    )
)
