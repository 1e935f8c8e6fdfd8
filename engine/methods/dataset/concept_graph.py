"""concept_graph (Summit, Hohman et al., IEEE VIS 2019): for one class, the channels its
images activate most in each layer and the strongest influences between channels of
consecutive layers, as a layered graph.

* Activation aggregation (Summit's ``A`` matrix): for each image of the class, each
  channel's max over positions (the activation cache's pooled ``max``); the image's
  ``top_channels`` channels by it are counted. A node's ``count`` is how many of the
  class's images have it among their top channels, ``share`` that over the class's image
  count, ``mean`` the class mean of its max. Nodes of a layer are ranked by ``rank_by``:
  the count (ties by the mean; Summit's), or the mean.
* Influence aggregation (Summit's ``I`` matrix, :mod:`engine.datasets.influence`): for
  each image, each channel ``j`` of the upper layer and each channel ``i`` of the lower
  one, the max over positions of ``i``'s partial convolution by ``W[j, i]``; per image
  and ``j`` the ``top_influences`` strongest ``i`` are counted over the class. An edge
  ``i → j`` between two kept nodes has ``count`` (that number), ``weight`` (count over
  the class's images) and ``influence`` (the mean partial-convolution max where counted);
  each upper node keeps its ``edges_per_node`` strongest.

Consecutive layers and the refusals: docs/CONCEPT_GRAPH.md. Each node carries its
max-activating patch among the class's images (cut at the layer's receptive field, as in
max_activating). Artifacts: ``graph`` (type ``graph``: JSON, SVG, PNG) and ``channels``
(a table of every channel's aggregation in every layer).

A job is split like any dataset analysis: a chunk [start, stop) fills the activation
cache's shards (the layers' pooled stats and the logits) and the influence shards that
begin there; the assembly reads both. Another class of the same dataset, or the same
layers again, runs no forward pass.
"""

from __future__ import annotations

from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import Field

from engine.artifact_types.graph import Graph
from engine.artifacts import Result, Table
from engine.datasets.activations import OUTPUT, LayerStats, Target, receptive_field
from engine.datasets.influence import ConvLink, InfluenceStore, aggregate, resolve_layers
from engine.datasets.store import DatasetReader
from engine.errors import InvalidInput, InvalidObjective, InvalidParams
from engine.methods.base import MethodSpec, Progress, ScaledProgress, no_progress
from engine.methods.dataset.common import (
    DatasetParams,
    DatasetPlan,
    DatasetPlanBuilder,
    cache_of,
    dataset_cost,
    reader_of,
    tile,
)
from engine.methods.dataset.dataset_predictions import _label_index
from engine.methods.dataset.max_activating import box
from engine.methods.perturbation import EvalStats
from engine.methods.registry import register
from engine.models.runtime import LoadedModel
from engine.objectives import ClassScore, Objective


class ConceptGraphParams(DatasetParams):
    layers: list[str] | None = Field(
        default=None, min_length=2, max_length=8,
        description="The layers of the graph, input side first, each pair consecutive "
        "(the upper one a convolution of the lower one; see docs/CONCEPT_GRAPH.md). "
        "Default: the last chain of up to 4 full convolutions' outputs.")
    nodes_per_layer: int = Field(default=6, ge=1, le=64,
                                 description="Channels kept per layer.")
    top_channels: int = Field(
        default=3, ge=1, le=256, description="Per image, its channels with the largest max "
        "activation that are counted for the class (activation aggregation).")
    top_influences: int = Field(
        default=3, ge=1, le=64, description="Per image and channel of the upper layer, the "
        "lower layer's channels of largest partial-convolution max that are counted "
        "(influence aggregation).")
    edges_per_node: int = Field(default=3, ge=0, le=64,
                                description="Strongest incoming edges kept per node.")
    rank_by: Literal["count", "mean"] = Field(
        default="count", description="How nodes are ranked: Summit's count of images "
        "having the channel among their top channels (ties by the mean), or the class "
        "mean of the channel's max activation.")
    images: Literal["label", "predicted"] = Field(
        default="label", description="The class's images: those labelled with it, or "
        "those the model predicts as it.")
    patch: int = Field(default=32, ge=8, le=128,
                       description="Pixels of each node's max-activating patch.")


def _links(model: LoadedModel, params: Any) -> list[ConvLink]:
    return resolve_layers(model, params.layers)


def _layers(links: list[ConvLink]) -> list[str]:
    return [links[0].lower, *[ln.upper for ln in links]]


def targets(model: LoadedModel, objective: Objective, params: Any) -> list[Target]:
    return [Target(OUTPUT), *[Target(name) for name in _layers(_links(model, params))]]


