"""Typed artifacts: the named parts of a method's answer.

A :class:`Result` holds named artifacts, each of a registered type — an attribution with
named axes (and feature names where they exist), an image, segments, a curve, a table, and
whatever later methods add (histograms, embeddings, graphs). Each type knows how to store
itself (small JSON ``meta`` + numpy arrays, no pickle) and what its JSON ``data`` is;
drawing is done by the renderers registered in :mod:`engine.render` for ``(type, format)``.
The service renders by artifact type, never by a method's names.
"""

from __future__ import annotations

import io
import json
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar

import numpy as np
from numpy.typing import NDArray

from engine.errors import UnknownArtifact


class Artifact(ABC):
    """A named, typed part of a result."""

    type: ClassVar[str]
    name: str

    @property
    @abstractmethod
    def shape(self) -> list[int]: ...

    @property
    def axes(self) -> list[str]:
        return []

    def meta(self) -> dict[str, Any]:
        """Small JSON-able facts shown beside the artifact (the wire's ``meta``)."""
        return {}

    @abstractmethod
    def data(self) -> dict[str, Any]:
        """The artifact's content as JSON (the body of ``?format=json``)."""

    @abstractmethod
    def arrays(self) -> dict[str, NDArray[Any]]:
        """What is stored as numpy arrays; the first is the ``.npy`` rendering."""

    def stored_meta(self) -> dict[str, Any]:
        """Everything but the arrays that ``restore`` needs."""
        return self.meta()

    @classmethod
    @abstractmethod
    def restore(
        cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]
    ) -> Artifact: ...

    def info(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "type": self.type,
            "shape": self.shape,
            "axes": self.axes,
            "meta": self.meta(),
        }

    def to_json(self) -> dict[str, Any]:
        return {**self.info(), "data": self.data()}

    def primary_array(self) -> NDArray[Any]:
        return next(iter(self.arrays().values()))


ARTIFACT_TYPES: dict[str, type[Artifact]] = {}

A = TypeVar("A", bound=type[Artifact])


def artifact_type(cls: A) -> A:
    """Class decorator: register an artifact type by its ``type`` name."""
    if cls.type in ARTIFACT_TYPES:
        raise ValueError(f"artifact type {cls.type!r} registered twice")
    ARTIFACT_TYPES[cls.type] = cls
    return cls


def _floats(a: NDArray[Any]) -> NDArray[np.float32]:
    """A float array as float32, C-contiguous: JSON writes it at float32 precision."""
    return np.ascontiguousarray(a, np.float32)


@artifact_type
@dataclass
class AttributionMap(Artifact):
    """One value per feature of the input: pixels (axes y, x), columns, words, time steps."""

    name: str
    values: NDArray[np.float32]
    axes_: tuple[str, ...] = ("y", "x")
    feature_names: list[str] | None = None
    type: ClassVar[str] = "attribution"

    @property
    def shape(self) -> list[int]:
        return [int(s) for s in self.values.shape]

    @property
    def axes(self) -> list[str]:
        return list(self.axes_)

    def meta(self) -> dict[str, Any]:
        v = np.asarray(self.values, np.float64)
        out: dict[str, Any] = {
            "min": float(v.min()) if v.size else 0.0,
            "max": float(v.max()) if v.size else 0.0,
        }
        if self.feature_names is not None:
            out["feature_names"] = self.feature_names
        return out

    def data(self) -> dict[str, Any]:
        return {"values": _floats(self.values)}

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"values": np.asarray(self.values, np.float32)}

    def stored_meta(self) -> dict[str, Any]:
        return {"axes": list(self.axes_), "feature_names": self.feature_names}

    @classmethod
    def restore(
        cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]
    ) -> AttributionMap:
        return cls(name, arrays["values"], tuple(meta.get("axes", ("y", "x"))),
                   meta.get("feature_names"))


