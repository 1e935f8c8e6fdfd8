"""Tabular results as plain structures (no pandas): each feature's weight as numpy, with
the row's value of each and the condition LIME weighed, and the row's ``input`` body."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class FeatureWeights:
    """``weights[i]`` is feature ``names[i]``'s weight; ``values[i]`` the row's value (as
    text); ``conditions[i]`` what LIME weighed ("age <= 41.00"), else None; ``base`` what
    the weights add to (KernelSHAP: E[f(background)]), ``f_x`` the score on the row."""

    names: list[str]
    weights: NDArray[np.float64]
    values: list[str | None]
    conditions: list[str | None]
    base: float | None
    f_x: float | None

    def as_dict(self) -> dict[str, float]:
        """Feature name -> weight."""
        return {n: float(w) for n, w in zip(self.names, self.weights, strict=True)}

    def ranked(self) -> list[tuple[str, float]]:
        """(name, weight) by decreasing |weight|."""
        order = np.argsort(-np.abs(self.weights), kind="stable")
        return [(self.names[i], float(self.weights[i])) for i in order]


def row_input(row: Mapping[str, Any] | Sequence[Any]) -> dict[str, Any]:
    """The ``input`` body of a tabular explanation: a row by feature name, or in order."""
    if isinstance(row, Mapping):
        return {"modality": "tabular", "row": dict(row)}
    if isinstance(row, str | bytes):
        raise TypeError("a row is a mapping by feature name or a sequence in feature order")
    return {"modality": "tabular", "row": [v.item() if hasattr(v, "item") else v for v in row]}


def feature_weights_of(artifact: dict[str, Any]) -> FeatureWeights:
    """From a ``feature_weights`` artifact's JSON (``?format=json``)."""
    data = artifact["data"]
    feats = data["features"]
    return FeatureWeights(
        [str(f["name"]) for f in feats],
        np.asarray([f["weight"] for f in feats], np.float64),
        [f.get("value") for f in feats],
        [f.get("condition") for f in feats],
        data.get("base"),
        data.get("f_x"),
    )
