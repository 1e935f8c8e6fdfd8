"""Quality metrics of one explanation, by name: the entry point for a job.

``compute_metrics(request, model, image, objective, attribution_values, spec, params,
progress)`` runs the metrics a :class:`MetricsRequest` names — ``deletion``,
``insertion``, ``sanity`` — on an explanation already computed, and returns one JSON-able
dict per metric, each with ``forward_passes`` (and ``backward_passes`` where a metric
differentiates) so the job's cost can include them; :func:`metrics_cost` sums them.

A request is written ``{"names": ["deletion", "sanity"], "deletion": {...},
"sanity": {"top_k": 2}}``, or just a list of names (defaults for the params).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.artifacts import Curve
from engine.methods.base import MethodSpec, Progress, no_progress
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, class_index
from engine.quality.deletion_insertion import deletion, insertion
from engine.quality.sanity import model_randomisation

MetricName = Literal["deletion", "insertion", "sanity"]
METRIC_NAMES: tuple[MetricName, ...] = ("deletion", "insertion", "sanity")


class DeletionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pixels_per_step: int | None = Field(
        default=None,
        ge=1,
        le=1 << 24,
        description="Pixels removed per step (default: the image width, so H steps: 224 "
        "steps and 225 forward passes on 224×224).",
    )
    substrate: Literal["zero", "mean"] = Field(
        default="zero", description='What replaces removed pixels: "zero" (black) or "mean".'
    )
    batch_size: int = Field(default=16, ge=1, le=256, description="Images per ONNX call.")


class InsertionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    pixels_per_step: int | None = Field(
        default=None,
        ge=1,
        le=1 << 24,
        description="Pixels inserted per step (default: the image width, so H steps).",
    )
    substrate: Literal["blur", "zero", "mean"] = Field(
        default="blur",
        description='The start image: "blur" (Gaussian σ = 5, 11 taps), "zero" or "mean".',
    )
    batch_size: int = Field(default=16, ge=1, le=256, description="Images per ONNX call.")


class SanityParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    top_k: int = Field(
        default=1,
        ge=0,
        le=1000,
        description="Randomise the top k parameterised layers (Conv/Gemm/MatMul) closest "
        "to the output; 0 is the identity check.",
    )
    cascade: bool = Field(
        default=False,
        description="Also report every k from 1 to top_k (one randomised model each).",
    )
    mode: Literal["normal", "shuffle"] = Field(
        default="normal",
        description='"normal": N(0, std of the original tensor); "shuffle": permute it.',
    )
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed of the randomisation.")


class MetricsRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    names: list[MetricName] = Field(default_factory=list, description="Metrics to compute.")
    deletion: DeletionParams = Field(default_factory=DeletionParams)
    insertion: InsertionParams = Field(default_factory=InsertionParams)
    sanity: SanityParams = Field(default_factory=SanityParams)

    @model_validator(mode="before")
    @classmethod
    def _names_only(cls, data: Any) -> Any:
        if isinstance(data, list | tuple):
            return {"names": list(data)}
        return data

    @model_validator(mode="after")
    def _unique(self) -> MetricsRequest:
        self.names = list(dict.fromkeys(self.names))
        return self


def _scaled(progress: Progress, start: float, width: float) -> Progress:
    """A Progress reporting ``start + width * f`` to ``progress``."""

    def report(fraction: float) -> None:
        progress(min(1.0, start + width * fraction))

    return report


def _weights(request: MetricsRequest) -> dict[str, float]:
    """Rough relative costs, to split the progress bar."""
    w: dict[str, float] = {}
    for name in request.names:
        if name == "sanity":
            k = request.sanity.top_k if request.sanity.cascade else 1
            w[name] = 1.0 * max(k, 1)
        else:
            w[name] = 1.0
    return w


def compute_metrics(
    request: MetricsRequest | Sequence[str],
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    attribution_values: NDArray[Any],
    spec: MethodSpec[Any],
    params: Any,
    progress: Progress = no_progress,
) -> dict[str, dict[str, Any]]:
    """The metrics named by ``request`` for an explanation ``attribution_values`` (H, W) of
    ``spec`` with ``params`` for ``objective`` on ``image``; JSON-able dicts by metric name."""
    req = (
        request
        if isinstance(request, MetricsRequest)
        else MetricsRequest.model_validate(list(request))
    )
    values = np.asarray(attribution_values)
    weights = _weights(req)
    total = sum(weights.values()) or 1.0
    done = 0.0
    out: dict[str, dict[str, Any]] = {}

    for name in req.names:
        w = weights[name]
        sub = _scaled(progress, done / total, w / total)
        if name == "deletion":
            p = req.deletion
            res = deletion(
                model,
                image.pixels,
                class_index(objective),
                values,
                pixels_per_step=p.pixels_per_step,
                substrate=p.substrate,
                batch_size=p.batch_size,
                progress=sub,
            )
            out[name] = {**res.to_dict(), "substrate": p.substrate, "lower_is_better": True}
        elif name == "insertion":
            q = req.insertion
            res = insertion(
                model,
                image.pixels,
                class_index(objective),
                values,
                pixels_per_step=q.pixels_per_step,
                start=q.substrate,
                batch_size=q.batch_size,
                progress=sub,
            )
            out[name] = {**res.to_dict(), "substrate": q.substrate, "lower_is_better": False}
        else:
            out[name] = _sanity(req.sanity, model, image, objective, values, spec, params, sub)
        done += w
        progress(min(1.0, done / total))
    return out


def _sanity(
    p: SanityParams,
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    values: NDArray[Any],
    spec: MethodSpec[Any],
    params: Any,
    progress: Progress,
) -> dict[str, Any]:
    ks = list(range(1, p.top_k + 1)) if p.cascade and p.top_k > 0 else [p.top_k]
    runs: list[dict[str, Any]] = []
    for i, k in enumerate(ks):
        sub = _scaled(progress, i / len(ks), 1.0 / len(ks))
        r = model_randomisation(
            model,
            image,
            objective,
            spec,
            params,
            top_k=k,
            seed=p.seed,
            mode=p.mode,
            original=values,
            progress=sub,
        )
        runs.append(r.to_dict())
    last = dict(runs[-1])
    last["method"] = spec.name
    last["forward_passes"] = sum(int(r["forward_passes"]) for r in runs)
    last["backward_passes"] = sum(int(r["backward_passes"]) for r in runs)
    if p.cascade:
        last["cascade"] = runs
    return last


def metrics_cost(results: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Total ``forward_passes`` and ``backward_passes`` of :func:`compute_metrics`' results."""
    return {
        "forward_passes": sum(int(r.get("forward_passes", 0)) for r in results.values()),
        "backward_passes": sum(int(r.get("backward_passes", 0)) for r in results.values()),
    }


def metric_artifacts(metrics: dict[str, dict[str, Any]]) -> list[Curve]:
    """The deletion and insertion curves of computed metrics, as curve artifacts."""
    out: list[Curve] = []
    for name in ("deletion", "insertion"):
        m = metrics.get(name)
        if not m or "curve" not in m:
            continue
        y = np.asarray(m["curve"], np.float64)
        x = np.linspace(0.0, 1.0, len(y))
        verb = "removed" if name == "deletion" else "inserted"
        out.append(
            Curve(name, x, y, f"fraction of pixels {verb}", "probability", float(m["auc"]))
        )
    return out
