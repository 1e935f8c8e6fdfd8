"""The artifact of an explanation over named features (a tabular row's columns): a signed
weight per feature, with the row's value of each, drawn as a sorted bar chart
(:mod:`engine.render.bars`). Registered on import of :mod:`engine.artifacts`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from engine.artifacts import Artifact, artifact_type


@artifact_type
@dataclass
class FeatureWeights(Artifact):
    """A weight per named feature: ``names``, ``weights`` (d,), the explained row's value
    of each (``values``, as text) and, where the method weighs a condition rather than the
    value itself (LIME's quartile bins: "age <= 41.00"), that condition (``conditions``).
    ``base`` is what the weights add to (KernelSHAP: E[f(background)]; LIME: the
    surrogate's intercept), ``f_x`` the explained score on the row."""

    name: str
    names: list[str]
    weights: NDArray[np.float64]
    values: list[str] = field(default_factory=list)
    conditions: list[str] | None = None
    base: float | None = None
    f_x: float | None = None
    type: ClassVar[str] = "feature_weights"

    @property
    def shape(self) -> list[int]:
        return [len(self.names)]

    @property
    def axes(self) -> list[str]:
        return ["feature"]

    def order(self) -> list[int]:
        """Feature indices by decreasing |weight| (ties in manifest order)."""
        w = np.asarray(self.weights, np.float64)
        return [int(i) for i in np.argsort(-np.abs(w), kind="stable")]

    def label(self, i: int) -> str:
        if self.conditions is not None and self.conditions[i]:
            return self.conditions[i]
        value = self.values[i] if i < len(self.values) else ""
        return f"{self.names[i]} = {value}" if value else self.names[i]

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"features": len(self.names)}
        if self.base is not None:
            out["base"] = self.base
        if self.f_x is not None:
            out["f_x"] = self.f_x
        return out

    def data(self) -> dict[str, Any]:
        return {
            "features": [
                {
                    "name": self.names[i],
                    "value": self.values[i] if i < len(self.values) else None,
                    "condition": self.conditions[i] if self.conditions is not None else None,
                    "weight": float(self.weights[i]),
                }
                for i in range(len(self.names))
            ],
            "order": self.order(),
            "base": self.base,
            "f_x": self.f_x,
        }

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"weights": np.asarray(self.weights, np.float64)}

    def stored_meta(self) -> dict[str, Any]:
        return {
            "names": self.names,
            "values": self.values,
            "conditions": self.conditions,
            "base": self.base,
            "f_x": self.f_x,
        }

    @classmethod
    def restore(
        cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]
    ) -> FeatureWeights:
        return cls(
            name,
            list(meta["names"]),
            arrays["weights"],
            list(meta.get("values") or []),
            meta.get("conditions"),
            meta.get("base"),
            meta.get("f_x"),
        )
