"""Artifact types of the "inside the network" methods (registered on import; imported at
the end of :mod:`engine.artifacts`, so every result store can unpack them):

* ``groups`` — `nmf_groups`' factorisation of a layer: one non-negative map per group,
  the group's colour and its attribution to the target, and the names of the image
  artifacts holding each group's feature visualisation.
* ``dictionary`` — `semantic_dictionary`: the top-n channels at each position of a layer
  with their activations, and the names of the channels' thumbnail artifacts.
* ``comparison`` — two image artifacts of the same result to be seen as before/after
  (DeepDream's original and dream), with the objective on each.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from engine.artifacts import Artifact, _floats, artifact_type


def hex_colour(rgb: NDArray[Any]) -> str:
    r, g, b = (int(v) for v in np.asarray(rgb).reshape(3))
    return f"#{r:02x}{g:02x}{b:02x}"


@artifact_type
@dataclass
class Groups(Artifact):
    """k non-negative maps (k, h, w) over a layer's positions, a colour and an attribution
    per group, and the artifacts showing each group (``thumbnails``, one name per group)."""

    name: str
    maps: NDArray[np.float32]
    colours: NDArray[np.uint8]
    attribution: NDArray[np.float64]
    thumbnails: list[str] = field(default_factory=list)
    layer: str = ""
    type: ClassVar[str] = "groups"

    @property
    def shape(self) -> list[int]:
        return [int(s) for s in self.maps.shape]

    @property
    def axes(self) -> list[str]:
        return ["group", "y", "x"]

    def meta(self) -> dict[str, Any]:
        return {
            "groups": int(self.maps.shape[0]),
            "layer": self.layer,
            "colours": [hex_colour(c) for c in self.colours],
            "attribution": [float(v) for v in self.attribution],
            "thumbnails": list(self.thumbnails),
        }

    def data(self) -> dict[str, Any]:
        return {**self.meta(), "maps": _floats(self.maps)}

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {
            "maps": np.asarray(self.maps, np.float32),
            "colours": np.asarray(self.colours, np.uint8),
            "attribution": np.asarray(self.attribution, np.float64),
        }

    def stored_meta(self) -> dict[str, Any]:
        return {"layer": self.layer, "thumbnails": list(self.thumbnails)}

    @classmethod
    def restore(
        cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]
    ) -> Groups:
        return cls(name, arrays["maps"], arrays["colours"], arrays["attribution"],
                   list(meta.get("thumbnails", [])), str(meta.get("layer", "")))


@artifact_type
@dataclass
class Dictionary(Artifact):
    """At each position (y, x) of a layer, its ``top_n`` channels by activation
    (``channels`` (h, w, n), largest first) and their activations (``values``); the
    thumbnail artifact of each channel that appears (``units`` and ``thumbnails``)."""

    name: str
    channels: NDArray[np.int32]
    values: NDArray[np.float32]
    units: list[int] = field(default_factory=list)
    thumbnails: list[str] = field(default_factory=list)
    layer: str = ""
    type: ClassVar[str] = "dictionary"

    @property
    def shape(self) -> list[int]:
        return [int(s) for s in self.channels.shape]

    @property
    def axes(self) -> list[str]:
        return ["y", "x", "rank"]

    def meta(self) -> dict[str, Any]:
        return {"layer": self.layer, "top_n": int(self.channels.shape[2]),
                "units": len(self.units)}

    def data(self) -> dict[str, Any]:
        return {
            **self.meta(),
            "channels": np.ascontiguousarray(self.channels, np.int32),
            "values": _floats(self.values),
            "thumbnails": {str(c): t for c, t in zip(self.units, self.thumbnails, strict=True)},
        }

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {
            "channels": np.asarray(self.channels, np.int32),
            "values": np.asarray(self.values, np.float32),
            "units": np.asarray(self.units, np.int32),
        }

    def stored_meta(self) -> dict[str, Any]:
        return {"layer": self.layer, "thumbnails": list(self.thumbnails)}

    @classmethod
    def restore(
        cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]
    ) -> Dictionary:
        return cls(name, arrays["channels"], arrays["values"],
                   [int(u) for u in arrays["units"]], list(meta.get("thumbnails", [])),
                   str(meta.get("layer", "")))


@artifact_type
@dataclass
class Comparison(Artifact):
    """Two image artifacts of the result, ``before`` and ``after``, and a value on each
    (the objective on the original and on the dream)."""

    name: str
    before: str
    after: str
    values: NDArray[np.float64]
    label: str = "objective"
    type: ClassVar[str] = "comparison"

    @property
    def shape(self) -> list[int]:
        return [2]

    @property
    def axes(self) -> list[str]:
        return ["side"]

    def meta(self) -> dict[str, Any]:
        return {
            "before": self.before,
            "after": self.after,
            "label": self.label,
            "before_value": float(self.values[0]),
            "after_value": float(self.values[1]),
        }

    def data(self) -> dict[str, Any]:
        return self.meta()

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"values": np.asarray(self.values, np.float64)}

    def stored_meta(self) -> dict[str, Any]:
        return {"before": self.before, "after": self.after, "label": self.label}

    @classmethod
    def restore(
        cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]
    ) -> Comparison:
        return cls(name, str(meta["before"]), str(meta["after"]), arrays["values"],
                   str(meta.get("label", "objective")))
