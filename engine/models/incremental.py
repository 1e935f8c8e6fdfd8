"""Incremental inference for local perturbations (Krypton's IVM: Nakandala, Kumar &
Papakonstantinou, "Incremental and Approximate Inference for Faster Occlusion-based Deep
CNN Explanations", SIGMOD 2019).

When an image differs from a reference only inside a box (an occlusion window), the first
layers of a CNN change only near the box. Lantern cuts the graph at a tensor ``T`` that
every path from the input to the output passes through (a block output, say) and whose
producers are all *local* ops (convolutions, pools, per-channel and element-wise ops):

* ``T0`` = the prefix on the reference image, computed once;
* per perturbed image, the prefix runs on a fixed-size crop around the box only, and the
  units of ``T`` the box can reach are pasted into a copy of ``T0``;
* the suffix runs on that ``T`` as usual.

Exactness. Each tensor of the prefix gets, per spatial axis, its stride ``J`` and how far
its units read to the left (``L``) and right (``R``) of ``t·J`` in input pixels (unions
over all paths: exact for convolutions with explicit pads). The crop starts at a multiple
of ``J_T`` and contains the whole receptive field of every unit pasted, or meets the
image border where the receptive field leaves the image (the crop's padding is then the
image's), so every pasted unit reads exactly the values it reads in the full pass. What
differs is only the order ONNX Runtime may sum in; tests check the scores against full
passes.

The cut is chosen per window size by an estimate (multiply-adds plus memory traffic per
node, the prefix scaled by the crop's share of the image), and not used when it would
save less than `MIN_SAVING` of it.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

__all__ = ["MIN_SAVING", "Cut", "IncrementalRunner", "Reference", "find_cut"]

#: Element-wise ops with one tensor operand (any constant extra operands must be scalars
#: or per-channel, see `_spatially_constant`).
_UNARY = frozenset(
    {
        "Relu",
        "Clip",
        "LeakyRelu",
        "Sigmoid",
        "HardSigmoid",
        "HardSwish",
        "Tanh",
        "Identity",
        "Elu",
        "Selu",
        "Softplus",
        "Neg",
        "Abs",
        "PRelu",
        "BatchNormalization",
        "Dropout",
    }
)
#: Element-wise ops of several same-geometry tensors (or per-channel constants).
_BINARY = frozenset({"Add", "Sub", "Mul", "Div", "Max", "Min", "Sum"})
_WINDOWED = frozenset({"Conv", "MaxPool", "AveragePool"})

#: The least share of the full pass's estimated cost a cut must save to be used.
MIN_SAVING = 0.15
#: Bytes-per-multiply-add weight of the memory term in the cost estimate.
_MEMORY_WEIGHT = 16.0


@dataclass(frozen=True)
class _Geometry:
    """Per spatial axis (h, w): stride J and the receptive field [t·J − L, t·J + R]."""

    j: tuple[int, int]
    lo: tuple[int, int]
    hi: tuple[int, int]


@dataclass(frozen=True)
class Cut:
    """Where to cut and how big the crop is, for one window size."""

    tensor: str
    stride: tuple[int, int]
    lo: tuple[int, int]
    hi: tuple[int, int]
    crop: tuple[int, int]  # (Hc, Wc) in input pixels
    grid: tuple[int, int]  # T's spatial size
    prefix_nodes: tuple[int, ...]  # indices into graph.node
    saving: float  # the estimated share of a full pass saved


def _attr(node: onnx.NodeProto, name: str) -> onnx.AttributeProto | None:
    found: onnx.AttributeProto | None = None
    for a in node.attribute:
        if a.name == name:
            found = a
    return found


def _int(node: onnx.NodeProto, name: str, default: int) -> int:
    a = _attr(node, name)
    return default if a is None else int(a.i)


def _ints(node: onnx.NodeProto, name: str, default: list[int]) -> list[int]:
    a = _attr(node, name)
    return list(default) if a is None else [int(v) for v in a.ints]


def _constants(graph: onnx.GraphProto) -> dict[str, NDArray[np.generic]]:
    values: dict[str, NDArray[np.generic]] = {
        t.name: numpy_helper.to_array(t) for t in graph.initializer
    }
    for node in graph.node:
        if node.op_type == "Constant":
            value = _attr(node, "value")
            if value is not None and value.HasField("t"):
                values[node.output[0]] = numpy_helper.to_array(value.t)
    return values


def _spatially_constant(value: NDArray[np.generic]) -> bool:
    """A constant operand that does not vary over H and W (scalar or per-channel)."""
    if value.size == 1:
        return True
    return value.ndim >= 3 and value.shape[-1] == 1 and value.shape[-2] == 1


def _window_geometry(
    node: onnx.NodeProto, g: _Geometry, weight: NDArray[np.generic] | None
) -> _Geometry | None:
    auto_pad = _attr(node, "auto_pad")
    if auto_pad is not None and auto_pad.s not in (b"NOTSET", b"VALID"):
        return None
    if _int(node, "ceil_mode", 0) != 0:
        return None
    k = _ints(node, "kernel_shape", [])
    if not k and weight is not None:
        k = [int(v) for v in weight.shape[2:]]
    if len(k) != 2:
        return None
    strides = _ints(node, "strides", [1, 1])
    dilations = _ints(node, "dilations", [1, 1])
    pads = _ints(node, "pads", [0, 0, 0, 0])
    if len(strides) != 2 or len(dilations) != 2 or len(pads) != 4:
        return None
    j: list[int] = []
    lo: list[int] = []
    hi: list[int] = []
    for axis in range(2):
        extent = (k[axis] - 1) * dilations[axis] + 1
        begin = pads[axis]
        j.append(strides[axis] * g.j[axis])
        lo.append(begin * g.j[axis] + g.lo[axis])
        hi.append((extent - 1 - begin) * g.j[axis] + g.hi[axis])
    return _Geometry((j[0], j[1]), (lo[0], lo[1]), (hi[0], hi[1]))


def _local_geometries(
    model: onnx.ModelProto, input_name: str, shapes: dict[str, tuple[int, ...]]
) -> tuple[dict[str, _Geometry], set[int]]:
    """Geometry of every tensor computed from the input by local ops only, and the indices
    of the nodes that compute them (``shapes``: `_spatial_shapes`)."""
    graph = model.graph
    consts = _constants(graph)
    geo: dict[str, _Geometry] = {input_name: _Geometry((1, 1), (0, 0), (0, 0))}
    local: set[int] = set()
    for index, node in enumerate(graph.node):
        if node.domain not in ("", "ai.onnx") or node.op_type == "Constant":
            continue
        tensors = [name for name in node.input if name and name not in consts]
        if not tensors or any(name not in geo for name in tensors):
            continue
        out: _Geometry | None = None
        if node.op_type in _WINDOWED:
            if len(tensors) != 1 or tensors[0] != node.input[0]:
                continue
            weight = consts.get(node.input[1]) if len(node.input) > 1 else None
            out = _window_geometry(node, geo[tensors[0]], weight)
        elif node.op_type in _UNARY or node.op_type in _BINARY or node.op_type == "Concat":
            if node.op_type == "Concat" and _int(node, "axis", 0) not in (1, -3):
                continue
            if node.op_type in _UNARY and (len(tensors) != 1 or tensors[0] != node.input[0]):
                continue
            extra = [consts[n] for n in node.input if n and n in consts]
            # BatchNormalization's operands are per-channel by definition
            if node.op_type != "BatchNormalization" and not all(
                _spatially_constant(v) for v in extra
            ):
                continue
            gs = [geo[name] for name in tensors]
            if any(g.j != gs[0].j for g in gs):
                continue
            # operands of different (or unknown) H or W broadcast: a 1×W operand, say, puts
            # what every row reads into each unit, which no [t·J − L, t·J + R] describes
            grids = {shapes.get(name, (0, 0))[-2:] for name in tensors}
            if len(tensors) > 1 and (len(grids) > 1 or 0 in next(iter(grids))):
                continue
            out = _Geometry(
                gs[0].j,
                (max(g.lo[0] for g in gs), max(g.lo[1] for g in gs)),
                (max(g.hi[0] for g in gs), max(g.hi[1] for g in gs)),
            )
        if out is None:
            continue
        local.add(index)
        for name in node.output[:1]:
            geo[name] = out
    return geo, local


def _ancestors(graph: onnx.GraphProto) -> list[set[int]]:
    """For each node, the indices of the nodes it depends on (itself included; Constant
    nodes left out: each part of a cut gets the constants it reads)."""
    producer: dict[str, int] = {}
    for index, node in enumerate(graph.node):
        if node.op_type == "Constant":
            continue
        for name in node.output:
            producer[name] = index
    anc: list[set[int]] = []
    for index, node in enumerate(graph.node):
        mine = {index}
        for name in node.input:
            p = producer.get(name)
            if p is not None:
                mine |= anc[p]
        anc.append(mine)
    return anc


def _spatial_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Inferred shapes, 0 for a dimension not known."""
    inferred = onnx.shape_inference.infer_shapes(model)
    out: dict[str, tuple[int, ...]] = {}
    for vi in [*inferred.graph.value_info, *inferred.graph.output, *inferred.graph.input]:
        dims = vi.type.tensor_type.shape.dim
        out[vi.name] = tuple(d.dim_value if d.HasField("dim_value") else 0 for d in dims)
    return out