@artifact_type
@dataclass
class ImageArtifact(Artifact):
    """An RGB picture (H, W, 3) uint8: a channel grid, a feature visualisation."""

    name: str
    pixels: NDArray[np.uint8]
    caption: str = ""
    type: ClassVar[str] = "image"

    @property
    def shape(self) -> list[int]:
        return [int(s) for s in self.pixels.shape]

    @property
    def axes(self) -> list[str]:
        return ["y", "x", "channel"]

    def meta(self) -> dict[str, Any]:
        return {"caption": self.caption} if self.caption else {}

    def data(self) -> dict[str, Any]:
        return {}

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"pixels": np.asarray(self.pixels, np.uint8)}

    @classmethod
    def restore(
        cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]
    ) -> ImageArtifact:
        return cls(name, arrays["pixels"], str(meta.get("caption", "")))


@artifact_type
@dataclass
class Segments(Artifact):
    """A label image of the input's segments (superpixels) and a weight per segment."""

    name: str
    labels: NDArray[np.int32]
    weights: NDArray[np.float64]
    positive: list[int] = field(default_factory=list)
    negative: list[int] = field(default_factory=list)
    type: ClassVar[str] = "segments"

    @property
    def shape(self) -> list[int]:
        return [int(s) for s in self.labels.shape]

    @property
    def axes(self) -> list[str]:
        return ["y", "x"]

    def meta(self) -> dict[str, Any]:
        return {"segments": int(self.weights.shape[0])}

    def data(self) -> dict[str, Any]:
        return {
            "weights": [float(w) for w in self.weights],
            "positive": self.positive,
            "negative": self.negative,
        }

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"labels": np.asarray(self.labels, np.int32), "weights": self.weights}

    def stored_meta(self) -> dict[str, Any]:
        return {"positive": self.positive, "negative": self.negative}

    @classmethod
    def restore(
        cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]
    ) -> Segments:
        return cls(name, arrays["labels"], arrays["weights"],
                   list(meta.get("positive", [])), list(meta.get("negative", [])))


@artifact_type
@dataclass
class Curve(Artifact):
    """y against x (a deletion or insertion curve, an objective over optimisation steps)."""

    name: str
    x: NDArray[np.float64]
    y: NDArray[np.float64]
    x_label: str = ""
    y_label: str = ""
    auc: float | None = None
    type: ClassVar[str] = "curve"

    @property
    def shape(self) -> list[int]:
        return [int(self.y.shape[0])]

    @property
    def axes(self) -> list[str]:
        return ["x"]

    def meta(self) -> dict[str, Any]:
        out: dict[str, Any] = {"x_label": self.x_label, "y_label": self.y_label}
        if self.auc is not None:
            out["auc"] = self.auc
        return out

    def data(self) -> dict[str, Any]:
        return {
            "x": [float(v) for v in self.x],
            "y": [float(v) for v in self.y],
            "x_label": self.x_label,
            "y_label": self.y_label,
            "auc": self.auc,
        }

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"xy": np.stack([self.x, self.y]).astype(np.float64)}

    @classmethod
    def restore(cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> Curve:
        xy = arrays["xy"]
        return cls(name, xy[0], xy[1], str(meta.get("x_label", "")),
                   str(meta.get("y_label", "")), meta.get("auc"))


@artifact_type
@dataclass
class Table(Artifact):
    """Rows of named columns (per-channel statistics, a ranking)."""

    name: str
    columns: list[str]
    rows: list[list[Any]]
    type: ClassVar[str] = "table"

    @property
    def shape(self) -> list[int]:
        return [len(self.rows), len(self.columns)]

    @property
    def axes(self) -> list[str]:
        return ["row", "column"]

    def data(self) -> dict[str, Any]:
        return {"columns": self.columns, "rows": self.rows}

    def _numeric(self) -> bool:
        return bool(self.rows) and all(
            isinstance(v, int | float) and not isinstance(v, bool) for r in self.rows for v in r
        )

    def arrays(self) -> dict[str, NDArray[Any]]:
        if self._numeric():
            return {"rows": np.asarray(self.rows, np.float64)}
        return {"rows": np.zeros((len(self.rows), 0))}

    def stored_meta(self) -> dict[str, Any]:
        """Numeric rows are stored as an array (a 1280-row table is 1280 × C floats, not
        JSON); other rows as JSON."""
        if self._numeric():
            return {"columns": self.columns, "ints": [
                all(isinstance(r[j], int) for r in self.rows) for j in range(len(self.columns))
            ]}
        return {"columns": self.columns, "rows": self.rows}

    @classmethod
    def restore(cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]) -> Table:
        if "rows" in meta:
            return cls(name, list(meta["columns"]), [list(r) for r in meta["rows"]])
        ints = meta.get("ints") or [False] * len(meta["columns"])
        rows = [
            [int(v) if ints[j] else float(v) for j, v in enumerate(row)]
            for row in arrays["rows"].tolist()
        ]
        return cls(name, list(meta["columns"]), rows)


