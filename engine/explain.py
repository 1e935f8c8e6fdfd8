"""One explanation's stages after decoding: resolve the objective, run the method, add the
quality metrics. The job layer (single task or chunked) calls these; nothing here knows of
jobs, stores or HTTP.

The model's output on the input is computed at most once: a ``"top1"`` class needs it to
resolve, and the reported target score needs it — unless the method already ran the input
(gradient and CAM methods return it as ``Result.output``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from api_schemas.objectives import ClassObjective, ObjectiveRequest
from engine.artifacts import Artifact, Result
from engine.errors import InvalidObjective, UnsupportedModality
from engine.methods.base import MethodSpec, Progress, ScaledProgress
from engine.models.runtime import LoadedModel
from engine.objectives import ClassScore, Objective, resolve_objective
from engine.quality.metrics import (
    MetricsRequest,
    compute_metrics,
    metric_artifacts,
    metrics_cost,
)


@dataclass
class Explanation:
    result: Result
    objective: Objective
    model_calls: int
    target_score: float | None = None
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def cost(self) -> dict[str, int]:
        """Forward and backward passes of the method and its metrics (the job's cost)."""
        extra = metrics_cost(self.metrics) if self.metrics else {}
        return {
            "forward_passes": self.model_calls + extra.get("forward_passes", 0),
            "backward_passes": int(self.result.extras.get("backward_passes", 0))
            + extra.get("backward_passes", 0),
        }

    @property
    def artifacts(self) -> list[Artifact]:
        """The method's artifacts, then the metrics' curves."""
        return [*self.result.artifacts, *metric_artifacts(self.metrics)]

    def target_info(self) -> dict[str, Any] | None:
        if not isinstance(self.objective, ClassScore):
            return None
        return {
            "index": self.objective.index,
            "label": self.objective.label,
            "score": self.target_score if self.target_score is not None else 0.0,
        }


def check_method(spec: MethodSpec[Any], model: LoadedModel, request: ObjectiveRequest) -> None:
    """Refuse a method that does not take the model's modality or the objective's kind."""
    modality = model.manifest.modality
    if modality not in spec.modalities:
        from engine.methods.registry import all_methods

        fits = [m.name for m in all_methods() if modality in m.modalities]
        raise UnsupportedModality(
            f"Method {spec.name!r} takes {', '.join(spec.modalities)} inputs; model "
            f"{model.name!r} is {modality}. Use one of: {', '.join(fits)}.",
            details={"method": spec.name, "modality": modality, "methods": fits},
        )
    if spec.inputs != "item" and needs_output(request):
        raise InvalidObjective(
            f'Method {spec.name!r} takes no input, so "top1" has no prediction to name: give a '
            "class index or label, or another objective.",
            details={"method": spec.name, "target": "top1"},
        )
    if request.kind not in spec.objectives:
        raise InvalidObjective(
            f"Method {spec.name!r} takes objectives of kind {', '.join(spec.objectives)}, not "
            f"{request.kind!r}.",
            details={"method": spec.name, "kind": request.kind, "kinds": list(spec.objectives)},
        )


def needs_output(request: ObjectiveRequest) -> bool:
    """Whether resolving the objective needs the model's output on the input ("top1")."""
    return (
        isinstance(request, ClassObjective)
        and isinstance(request.target, str)
        and request.target.strip().lower() == "top1"
    )


def resolve(
    model: LoadedModel,
    spec: MethodSpec[Any],
    item: Any,
    request: ObjectiveRequest,
    params: Any,
) -> tuple[Objective, NDArray[np.float32] | None]:
    """The objective, checked against the model and the method, and the model's output on
    the input when resolving needed it (else ``None``)."""
    check_method(spec, model, request)
    logits = None
    if item is not None and needs_output(request):
        logits = model.run(model.codec.item_input(item))
    objective = resolve_objective(
        request, model, getattr(params, "score", "logit"), None if logits is None else logits[0]
    )
    if spec.kind == "gradient" and objective.layer is not None:
        model.check_gradients(output=objective.layer)
    return objective, logits


def finish(
    model: LoadedModel,
    spec: MethodSpec[Any],
    item: Any,
    objective: Objective,
    params: Any,
    result: Result,
    logits: NDArray[np.float32] | None,
    progress: Progress,
    metrics: MetricsRequest | None = None,
    extra_calls: int = 0,
) -> Explanation:
    """A method's result with the target's score and the quality metrics asked for."""
    calls = result.model_calls + extra_calls
    score = None
    if isinstance(objective, ClassScore) and item is not None:
        output = logits if logits is not None else result.output
        if output is None:
            output = model.run(model.codec.item_input(item))
            calls += 1
        score = float(model.probabilities(output[:1])[0, objective.index])
    out = Explanation(result, objective, calls, score)
    if metrics is not None and metrics.names and item is not None:
        out.metrics = compute_metrics(
            metrics, model, item, objective, result.values, spec, params, progress
        )
    return out


def explain(
    model: LoadedModel,
    spec: MethodSpec[Any],
    item: Any,
    request: ObjectiveRequest,
    params: Any,
    progress: Progress,
    metrics: MetricsRequest | None = None,
) -> Explanation:
    """Resolve, run, finish, in this process (progress shared 60/40 with the metrics)."""
    objective, logits = resolve(model, spec, item, request, params)
    wants_metrics = metrics is not None and bool(metrics.names)
    share = 0.6 if wants_metrics else 1.0
    result = spec.fn(model, item, objective, params, ScaledProgress(progress, 0.0, share))
    return finish(
        model,
        spec,
        item,
        objective,
        params,
        result,
        logits,
        ScaledProgress(progress, share, 1.0 - share),
        metrics,
        extra_calls=0 if logits is None else 1,
    )
