"""dataset_predictions: the model's predictions over a labelled dataset — accuracy per
class and the confusion matrix, each cell with its images' ids. From the cached logits
(shared with every other analysis of this model and dataset)."""

from __future__ import annotations

from typing import Any

import numpy as np
from pydantic import Field

from engine.artifacts import Result, Table
from engine.datasets.activations import OUTPUT, Target
from engine.datasets.store import DatasetReader
from engine.errors import InvalidInput
from engine.methods.base import MethodSpec, Progress, no_progress
from engine.methods.dataset.common import DatasetParams, DatasetPlanBuilder, cache_of, dataset_cost
from engine.methods.registry import register
from engine.models.runtime import LoadedModel
from engine.objectives import Objective


class PredictionParams(DatasetParams):
    max_ids: int = Field(default=1000, ge=0, le=100_000,
                         description="Image ids listed per confusion cell (at most).")


def targets(model: LoadedModel, objective: Objective, params: Any) -> list[Target]:
    return [Target(OUTPUT)]


def _label_index(model: LoadedModel, reader: DatasetReader) -> np.ndarray:
    """Each image's true class as the model's class index (-1: unlabelled or unknown): by
    label name, else a numeric label as the index."""
    labels = model.labels
    pos = {name: i for i, name in enumerate(labels)}
    out = np.full(len(reader), -1, np.int64)
    for i, k in enumerate(reader.labels.tolist()):
        if k < 0:
            continue
        name = reader.classes[k]
        if name in pos:
            out[i] = pos[name]
        elif name.isdigit() and int(name) < len(labels):
            out[i] = int(name)
    return out


def _assemble(model: LoadedModel, reader: DatasetReader, objective: Objective, params: Any,
              passes: int, progress: Progress = no_progress) -> Result:
    logits = cache_of(reader).values(model, reader, Target(OUTPUT)).reshape(len(reader), -1)
    predicted = np.argmax(logits, axis=1)
    truth = _label_index(model, reader)
    known = truth >= 0
    if not known.any():
        raise InvalidInput(
            f"Dataset {reader.name!r} has no labels that name the model's classes, so there "
            "is nothing to score predictions against. Label it (a folder per class, or an "
            "index) with the model's labels.",
            details={"dataset": reader.name, "classes": reader.classes[:50]},
        )
    n_classes = logits.shape[1]
    names = model.labels if len(model.labels) == n_classes else [str(i) for i in
                                                                range(n_classes)]
    ids = reader.ids()
    conf = np.zeros((n_classes, n_classes), np.int64)
    np.add.at(conf, (truth[known], predicted[known]), 1)
    per_class: list[list[Any]] = []
    for c in range(n_classes):
        count = int(conf[c].sum())
        if count:
            per_class.append([c, names[c], count, int(conf[c, c]), conf[c, c] / count])
    cells: list[list[Any]] = []
    for t, p in zip(*np.nonzero(conf), strict=True):
        members = np.flatnonzero(known & (truth == t) & (predicted == p))
        cells.append([int(t), int(p), names[int(t)], names[int(p)], len(members),
                      [ids[i] for i in members[: params.max_ids]]])
    accuracy = float(np.mean(predicted[known] == truth[known]))
    return Result(
        artifacts=[
            Table("per_class", ["class", "label", "count", "correct", "accuracy"], per_class),
            Table("confusion", [f"pred:{n}" for n in names],
                  [[int(v) for v in row] for row in conf]),
            Table("cells", ["true", "predicted", "true_label", "predicted_label", "count",
                            "ids"], cells),
        ],
        model_calls=passes,
        extras={"dataset": reader.name, "dataset_version": reader.version,
                "images": len(reader), "scored": int(known.sum()), "accuracy": accuracy,
                "forward_passes": passes},
        output=logits[:1],
    )


PLAN = DatasetPlanBuilder("dataset_predictions", targets, _assemble)


def dataset_predictions(model: LoadedModel, item: Any, objective: Objective,
                        params: PredictionParams, progress: Progress) -> Result:
    return PLAN.run(model, item, objective, params, progress)


SPEC = register(
    MethodSpec(
        name="dataset_predictions",
        params_model=PredictionParams,
        fn=dataset_predictions,
        description="Accuracy per class and the confusion matrix over a labelled dataset, "
        "each cell with its images' ids.",
        kind="dataset",
        execution="job",
        inputs="dataset",
        objectives=("class",),
        cost=dataset_cost,
        plan=PLAN,
    )
)