def check(params: ConceptGraphParams, model: LoadedModel) -> None:
    """At submit: the layers exist and each pair is related (else 422)."""
    if model.channels_last:
        raise InvalidParams(
            "concept_graph reads convolution inputs channel-first; this model's layout is "
            "NHWC. Register it as NCHW (its convolutions are) to analyse it.",
            details={"field": "layers", "layout": "NHWC"})
    _links(model, params)


def _members(model: LoadedModel, reader: DatasetReader, objective: ClassScore, params: Any
             ) -> NDArray[np.int64]:
    if params.images == "predicted":
        logits = cache_of(reader).values(model, reader, Target(OUTPUT)).reshape(len(reader), -1)
        return np.flatnonzero(np.argmax(logits, axis=1) == objective.index).astype(np.int64)
    truth = _label_index(model, reader)
    if not (truth >= 0).any():
        raise InvalidInput(
            f"Dataset {reader.name!r} has no labels that name the model's classes, so no "
            "image belongs to a class. Label it with the model's labels, or ask with "
            '"images": "predicted".',
            details={"dataset": reader.name, "classes": reader.classes[:50]})
    return np.flatnonzero(truth == objective.index).astype(np.int64)


def _rank(count: NDArray[np.int64], mean: NDArray[np.float64], by: str) -> NDArray[np.int64]:
    ch = np.arange(len(count))
    keys = (ch, -mean, -count) if by == "count" else (ch, -count, -mean)
    return np.lexsort(keys).astype(np.int64)


