"""The ``graph`` artifact: a layered graph of units (concept_graph's attribution graph).

Nodes are units of a network — a ``layer`` and a ``channel`` — with a ``score`` (what
ranks them; also ``count`` and ``mean`` where the method has them) and, where there is
one, a small picture: the unit's max-activating patch (``patches[node["patch"]]``, an
(n, t, t, 3) uint8 array; in the JSON a ``data:image/png`` URI). Edges join a node of one
layer to a node of the next (``source`` on the input side, ``target`` on the output side)
with a ``weight`` in [0, 1] and the method's own numbers (``count``, ``influence``).

The layout (layers as columns from the input side, nodes by score from the top) is
computed here, once, so the SVG, the PNG and the viewer draw the same picture.
"""

from __future__ import annotations

import base64
import io
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
from numpy.typing import NDArray

from engine.artifacts import Artifact, artifact_type

#: Layout constants (pixels): node box, gaps, margins, header with the layer names.
NODE = 48
COLUMN_GAP = 150
ROW_GAP = 22
MARGIN = 24
HEADER = 34
LABEL = 14


def png_data_uri(pixels: NDArray[np.uint8]) -> str:
    from PIL import Image

    buf = io.BytesIO()
    Image.fromarray(np.asarray(pixels, np.uint8), mode="RGB").save(buf, format="PNG")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


@artifact_type
@dataclass
class Graph(Artifact):
    """``layers`` in order (input side first); ``nodes`` (dicts with at least ``id``,
    ``layer``, ``channel``, ``score``; ``patch``: index into ``patches`` or None);
    ``edges`` (dicts with ``source``, ``target`` node ids and ``weight``)."""

    name: str
    layers: list[str]
    nodes: list[dict[str, Any]]
    edges: list[dict[str, Any]]
    patches: NDArray[np.uint8] = field(
        default_factory=lambda: np.zeros((0, 1, 1, 3), np.uint8))
    title: str = ""
    type: ClassVar[str] = "graph"

    @property
    def shape(self) -> list[int]:
        return [len(self.nodes), len(self.edges)]

    @property
    def axes(self) -> list[str]:
        return ["node", "edge"]

    def meta(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "nodes": len(self.nodes),
                "edges": len(self.edges), "title": self.title}

    def layout(self) -> dict[str, Any]:
        """Positions: per node id its box's top-left (x, y) and size; the canvas size."""
        column = {name: i for i, name in enumerate(self.layers)}
        rows: dict[str, int] = {}
        pos: dict[str, dict[str, float]] = {}
        for node in self.nodes:  # nodes come by layer, best first
            r = rows.get(node["layer"], 0)
            rows[node["layer"]] = r + 1
            pos[str(node["id"])] = {
                "x": float(MARGIN + column.get(node["layer"], 0) * (NODE + COLUMN_GAP)),
                "y": float(MARGIN + HEADER + r * (NODE + LABEL + ROW_GAP)),
                "size": float(NODE),
            }
        most = max(rows.values(), default=1)
        width = 2 * MARGIN + max(1, len(self.layers)) * NODE + max(0, len(self.layers) - 1
                                                                  ) * COLUMN_GAP
        height = 2 * MARGIN + HEADER + most * (NODE + LABEL + ROW_GAP)
        columns = [{"layer": name, "x": float(MARGIN + i * (NODE + COLUMN_GAP) + NODE / 2)}
                   for i, name in enumerate(self.layers)]
        return {"width": float(width), "height": float(height), "node_size": float(NODE),
                "positions": pos, "columns": columns}

    def data(self) -> dict[str, Any]:
        uris = [png_data_uri(p) for p in self.patches] if len(self.patches) else []
        nodes = []
        for node in self.nodes:
            k = node.get("patch")
            nodes.append({**node, "patch": uris[k] if isinstance(k, int) and k < len(uris)
                          else None})
        return {"title": self.title, "layers": list(self.layers), "nodes": nodes,
                "edges": self.edges, "layout": self.layout()}

    def edge_array(self) -> NDArray[np.float64]:
        """(E, 3): source node index, target node index, weight."""
        index = {str(n["id"]): i for i, n in enumerate(self.nodes)}
        rows = [[index[str(e["source"])], index[str(e["target"])], float(e["weight"])]
                for e in self.edges]
        return np.asarray(rows, np.float64).reshape(len(rows), 3)

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {"edges": self.edge_array(), "patches": np.asarray(self.patches, np.uint8)}

    def stored_meta(self) -> dict[str, Any]:
        return {"layers": list(self.layers), "nodes": self.nodes, "edges": self.edges,
                "title": self.title}

    @classmethod
    def restore(cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]
                ) -> Graph:
        return cls(name, list(meta["layers"]), [dict(n) for n in meta["nodes"]],
                   [dict(e) for e in meta["edges"]], arrays["patches"],
                   str(meta.get("title", "")))
