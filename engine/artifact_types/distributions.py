"""The ``distributions`` artifact type: histograms of values per row (a channel of a layer)
and per input set, on shared bin edges per row, so sets side by side compare bin by bin.

* ``counts`` (rows, sets, bins) — how many of a set's images fall in each bin;
* ``edges`` (rows, bins + 1) — the row's bin edges (the dataset's range of the row: the same
  for every set, and whatever the sets);
* ``means`` (rows, sets) — each set's mean of the row;
* per row its ``layers[r]`` and ``channels[r]``; per set its ``sets[s]`` name and ``sizes[s]``;
* ``order`` — the rows in the order to show them (most different first when two sets are
  compared, ``compared`` naming them; else as the layers list them).

JSON: those fields with the arrays as nested lists; ``.npy``: the counts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from engine.artifacts import Artifact, artifact_type


@artifact_type
@dataclass
class Distributions(Artifact):
    name: str
    counts: NDArray[np.int64]
    edges: NDArray[np.float64]
    means: NDArray[np.float64]
    sets: list[str]
    sizes: list[int]
    layers: list[str]
    channels: list[int]
    order: list[int] = field(default_factory=list)
    compared: list[int] = field(default_factory=list)
    statistic: str = "mean"
    type: ClassVar[str] = "distributions"

    def __post_init__(self) -> None:
        r, s, b = self.counts.shape
        if self.edges.shape != (r, b + 1) or self.means.shape != (r, s):
            raise ValueError("distributions: counts, edges and means disagree in shape")
        if len(self.sets) != s or len(self.sizes) != s:
            raise ValueError("distributions: one name and size per set")
        if len(self.layers) != r or len(self.channels) != r:
            raise ValueError("distributions: one layer and channel per row")
        if not self.order:
            self.order = list(range(r))

    @property
    def shape(self) -> list[int]:
        return [int(v) for v in self.counts.shape]

    @property
    def axes(self) -> list[str]:
        return ["row", "set", "bin"]

    def density(self) -> NDArray[np.float64]:
        """Each set's share of its images per bin (rows, sets, bins); 0 for an empty set."""
        sizes = np.asarray(self.sizes, np.float64)[None, :, None]
        out: NDArray[np.float64] = self.counts / np.where(sizes > 0, sizes, 1.0)
        return out

    def meta(self) -> dict[str, Any]:
        return {
            "statistic": self.statistic,
            "rows": int(self.counts.shape[0]),
            "bins": int(self.counts.shape[2]),
            "sets": list(self.sets),
            "sizes": list(self.sizes),
            "compared": [self.sets[i] for i in self.compared],
            "layers": sorted(set(self.layers), key=self.layers.index),
        }

    def data(self) -> dict[str, Any]:
        return {
            "statistic": self.statistic,
            "sets": list(self.sets),
            "sizes": list(self.sizes),
            "compared": list(self.compared),
            "layers": list(self.layers),
            "channels": list(self.channels),
            "order": list(self.order),
            "counts": np.ascontiguousarray(self.counts, np.int64),
            "edges": np.ascontiguousarray(self.edges, np.float64),
            "means": np.ascontiguousarray(self.means, np.float64),
        }

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {
            "counts": np.asarray(self.counts, np.int64),
            "edges": np.asarray(self.edges, np.float64),
            "means": np.asarray(self.means, np.float64),
            "channels": np.asarray(self.channels, np.int64),
            "order": np.asarray(self.order, np.int64),
        }

    def stored_meta(self) -> dict[str, Any]:
        return {"sets": list(self.sets), "sizes": list(self.sizes),
                "layers": list(self.layers), "compared": list(self.compared),
                "statistic": self.statistic}

    @classmethod
    def restore(cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]
                ) -> Distributions:
        return cls(name, arrays["counts"], arrays["edges"], arrays["means"],
                   list(meta["sets"]), [int(v) for v in meta["sizes"]], list(meta["layers"]),
                   [int(v) for v in arrays["channels"]], [int(v) for v in arrays["order"]],
                   [int(v) for v in meta.get("compared", [])], str(meta.get("statistic", "")))