def _activation_aggregation(stats: LayerStats, members: NDArray[np.int64], k: int
                            ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    mx = np.asarray(stats.max[members], np.float64)  # (n, C)
    c = mx.shape[1]
    top = np.argsort(-mx, axis=1, kind="stable")[:, : min(k, c)]
    count = np.bincount(top.ravel(), minlength=c).astype(np.int64)
    return count, mx.mean(axis=0) if len(members) else np.zeros(c)


def _assemble(model: LoadedModel, reader: DatasetReader, objective: Objective, params: Any,
              passes: int, progress: Progress = no_progress) -> Result:
    if not isinstance(objective, ClassScore):  # pragma: no cover - the spec's objectives
        raise InvalidObjective("concept_graph explains a class.",
                               details={"kind": objective.kind})
    links = _links(model, params)
    layers = _layers(links)
    cache = cache_of(reader)
    members = _members(model, reader, objective, params)
    label = objective.label or (model.labels[objective.index]
                                if objective.index < len(model.labels) else str(objective.index))
    n = len(members)
    if n == 0:
        raise InvalidInput(
            f"No image of dataset {reader.name!r} is "
            f"{'labelled' if params.images == 'label' else 'predicted as'} class {label!r}; "
            "pick a class that has images (or the other `images` rule).",
            details={"dataset": reader.name, "class": objective.index, "images": params.images})
    stats = {name: cache.layer(model, reader, name) for name in layers}
    agg = {name: _activation_aggregation(stats[name], members, params.top_channels)
           for name in layers}
    kept = {name: _rank(*agg[name], params.rank_by)[: params.nodes_per_layer] for name in layers}

    store = InfluenceStore.beside(cache)
    ids = reader.ids()
    nodes: list[dict[str, Any]] = []
    edges: list[dict[str, Any]] = []
    patches: list[NDArray[np.uint8]] = []
    pictures: dict[int, Image.Image] = {}
    h, w = model.input_hw

    def picture(i: int) -> Image.Image:
        if i not in pictures:
            px = model.codec.decode(reader.read(i)).pixels
            pictures[i] = Image.fromarray(np.clip(px, 0, 255).astype(np.uint8), mode="RGB")
        return pictures[i]

    influences: dict[str, tuple[NDArray[np.int64], NDArray[np.float64]]] = {}
    for ln in links:
        index, value = store.load(model, reader, ln, params.top_influences)
        influences[ln.upper] = aggregate(index[members], value[members],
                                         int(ln.weight.shape[1]))
    rows: list[list[Any]] = []
    for li, name in enumerate(layers):
        count, mean = agg[name]
        st = stats[name]
        rf = receptive_field(model, name)
        lower = layers[li - 1] if li else None
        inf = influences.get(name)
        for c in range(len(count)):
            rows.append([name, c, int(count[c]), count[c] / n, float(mean[c])])
        for rank, c in enumerate(kept[name].tolist()):
            best = int(members[int(np.argmax(st.max[members, c]))])
            yx = st.position(best, c)
            b = box(yx, st.spatial, (h, w), rf)
            patches.append(tile(picture(best), b, params.patch))
            node: dict[str, Any] = {
                "id": f"{name}:{c}", "layer": name, "channel": c, "rank": rank + 1,
                "score": float(count[c] / n) if params.rank_by == "count" else float(mean[c]),
                "count": int(count[c]), "share": float(count[c] / n), "mean": float(mean[c]),
                "image": ids[best], "index": best, "position": [int(yx[0]), int(yx[1])],
                "box": [int(v) for v in b], "patch": len(patches) - 1, "inputs": [],
            }
            if inf is not None and lower is not None:
                counts, sums = inf
                order = np.lexsort((np.arange(counts.shape[1]), -sums[c], -counts[c]))
                node["inputs"] = [
                    {"channel": int(i), "count": int(counts[c, i]),
                     "influence": float(sums[c, i] / counts[c, i])}
                    for i in order[:3].tolist() if counts[c, i] > 0]
                below = kept[lower]
                cand = sorted((i for i in below.tolist() if counts[c, i] > 0),
                              key=lambda i: (-counts[c, i], -sums[c, i], i))
                for i in cand[: params.edges_per_node]:
                    edges.append({
                        "source": f"{lower}:{i}", "target": f"{name}:{c}",
                        "count": int(counts[c, i]), "weight": float(counts[c, i] / n),
                        "influence": float(sums[c, i] / counts[c, i]),
                    })
            nodes.append(node)
    graph = Graph("graph", layers, nodes, edges,
                  np.stack(patches).astype(np.uint8) if patches
                  else np.zeros((0, 1, 1, 3), np.uint8),
                  title=f"class {label} · {n} images of {reader.name}")
    logits = cache.values(model, reader, Target(OUTPUT)).reshape(len(reader), -1)
    return Result(
        artifacts=[graph, Table("channels", ["layer", "channel", "count", "share", "mean"],
                                rows)],
        model_calls=passes,
        extras={
            "dataset": reader.name, "dataset_version": reader.version,
            "class": objective.index, "label": label, "class_images": n,
            "images": len(reader), "layers": layers,
            "links": [{"lower": ln.lower, "upper": ln.upper, "conv": ln.conv,
                       "via": list(ln.via), "after": list(ln.after)} for ln in links],
            "nodes": len(nodes), "edges": len(edges), "forward_passes": passes,
        },
        views={"png": "graph"},
        output=logits[members[:1]],
    )


class ConceptGraphPlan(DatasetPlanBuilder):
    """The dataset plan, whose chunks also fill the influence shards of their range."""

    def evaluate(self, model: LoadedModel, image: Any, objective: Objective, params: Any,
                 plan: DatasetPlan, start: int, stop: int, progress: Progress,
                 stats: EvalStats | None = None) -> NDArray[np.float64]:
        passes = self._extract(model, reader_of(image), params, start, stop, progress)
        if stats is not None:
            stats.forward_passes += passes
        return np.zeros(stop - start, np.float64)

    def _extract(self, model: LoadedModel, reader: DatasetReader, params: Any, start: int,
                 stop: int | None, progress: Progress) -> int:
        cache = cache_of(reader)
        links = _links(model, params)
        passes = cache.ensure(model, reader, [Target(OUTPUT), *map(Target, _layers(links))],
                              start, stop, ScaledProgress(progress, 0.0, 0.5))
        store = InfluenceStore.beside(cache)
        passes += store.ensure(model, reader, links, params.top_influences, start, stop,
                               ScaledProgress(progress, 0.5, 0.5))
        return passes

    def run(self, model: LoadedModel, item: Any, objective: Objective, params: Any,
            progress: Progress) -> Result:
        reader = reader_of(item)
        passes = self._extract(model, reader, params, 0, None,
                               ScaledProgress(progress, 0.0, 0.95))
        return self.assemble_fn(model, reader, objective, params, passes,
                                ScaledProgress(progress, 0.95, 0.05))


PLAN = ConceptGraphPlan("concept_graph", targets, _assemble)


def concept_graph(model: LoadedModel, item: Any, objective: Objective,
                  params: ConceptGraphParams, progress: Progress) -> Result:
    return PLAN.run(model, item, objective, params, progress)


SPEC = register(
    MethodSpec(
        name="concept_graph",
        params_model=ConceptGraphParams,
        fn=concept_graph,
        description="Summit's attribution graph of a class over a dataset: the channels its "
        "images activate most in each layer (activation aggregation) and the strongest "
        "influences between channels of consecutive convolution layers (influence "
        "aggregation), each node with its max-activating patch: a graph (JSON, SVG, PNG).",
        kind="dataset",
        execution="job",
        inputs="dataset",
        objectives=("class",),
        check=check,
        cost=dataset_cost,
        plan=PLAN,
    )
)
