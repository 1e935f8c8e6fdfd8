"""The ``graph`` artifact and its renderings: a hand-made three-layer graph stored and
restored, its JSON (patches as PNG data URIs, the shared layout), its SVG (one group per
node with its patch, one curve per edge from the lower node's right side to the upper
node's left side, wider for a heavier edge) and its PNG (the same layout at twice the
scale: the patches' colours inside the boxes, the heavy edge drawn in blue)."""

from __future__ import annotations

import base64
import io
import json
import xml.etree.ElementTree as ET

import numpy as np
import pytest
from PIL import Image

from engine.artifact_types.graph import Graph
from engine.artifacts import pack, unpack
from engine.render.graph import PNG_SCALE, edge_width
from engine.render.registry import formats_of, render

SVG = "{http://www.w3.org/2000/svg}"
COLOURS = [(220, 30, 30), (30, 200, 40), (240, 200, 0), (120, 0, 200)]


def sample() -> Graph:
    patches = np.stack([np.full((16, 16, 3), c, np.uint8) for c in COLOURS])
    nodes = [
        {"id": "l1:4", "layer": "l1", "channel": 4, "score": 0.9, "patch": 0},
        {"id": "l1:1", "layer": "l1", "channel": 1, "score": 0.5, "patch": 1},
        {"id": "l2:0", "layer": "l2", "channel": 0, "score": 0.7, "patch": 2},
        {"id": "l3:7", "layer": "l3", "channel": 7, "score": 0.6, "patch": 3},
        {"id": "l3:2", "layer": "l3", "channel": 2, "score": 0.1, "patch": None},
    ]
    edges = [
        {"source": "l1:4", "target": "l2:0", "weight": 1.0, "count": 10},
        {"source": "l1:1", "target": "l2:0", "weight": 0.1, "count": 1},
        {"source": "l2:0", "target": "l3:7", "weight": 0.5, "count": 5},
    ]
    return Graph("graph", ["l1", "l2", "l3"], nodes, edges, patches, title="class 3")


def test_stored_and_restored_with_its_json() -> None:
    g = sample()
    (back,), _ = unpack(pack([g]))
    assert isinstance(back, Graph)
    assert (back.layers, back.nodes, back.edges, back.title) == (g.layers, g.nodes, g.edges,
                                                                   g.title)
    np.testing.assert_array_equal(back.patches, g.patches)
    body = json.loads(render(back, "json"))
    assert body["type"] == "graph" and body["shape"] == [5, 3]
    assert body["meta"] == {"layers": ["l1", "l2", "l3"], "nodes": 5, "edges": 3,
                            "title": "class 3"}
    nodes = body["data"]["nodes"]
    assert nodes[4]["patch"] is None
    uri = nodes[2]["patch"]
    assert uri.startswith("data:image/png;base64,")
    pic = np.asarray(Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1]))))
    assert pic.shape == (16, 16, 3) and tuple(pic[5, 5]) == COLOURS[2]
    lay = body["data"]["layout"]
    pos = lay["positions"]
    # layers as columns from the input side; nodes of a layer down by their order
    assert pos["l1:4"]["x"] == pos["l1:1"]["x"] < pos["l2:0"]["x"] < pos["l3:7"]["x"]
    assert pos["l1:4"]["y"] < pos["l1:1"]["y"] and pos["l3:7"]["y"] < pos["l3:2"]["y"]
    assert [c["layer"] for c in lay["columns"]] == ["l1", "l2", "l3"]
    edges = np.load(io.BytesIO(render(back, "npy")))
    np.testing.assert_array_equal(edges, [[0, 2, 1.0], [1, 2, 0.1], [2, 3, 0.5]])
    assert formats_of("graph") == ["json", "npy", "svg", "png"]


def test_svg_draws_nodes_and_weighted_edges() -> None:
    g = sample()
    root = ET.fromstring(render(g, "svg"))
    lay = g.layout()
    assert root.get("width") == f"{lay['width']:.0f}"
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert {"l1", "l2", "l3"} <= set(texts)
    assert "c7 · 0.60" in texts
    groups = [e for e in root.iter(f"{SVG}g") if e.get("class") == "node"]
    assert [e.get("data-id") for e in groups] == [n["id"] for n in g.nodes]
    images = [e for e in root.iter(f"{SVG}image")]
    assert len(images) == 4 and all(i.get("href", "").startswith("data:image/png")
                                     for i in images)
    paths = {(p.get("data-source"), p.get("data-target")): p for p in root.iter(f"{SVG}path")}
    assert set(paths) == {("l1:4", "l2:0"), ("l1:1", "l2:0"), ("l2:0", "l3:7")}
    widths = {k: float(p.get("stroke-width", "0")) for k, p in paths.items()}
    assert widths[("l1:4", "l2:0")] == pytest.approx(edge_width(1.0))
    assert widths[("l1:4", "l2:0")] > widths[("l2:0", "l3:7")] > widths[("l1:1", "l2:0")]
    d = paths[("l1:4", "l2:0")].get("d", "")
    a, b = lay["positions"]["l1:4"], lay["positions"]["l2:0"]
    assert d.startswith(f"M{a['x'] + a['size']:.1f},{a['y'] + a['size'] / 2:.1f}")
    assert d.endswith(f"{b['x']:.1f},{b['y'] + b['size'] / 2:.1f}")


def test_png_is_the_same_layout() -> None:
    g = sample()
    img = Image.open(io.BytesIO(render(g, "png")))
    lay = g.layout()
    k = PNG_SCALE
    assert img.size == (int(lay["width"] * k), int(lay["height"] * k))
    px = np.asarray(img.convert("RGB"))
    for node in g.nodes:
        p = lay["positions"][node["id"]]
        cx, cy = int((p["x"] + p["size"] / 2) * k), int((p["y"] + p["size"] / 2) * k)
        if node["patch"] is None:
            assert tuple(px[cy, cx]) == (255, 255, 255)
        else:
            assert tuple(px[cy, cx]) == COLOURS[node["patch"]]
    # the heavy edge's middle is blue; the background white
    a, b = lay["positions"]["l1:4"], lay["positions"]["l2:0"]
    mx = (a["x"] + a["size"] + b["x"]) / 2
    my = (a["y"] + b["y"] + a["size"]) / 2
    r, gg, bb = (int(v) for v in px[int(my * k), int(mx * k)])
    assert bb > 150 and r < 150, (r, gg, bb)
    assert tuple(px[2, 2]) == (255, 255, 255)


def test_an_empty_graph_renders() -> None:
    g = Graph("graph", ["a", "b"], [], [])
    assert b"<svg" in render(g, "svg")
    assert render(g, "png")[:4] == b"\x89PNG"
    assert json.loads(render(g, "json"))["data"]["nodes"] == []
