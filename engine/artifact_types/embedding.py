"""The ``embedding`` artifact: a dataset's images as points of a 2-D map (t-SNE, UMAP) of a
layer's pooled activations, each with its dataset index, image id, label, the model's
prediction and whether that is correct; and the caller's inputs placed on the same map
(``placed``), each with its nearest dataset images in the layer's space. Drawn as a scatter
(:mod:`engine.render.scatter`, ``service/static/renderers/scatter.js``). Registered on
import of :mod:`engine.artifacts`."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar, Literal

import numpy as np
from numpy.typing import NDArray

from engine.artifacts import Artifact, artifact_type

ColourBy = Literal["label", "prediction", "correct"]


def _ints(a: Any, n: int) -> NDArray[np.int64]:
    return np.asarray(a, np.int64).reshape(n)


@artifact_type
@dataclass
class Embedding(Artifact):
    """N dataset points and P placed points on a 2-D map.

    ``label`` indexes ``classes`` (the dataset's class names; -1: unlabelled),
    ``prediction`` indexes ``labels`` (the model's), ``correct`` is 1, 0 or -1 (no label
    the model knows). ``neighbours`` (P, k) are dataset indices, nearest first, at
    ``distances`` in the layer's pooled space; ``placed_names`` names each placed input."""

    name: str
    xy: NDArray[np.float32]
    index: NDArray[np.int64]
    ids: list[str]
    label: NDArray[np.int64]
    prediction: NDArray[np.int64]
    correct: NDArray[np.int8]
    classes: list[str]
    labels: list[str]
    colour_by: ColourBy = "label"
    placed_xy: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 2), np.float32))
    placed_prediction: NDArray[np.int64] = field(
        default_factory=lambda: np.zeros(0, np.int64))
    neighbours: NDArray[np.int64] = field(default_factory=lambda: np.zeros((0, 0), np.int64))
    distances: NDArray[np.float32] = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    placed_names: list[str] = field(default_factory=list)
    info_: dict[str, Any] = field(default_factory=dict)
    type: ClassVar[str] = "embedding"

    @property
    def shape(self) -> list[int]:
        return [int(self.xy.shape[0]), 2]

    @property
    def axes(self) -> list[str]:
        return ["point", "xy"]

    def _label(self, k: int) -> str | None:
        return self.classes[k] if 0 <= k < len(self.classes) else None

    def _prediction(self, k: int) -> str:
        return self.labels[k] if 0 <= k < len(self.labels) else str(k)

    def meta(self) -> dict[str, Any]:
        return {
            **self.info_,
            "points": int(self.xy.shape[0]),
            "placed": int(self.placed_xy.shape[0]),
            "colour_by": self.colour_by,
            "classes": list(self.classes),
            "labels": list(self.labels),
        }

    def points(self) -> list[dict[str, Any]]:
        correct = {1: True, 0: False}
        xy = self.xy.astype(np.float64).tolist()
        return [
            {"x": p[0], "y": p[1], "index": i, "id": self.ids[k], "label": self._label(lab),
             "prediction": self._prediction(pred), "correct": correct.get(c)}
            for k, (p, i, lab, pred, c) in enumerate(zip(
                xy, self.index.tolist(), self.label.tolist(), self.prediction.tolist(),
                self.correct.tolist(), strict=True))
        ]

    def placed(self) -> list[dict[str, Any]]:
        out = []
        for p in range(int(self.placed_xy.shape[0])):
            near = [
                {"index": int(i), "id": self.ids[int(i)],
                 "label": self._label(int(self.label[int(i)])), "distance": float(d)}
                for i, d in zip(self.neighbours[p].tolist(), self.distances[p].tolist(),
                                strict=True)
            ]
            x, y = (float(v) for v in self.placed_xy[p])
            out.append({"place": p, "name": self.placed_names[p] if p < len(self.placed_names)
                        else f"place[{p}]", "x": x, "y": y,
                        "prediction": self._prediction(int(self.placed_prediction[p])),
                        "neighbours": near})
        return out

    def data(self) -> dict[str, Any]:
        return {**self.meta(), "points": self.points(), "placed": self.placed()}

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {
            "xy": np.asarray(self.xy, np.float32),
            "index": np.asarray(self.index, np.int64),
            "label": np.asarray(self.label, np.int64),
            "prediction": np.asarray(self.prediction, np.int64),
            "correct": np.asarray(self.correct, np.int8),
            "placed_xy": np.asarray(self.placed_xy, np.float32).reshape(-1, 2),
            "placed_prediction": np.asarray(self.placed_prediction, np.int64),
            "neighbours": np.asarray(self.neighbours, np.int64),
            "distances": np.asarray(self.distances, np.float32),
        }

    def stored_meta(self) -> dict[str, Any]:
        return {"ids": self.ids, "classes": self.classes, "labels": self.labels,
                "colour_by": self.colour_by, "placed_names": self.placed_names,
                "info": self.info_}

    @classmethod
    def restore(
        cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]
    ) -> Embedding:
        n = int(arrays["xy"].shape[0])
        return cls(
            name, arrays["xy"], _ints(arrays["index"], n), list(meta["ids"]),
            _ints(arrays["label"], n), _ints(arrays["prediction"], n),
            np.asarray(arrays["correct"], np.int8), list(meta["classes"]),
            list(meta["labels"]), meta.get("colour_by", "label"),
            arrays["placed_xy"].reshape(-1, 2), np.asarray(arrays["placed_prediction"], np.int64),
            np.asarray(arrays["neighbours"], np.int64),
            np.asarray(arrays["distances"], np.float32), list(meta.get("placed_names", [])),
            dict(meta.get("info", {})),
        )
