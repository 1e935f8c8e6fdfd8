"""How a request names a dataset (for the dataset analyses, ``MethodSpec.inputs="dataset"``).

``{"model": "digits-cnn", "method": "max_activating", "dataset": "digits",
"objective": {"kind": "channel", "layer": "conv3", "channel": 3}, "params": {"k": 16}}``:
the dataset by name, at its current version (pinned in the job: a job runs on the version
it was accepted with, and its id changes with the version). Without an objective or a
target the class objective is class 0 (dataset_predictions ignores it); quality metrics
score one input and are refused.
"""

from __future__ import annotations

from typing import Any

from api_schemas.explanations import ExplanationRequest
from api_schemas.objectives import ClassObjective, ObjectiveRequest
from engine.errors import InvalidInput, InvalidParams
from engine.methods.base import MethodSpec
from jobs.runtime import Runtime


def dataset_of(
    rt: Runtime,
    spec: MethodSpec[Any],
    req: ExplanationRequest,
    metrics: Any,
    objective: ObjectiveRequest,
) -> tuple[dict[str, Any], ObjectiveRequest]:
    """The job's dataset reference ({"name", "version", "images"}) and its objective."""
    if not req.dataset:
        raise InvalidInput(
            f"Method {spec.name!r} runs over a dataset: name one in `dataset` (see GET "
            "/v1/datasets; the built-in one is \"digits\").",
            details={"field": "dataset"},
        )
    if req.image or req.input is not None:
        raise InvalidInput(
            f"Method {spec.name!r} runs over a dataset, not one input: send `dataset` "
            "without `image` or `input`.",
            details={"field": "input"},
        )
    if metrics is not None:
        raise InvalidParams(
            "Quality metrics score one input's explanation; ask a dataset analysis without "
            "`metrics`.",
            details={"metrics": metrics.names},
        )
    info = rt.datasets.get(req.dataset)
    check = getattr(spec.plan, "check_dataset", None)  # e.g. the sets' labels and ids exist
    if callable(check):
        check(spec.parse_params(req.params), rt.datasets.reader(info.name, info.version))
    if req.objective is None and req.target is None:
        objective = ClassObjective(target=0)
    return {"name": info.name, "version": info.version, "images": info.count}, objective
