"""max_activating: the dataset's images that excite a unit most — a channel (its max, or
mean, over positions), a neuron, or a class score — with the patch around the unit's
strongest position cut at the layer's receptive field. A grid PNG (``grid``) and a JSON
ranking with scores (``ranking``). :mod:`.min_activating` is the same from the bottom.

Reads the activation cache (computed once per model version, dataset version and layer):
a second analysis of the same layer runs no forward pass.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import Field

from engine.artifacts import ImageArtifact, Result, Table
from engine.datasets.activations import OUTPUT, Target, receptive_field
from engine.datasets.store import DatasetReader
from engine.errors import InvalidObjective
from engine.methods.base import MethodSpec, Progress, no_progress
from engine.methods.dataset.common import (
    DatasetParams,
    DatasetPlanBuilder,
    cache_of,
    dataset_cost,
    grid,
    tile,
)
from engine.methods.registry import register
from engine.models.runtime import LoadedModel
from engine.objectives import Channel, ClassScore, Neuron, Objective


class RankingParams(DatasetParams):
    k: int = Field(default=16, ge=1, le=256, description="Images to return.")
    reduce: Literal["max", "mean"] = Field(
        default="max", description="A channel's score per image: its max or mean over "
        "positions (neurons and classes have one value).")
    tile: int = Field(default=64, ge=8, le=256, description="Pixels per grid tile.")
    columns: int = Field(default=8, ge=1, le=64, description="Tiles per grid row.")


def targets(model: LoadedModel, objective: Objective, params: Any) -> list[Target]:
    out = [Target(OUTPUT)]
    if isinstance(objective, Channel | Neuron):
        out.append(Target(objective.tensor))
    if isinstance(objective, Neuron):
        out.append(Target(objective.tensor, (objective.channel, objective.y, objective.x)))
    return out


def _scores(model: LoadedModel, reader: DatasetReader, objective: Objective, params: Any
            ) -> tuple[NDArray[np.float64], NDArray[np.int64] | None, tuple[int, int]]:
    """Per image: the unit's score, its strongest position (y, x) (None: the whole image)
    and the layer's (H, W)."""
    cache = cache_of(reader)
    if isinstance(objective, ClassScore):
        logits = cache.values(model, reader, Target(OUTPUT))
        values = (model.probabilities(logits) if objective.score == "probability"
                  else logits.reshape(len(reader), -1))
        return values[:, objective.index].astype(np.float64), None, (1, 1)
    if isinstance(objective, Channel | Neuron):
        stats = cache.layer(model, reader, objective.tensor)
        c = objective.channel
        if isinstance(objective, Neuron):
            v = cache.values(model, reader, Target(objective.tensor, (c, objective.y,
                                                                      objective.x)))
            pos = np.tile(np.asarray([[objective.y, objective.x]], np.int64), (len(v), 1))
            return v.astype(np.float64), pos, stats.spatial
        v = (stats.max if params.reduce == "max" else stats.mean)[:, c]
        flat = stats.argmax[:, c].astype(np.int64)
        pos = np.stack([flat // stats.spatial[1], flat % stats.spatial[1]], axis=1)
        return v.astype(np.float64), pos, stats.spatial
    raise InvalidObjective(  # pragma: no cover - the spec's objectives exclude it
        "Rank images by a class, a channel or a neuron.", details={"kind": objective.kind})


def box(position: tuple[int, int], spatial: tuple[int, int], input_hw: tuple[int, int],
        rf: tuple[int, int]) -> tuple[int, int, int, int]:
    """The input region (y0, x0, y1, x1) a layer position sees: the receptive field's size,
    centred on the position mapped to input coordinates, kept inside the image."""
    out = []
    for p, n, size, r in zip(position, spatial, input_hw, rf, strict=True):
        centre = (p + 0.5) * size / n
        a = round(centre - r / 2)
        a = min(max(a, 0), size - r)
        out.append((a, a + r))
    (y0, y1), (x0, x1) = out
    return y0, x0, y1, x1


def rank(model: LoadedModel, reader: DatasetReader, objective: Objective, params: Any,
         passes: int, lowest: bool) -> Result:
    scores, pos, spatial = _scores(model, reader, objective, params)
    order = np.argsort(scores if lowest else -scores, kind="stable")[: params.k]
    h, w = model.input_hw
    layer = objective.layer
    rf = (h, w) if pos is None or layer is None else receptive_field(model, layer)
    ids = reader.ids()
    rows: list[list[Any]] = []
    tiles: list[NDArray[np.uint8]] = []
    for r, i in enumerate(order.tolist()):
        yx = (0, 0) if pos is None else (int(pos[i, 0]), int(pos[i, 1]))
        b = (0, 0, h, w) if pos is None else box(yx, spatial, (h, w), rf)
        label = None if reader.labels[i] < 0 else reader.classes[int(reader.labels[i])]
        rows.append([r + 1, i, ids[i], label, float(scores[i]),
                     None if pos is None else yx[0], None if pos is None else yx[1], *b])
        pixels = model.codec.decode(reader.read(i)).pixels
        img = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode="RGB")
        tiles.append(tile(img, b, params.tile))
    columns = ["rank", "index", "id", "label", "score", "y", "x", "y0", "x0", "y1", "x1"]
    logits = cache_of(reader).values(model, reader, Target(OUTPUT))
    which = "bottom" if lowest else "top"
    return Result(
        artifacts=[
            ImageArtifact("grid", grid(tiles, params.columns),
                          caption=f"{which}-{len(order)} images of {reader.name}"),
            Table("ranking", columns, rows),
        ],
        model_calls=passes,
        extras={
            "dataset": reader.name,
            "dataset_version": reader.version,
            "images": len(reader),
            "k": len(order),
            "order": which,
            "receptive_field": list(rf),
            "layer_size": list(spatial),
            "forward_passes": passes,
        },
        views={"png": "grid"},
        output=logits[order[:1]] if len(order) else None,
    )


def _assemble(model: LoadedModel, reader: DatasetReader, objective: Objective, params: Any,
              passes: int, progress: Progress = no_progress) -> Result:
    return rank(model, reader, objective, params, passes, lowest=False)


PLAN = DatasetPlanBuilder("max_activating", targets, _assemble)


def max_activating(model: LoadedModel, item: Any, objective: Objective, params: RankingParams,
                   progress: Progress) -> Result:
    return PLAN.run(model, item, objective, params, progress)


SPEC = register(
    MethodSpec(
        name="max_activating",
        params_model=RankingParams,
        fn=max_activating,
        description="The dataset's top-k images for a channel, neuron or class score, with "
        "the patch at the unit's strongest position (receptive field): a grid and a ranking.",
        kind="dataset",
        execution="job",
        inputs="dataset",
        objectives=("channel", "neuron", "class"),
        cost=dataset_cost,
        plan=PLAN,
    )
)
