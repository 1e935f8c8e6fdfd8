"""One explanation, start to end: decode, prepare, resolve the target, run the method."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from PIL import Image

from engine.methods.base import Attribution, MethodSpec, Progress
from engine.modalities.image import prepare_image
from engine.models.runtime import LoadedModel, softmax
from engine.quality.metrics import MetricsRequest, compute_metrics, metrics_cost
from engine.targets import resolve_target


@dataclass
class Explanation:
    attribution: Attribution
    target_index: int
    target_label: str
    target_score: float
    model_calls: int
    metrics: dict[str, dict[str, Any]] = field(default_factory=dict)

    @property
    def cost(self) -> dict[str, int]:
        """Forward and backward passes of the method and its metrics (the job's cost)."""
        extra = metrics_cost(self.metrics) if self.metrics else {}
        return {
            "forward_passes": self.model_calls + extra.get("forward_passes", 0),
            "backward_passes": int(self.attribution.extras.get("backward_passes", 0))
            + extra.get("backward_passes", 0),
        }


def _scaled(progress: Progress, start: float, width: float) -> Progress:
    def report(fraction: float) -> None:
        progress(start + width * min(max(fraction, 0.0), 1.0))

    return report


def explain(
    model: LoadedModel,
    image: Image.Image,
    spec: MethodSpec[Any],
    params: Any,
    target: int | str,
    progress: Progress,
    metrics: MetricsRequest | None = None,
) -> Explanation:
    """Decode-free core of a job: the method's attribution, then the quality metrics asked
    for (their passes count in the cost; progress is shared 60/40 between them)."""
    inp = prepare_image(image, model.manifest)
    logits = model.scores(inp.pixels[None])[0]
    index = resolve_target(target, model.labels, logits)
    wants_metrics = metrics is not None and bool(metrics.names)
    method_share = 0.6 if wants_metrics else 1.0
    attribution = spec.fn(model, inp, index, params, _scaled(progress, 0.0, method_share))
    result = Explanation(
        attribution=attribution,
        target_index=index,
        target_label=model.labels[index],
        target_score=float(softmax(logits[None])[0, index]),
        model_calls=1 + attribution.model_calls,
    )
    if wants_metrics:
        assert metrics is not None
        result.metrics = compute_metrics(
            metrics,
            model,
            inp,
            index,
            attribution.values,
            spec,
            params,
            _scaled(progress, method_share, 1.0 - method_share),
        )
    return result
