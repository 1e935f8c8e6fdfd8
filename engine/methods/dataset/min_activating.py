"""min_activating: :mod:`.max_activating` from the bottom — the k images on which the
channel, neuron or class score is lowest (same cache, same artifacts)."""

from __future__ import annotations

from typing import Any

from engine.artifacts import Result
from engine.datasets.store import DatasetReader
from engine.methods.base import MethodSpec, Progress, no_progress
from engine.methods.dataset.common import DatasetPlanBuilder, dataset_cost
from engine.methods.dataset.max_activating import RankingParams, rank, targets
from engine.methods.registry import register
from engine.models.runtime import LoadedModel
from engine.objectives import Objective


def _assemble(model: LoadedModel, reader: DatasetReader, objective: Objective, params: Any,
              passes: int, progress: Progress = no_progress) -> Result:
    return rank(model, reader, objective, params, passes, lowest=True)


PLAN = DatasetPlanBuilder("min_activating", targets, _assemble)


def min_activating(model: LoadedModel, item: Any, objective: Objective, params: RankingParams,
                   progress: Progress) -> Result:
    return PLAN.run(model, item, objective, params, progress)


SPEC = register(
    MethodSpec(
        name="min_activating",
        params_model=RankingParams,
        fn=min_activating,
        description="The dataset's bottom-k images for a channel, neuron or class score "
        "(the opposite of max_activating): a grid and a ranking.",
        kind="dataset",
        execution="job",
        inputs="dataset",
        objectives=("channel", "neuron", "class"),
        cost=dataset_cost,
        plan=PLAN,
    )
)