def _node_cost(
    node: onnx.NodeProto,
    shapes: dict[str, tuple[int, ...]],
    consts: dict[str, NDArray[np.generic]],
) -> float:
    """Multiply-adds plus weighted output elements, per image."""
    shape = shapes.get(node.output[0]) if node.output else None
    elements = float(np.prod([max(d, 1) for d in shape[1:]])) if shape else 0.0
    macs = 0.0
    if node.op_type == "Conv" and len(node.input) > 1 and node.input[1] in consts:
        w = consts[node.input[1]]
        macs = elements * float(np.prod(w.shape[1:]))
    elif node.op_type in ("Gemm", "MatMul") and len(node.input) > 1 and node.input[1] in consts:
        macs = float(consts[node.input[1]].size)
    return macs + _MEMORY_WEIGHT * elements


def _crop_length(size: int, window: int, j: int, lo: int, hi: int) -> int:
    """The crop length (a multiple of ``j`` short of ``size``) that holds, for every window
    position, the receptive fields of all units of ``T`` the window reaches. Computed for
    windows away from the borders: at a border the crop is moved to meet it and needs
    less."""
    need = 0
    for y in range(j):  # the window's offset modulo the stride is all that matters
        t0 = math.ceil((y - hi) / j)
        t1 = (y + window - 1 + lo) // j
        start = j * math.floor((t0 * j - lo) / j)
        need = max(need, t1 * j + hi + 1 - start)
    need = min(size, need)
    return size - j * ((size - need) // j)


def find_cut(
    model: onnx.ModelProto,
    input_name: str,
    output_name: str,
    input_hw: tuple[int, int],
    window_hw: tuple[int, int],
    tensor: str | None = None,
    min_saving: float = MIN_SAVING,
) -> Cut | None:
    """The cheapest cut for windows of ``window_hw`` (or the cut at ``tensor``), or None
    (no local prefix that all paths go through, or one that saves less than
    ``min_saving``)."""
    graph = model.graph
    shapes = _spatial_shapes(model)
    geo, local = _local_geometries(model, input_name, shapes)
    if not local:
        return None
    consts = _constants(graph)
    anc = _ancestors(graph)
    costs = [_node_cost(node, shapes, consts) for node in graph.node]
    total = sum(costs)
    if total <= 0:
        return None
    consumers: dict[str, list[int]] = {}
    for index, node in enumerate(graph.node):
        for name in node.input:
            consumers.setdefault(name, []).append(index)
    outputs = {o.name for o in graph.output}
    h, w = input_hw
    best: Cut | None = None
    for index in sorted(local):
        node = graph.node[index]
        name = node.output[0]
        if tensor is not None and name != tensor:
            continue
        g = geo[name]
        shape = shapes.get(name)
        if shape is None or len(shape) != 4 or 0 in shape[1:] or output_name == name:
            continue  # (a T of unknown size, as where H and W are dynamic, is no cut)
        prefix = anc[index]
        if not prefix <= local:
            continue
        # a cut: nothing outside the prefix reads a prefix tensor other than T (or the input)
        prefix_tensors = {o for i in prefix for o in graph.node[i].output} | {input_name}
        inner = prefix_tensors - {name}
        ok = all(reader in prefix for t in inner for reader in consumers.get(t, []))
        if not ok or inner & outputs:
            continue
        grid = (int(shape[2]), int(shape[3]))
        if grid[0] * g.j[0] < h - g.j[0] or grid[1] * g.j[1] < w - g.j[1]:
            continue  # T does not tile the image at its stride (odd padding): skip
        crop = (
            _crop_length(h, window_hw[0], g.j[0], g.lo[0], g.hi[0]),
            _crop_length(w, window_hw[1], g.j[1], g.lo[1], g.hi[1]),
        )
        share = crop[0] * crop[1] / (h * w)
        prefix_cost = sum(costs[i] for i in prefix)
        saving = prefix_cost * (1.0 - share) / total
        if saving >= min_saving and (best is None or saving > best.saving):
            best = Cut(name, g.j, g.lo, g.hi, crop, grid, tuple(sorted(prefix)), saving)
    return best


def _submodel(
    model: onnx.ModelProto,
    nodes: list[onnx.NodeProto],
    input_name: str,
    input_dims: list[int | str],
    output: str,
) -> onnx.ModelProto:
    graph = model.graph
    used = {name for node in nodes for name in node.input}
    inits = [t for t in graph.initializer if t.name in used]
    elem = TensorProto.FLOAT
    for vi in [*graph.input, *graph.value_info, *graph.output]:
        if vi.name == input_name:
            elem = vi.type.tensor_type.elem_type
    sub = helper.make_graph(
        nodes,
        f"{graph.name}-part",
        [helper.make_tensor_value_info(input_name, elem, input_dims)],
        [helper.make_tensor_value_info(output, elem, None)],
        initializer=inits,
    )
    out = helper.make_model(sub, opset_imports=list(model.opset_import))
    out.ir_version = model.ir_version
    return out


class IncrementalRunner:
    """Scores of images that differ from a reference only inside boxes (see module doc)."""

    def __init__(
        self,
        model: onnx.ModelProto,
        cut: Cut,
        input_name: str,
        output_name: str,
        input_hw: tuple[int, int],
        threads: int = 0,
    ) -> None:
        """``threads``: ONNX Runtime intra-op threads of the suffix (0 = ORT's default). The
        prefix sessions run on the calling thread alone, so that the suffix's pool threads,
        spinning after each batch, do not fight them for the cores (two multi-threaded
        sessions taking turns ran 2x slower; no spinning at all cost the suffix ~10%; a
        two-thread reference pass per chunk of a split job cost ~35 ms in spinning)."""
        self.cut = cut
        self.input_name = input_name
        self.output_name = output_name
        self.input_hw = input_hw
        graph = model.graph
        in_prefix = set(cut.prefix_nodes)
        prefix = _with_constants(graph, [graph.node[i] for i in cut.prefix_nodes])
        suffix = _with_constants(
            graph,
            [n for i, n in enumerate(graph.node) if i not in in_prefix and n.op_type != "Constant"],
        )
        channels = _channels(model, input_name)
        t_channels = _spatial_shapes(model)[cut.tensor][1]
        providers = ["CPUExecutionProvider"]
        options = _options(threads)
        self._full = ort.InferenceSession(  # once per evaluation: single-threaded too
            _submodel(
                model, prefix, input_name, ["n", channels, *input_hw], cut.tensor
            ).SerializeToString(),
            _options(1),
            providers=providers,
        )
        self._crop = ort.InferenceSession(
            _submodel(
                model, prefix, input_name, ["n", channels, *cut.crop], cut.tensor
            ).SerializeToString(),
            _options(1),
            providers=providers,
        )
        self._suffix = ort.InferenceSession(
            _submodel(
                model, suffix, cut.tensor, ["n", t_channels, *cut.grid], output_name
            ).SerializeToString(),
            options,
            providers=providers,
        )

    def reference(self, x0: NDArray[np.float32]) -> Reference:
        """``T`` of the reference image (1, C, H, W) in model space, for `scores`."""
        out = self._full.run([self.cut.tensor], {self.input_name: x0})[0]
        return Reference(np.asarray(out, dtype=np.float32))

    def origins(self, boxes: NDArray[np.integer]) -> NDArray[np.int64]:
        """(n, 2) crop origins (y, x) for boxes (n, 4) as (y0, x0, y1, x1), end exclusive."""
        out = np.empty((boxes.shape[0], 2), dtype=np.int64)
        for axis in range(2):
            j, lo, hi = self.cut.stride[axis], self.cut.lo[axis], self.cut.hi[axis]
            size, crop = self.input_hw[axis], self.cut.crop[axis]
            t0 = np.maximum(0, -((hi - boxes[:, axis]) // j))  # ceil((y0 − hi) / j)
            start = j * ((t0 * j - lo) // j)
            out[:, axis] = np.clip(start, 0, size - crop)
        return out

    def units(self, boxes: NDArray[np.integer]) -> NDArray[np.int64]:
        """(n, 4) ranges [t0, t1) of ``T``'s rows and columns each box can change."""
        out = np.empty((boxes.shape[0], 4), dtype=np.int64)
        for axis in range(2):
            j, lo, hi = self.cut.stride[axis], self.cut.lo[axis], self.cut.hi[axis]
            grid = self.cut.grid[axis]
            out[:, axis] = np.maximum(0, -((hi - boxes[:, axis]) // j))
            out[:, axis + 2] = np.minimum(grid, (boxes[:, axis + 2] - 1 + lo) // j + 1)
        return out

    def scores(
        self,
        ref: Reference,
        crops: NDArray[np.float32],
        boxes: NDArray[np.integer],
        origins: NDArray[np.int64],
    ) -> NDArray[np.float32]:
        """Outputs (n, ...) for the images whose crops at ``origins`` are ``crops``."""
        n = crops.shape[0]
        tc = self._crop.run([self.cut.tensor], {self.input_name: crops})[0]
        t = ref.batch(n)
        units = self.units(boxes)
        jy, jx = self.cut.stride
        for i in range(n):
            a0, b0, a1, b1 = (int(v) for v in units[i])
            oy, ox = int(origins[i, 0]) // jy, int(origins[i, 1]) // jx
            t[i, :, a0:a1, b0:b1] = tc[i, :, a0 - oy : a1 - oy, b0 - ox : b1 - ox]
            ref.dirty.append((i, a0, b0, a1, b1))
        out = self._suffix.run([self.output_name], {self.cut.tensor: t})[0]
        return np.asarray(out, dtype=np.float32)


class Reference:
    """``T`` of one reference image and a batch of copies of it that `scores` patches in
    place: only the patched units are restored between batches, not whole copies of ``T``
    (1.8 MB per image at EfficientNet-Lite0's cut). One per evaluation (not thread-safe)."""

    def __init__(self, t0: NDArray[np.float32]) -> None:
        self.t0 = t0
        self.dirty: list[tuple[int, int, int, int, int]] = []
        self._batch: NDArray[np.float32] | None = None

    def batch(self, n: int) -> NDArray[np.float32]:
        """``n`` copies of ``T`` (a view of the first rows of the buffer)."""
        if self._batch is None or self._batch.shape[0] < n:
            self._batch = np.ascontiguousarray(np.repeat(self.t0, n, axis=0))
            self.dirty = []
        for i, a0, b0, a1, b1 in self.dirty:
            self._batch[i, :, a0:a1, b0:b1] = self.t0[0, :, a0:a1, b0:b1]
        self.dirty = []
        return self._batch[:n]


def _options(threads: int) -> ort.SessionOptions:
    so = ort.SessionOptions()
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    if threads:
        so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    if threads == 1:
        so.add_session_config_entry("session.intra_op.allow_spinning", "0")
    return so


def _with_constants(graph: onnx.GraphProto, nodes: list[onnx.NodeProto]) -> list[onnx.NodeProto]:
    """``nodes`` preceded by the Constant nodes they read."""
    read = {name for node in nodes for name in node.input}
    return [n for n in graph.node if n.op_type == "Constant" and n.output[0] in read] + nodes


def _channels(model: onnx.ModelProto, input_name: str) -> int:
    for vi in model.graph.input:
        if vi.name == input_name:
            dims = vi.type.tensor_type.shape.dim
            if len(dims) == 4 and dims[1].HasField("dim_value"):
                return int(dims[1].dim_value)
    raise ValueError(f"input {input_name!r} is not (N, C, H, W) with a known C")