@dataclass
class Result:
    """A method's answer: named artifacts, what it cost, and facts for the summary.

    ``views`` names the artifact that the result's ``png`` and ``overlay`` renderings draw
    (default: the first artifact). ``output`` is the model's output on the unperturbed input
    when the method computed it anyway (saves the runner a forward pass).
    """

    artifacts: list[Artifact]
    model_calls: int
    extras: dict[str, Any] = field(default_factory=dict)
    views: dict[str, str] = field(default_factory=dict)
    output: NDArray[np.float32] | None = None

    def __post_init__(self) -> None:
        names = [a.name for a in self.artifacts]
        if len(set(names)) != len(names):
            raise ValueError(f"artifact names repeat: {names}")

    def artifact(self, name: str) -> Artifact:
        for a in self.artifacts:
            if a.name == name:
                return a
        raise UnknownArtifact(
            f"The result has no artifact {name!r}; it has {[a.name for a in self.artifacts]}.",
            details={"artifact": name, "artifacts": [a.name for a in self.artifacts]},
        )

    @property
    def primary(self) -> Artifact:
        return self.artifacts[0]

    @property
    def values(self) -> NDArray[np.float32]:
        """The values of the first attribution (the ``attribution`` of the wire format)."""
        for a in self.artifacts:
            if isinstance(a, AttributionMap):
                return a.values
        raise UnknownArtifact("The result holds no attribution.")

    def view(self, fmt: str) -> str:
        return self.views.get(fmt, self.artifacts[0].name)


def pack(artifacts: list[Artifact], views: dict[str, str] | None = None) -> bytes:
    """Artifacts as one ``.npz`` (arrays as arrays, the rest as a JSON header; no pickle)."""
    header: dict[str, Any] = {"artifacts": [], "views": views or {}}
    arrays: dict[str, NDArray[Any]] = {}
    for i, a in enumerate(artifacts):
        names = []
        for key, arr in a.arrays().items():
            arrays[f"a{i}_{key}"] = arr
            names.append(key)
        header["artifacts"].append(
            {"name": a.name, "type": a.type, "meta": a.stored_meta(), "arrays": names}
        )
    buf = io.BytesIO()
    arrays["__header__"] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(buf, **arrays)  # type: ignore[arg-type]
    return buf.getvalue()


def unpack(data: bytes) -> tuple[list[Artifact], dict[str, str]]:
    """The artifacts and views :func:`pack` stored."""
    with np.load(io.BytesIO(data), allow_pickle=False) as z:
        header = json.loads(bytes(z["__header__"]).decode())
        out: list[Artifact] = []
        for i, entry in enumerate(header["artifacts"]):
            cls = ARTIFACT_TYPES[entry["type"]]
            arrays = {k: z[f"a{i}_{k}"] for k in entry["arrays"]}
            out.append(cls.restore(entry["name"], entry["meta"], arrays))
    return out, dict(header.get("views", {}))


def _load_types() -> None:
    """Import every module of :mod:`engine.artifact_types`: each registers its types on
    import, so any process that unpacks a result knows them (adding a type is adding its
    module)."""
    import importlib
    import pkgutil

    import engine.artifact_types as package

    for info in pkgutil.iter_modules(package.__path__, prefix=f"{package.__name__}."):
        importlib.import_module(info.name)


_load_types()
