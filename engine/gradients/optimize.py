"""Optimisation passes over a VJP graph emitted by onnx-ad.

onnx-ad favours generality: it emits the adjoint of every operand it can (Clip bounds, fc
weights, BatchNorm scales -- nothing reads them here), carries a trailing seed axis through
every tensor and folds it into the batch around each convolution, and writes masks as
``Where(mask, g, 0)``. With one seed direction and static shapes most of that is waste.

Passes, each keeping results equal to the raw graph (tests check 1e-5):

* `prune_dead`: remove every node no graph output reaches, and unread initializers.
* `fold_constants`: evaluate whatever depends on initializers only.
* `simplify_reshapes`: with static shapes, a Transpose that only moves size-1 axes, an
  Unsqueeze, Squeeze or Flatten is a Reshape; chained Reshapes collapse; a Reshape, Expand
  or Identity that changes nothing disappears. This removes the seed axis bookkeeping.
* `simplify_masks`: the Clip derivative mask ``Not(x < lo) & Not(x > hi)`` becomes the
  exact ``Equal(x, Clip(x))``; and ``Where(m, g, 0)`` becomes ``Mul(g, Cast(m))`` (ORT's
  Where is ~4x slower than Cast+Mul). Opt-in, `MASK_FROM_OUTPUT`: ``lo < Clip(x) < hi``,
  which reads only the Clip's output so ORT keeps the forward Conv+Clip fused (~5%
  faster) but differs where x sits exactly on a bound -- which does happen in
  EfficientNet at batch 16 (a pre-activation of exactly 0.0), so it is off by default.
  `masks_as_conv` (opt-in, `MASK_AS_CONV`, on top of it) builds that mask from two
  per-channel 1x1 Convs with a fused Clip so the backward chain stays in NCHWc; it removes
  the layout reorders but measured no faster.
* `conv_clip_masks` (default, `EXACT_CONV_MASKS`): the exact ``Equal(x, Clip(x, 0, hi))``
  mask of a 4-D activation as depthwise 1x1 Convs with fused LeakyRelu/Clip, and the
  forward Clip fused with a 1x1 identity Conv, so that ReLU6 forward, mask and backward
  Mul all stay in ORT's NCHWc layout (no reorders). Bounds count as inside, as raw.
  EfficientNet-Lite0, batch 1, 1 thread: ~3.25x -> ~3.05x the forward time (masks alone).
* `rewrite_conv_transpose`: a stride-1 ConvTranspose with a constant weight (all the 1x1
  and depthwise adjoints) becomes the equivalent Conv (flipped, transposed weight;
  complementary pads), which ORT runs much faster and in its NCHWc layout. A strided
  depthwise one (`ZERO_INSERTION`, default "conv_transpose") becomes zero insertion by a
  1x1 stride-s depthwise ConvTranspose of ones (ORT's ConvTranspose loops over groups,
  single-threaded; with a 1x1 kernel it only scatters) followed by a stride-1 depthwise
  Conv in NCHWc: EfficientNet-Lite0's four cost ~0.8 ms + ~0.6 ms instead of ~3.4 ms
  (batch 1, 1 thread). The other zero-insertion forms (Pad, DepthToSpace) and polyphase
  measured slower than ORT's own strided ConvTranspose.
* `sink_reshapes`: Reshapes/Expands move below elementwise ops until pairs cancel; no-op
  ReduceSum/Sum disappear. What is left of the seed axis is a handful of Reshapes.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper

from ._fold import fold_constants as _fold_constants
from ._graph import (
    Namer,
    all_names,
    attr_int,
    attr_ints,
    constants,
    consumers,
    copy_model,
    get_attr,
    infer,
    make_initializer,
    prune,
    replace_initializers,
    replace_nodes,
    static_shapes,
)

Pass = Callable[[onnx.ModelProto], onnx.ModelProto]


def prune_dead(model: onnx.ModelProto) -> onnx.ModelProto:
    """Dead-node and dead-initializer removal."""
    return prune(model)


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold every node whose operands are all constants (small results only)."""
    # Weight-sized results stay nodes: ORT folds them at session creation anyway, and
    # storing them would double the size of the cached model file.
    return prune(_fold_constants(model, max_elements=FOLD_MAX_ELEMENTS, rounds=4))


#: Largest folded result `fold_constants` stores as an initializer.
FOLD_MAX_ELEMENTS = 1 << 16


class _Rewriter:
    """A mutable node list over a model with static shapes and known constants."""

    def __init__(self, model: onnx.ModelProto) -> None:
        self.model = infer(model)
        graph = self.model.graph
        self.shapes = static_shapes(self.model)
        self.types = {v.name: v.type.tensor_type.elem_type
                      for v in list(graph.input) + list(graph.output) + list(graph.value_info)}
        for tensor in graph.initializer:
            self.types[tensor.name] = tensor.data_type
        self.values = constants(graph)
        self.initializers = {t.name for t in graph.initializer}
        self.namer = Namer(all_names(graph) | {n.name for n in graph.node if n.name})
        self.graph_outputs = {v.name for v in graph.output}
        self.nodes: list[onnx.NodeProto] = list(graph.node)
        self.producers = {o: n for n in self.nodes for o in n.output if o}
        self.clips = {
            (n.input[0], n.input[1], n.input[2]): n.output[0]
            for n in self.nodes
            if n.op_type == "Clip" and len(n.input) == 3 and all(n.input)
        }
        self.new_inits: list[onnx.TensorProto] = []
        self.alias: dict[str, str] = {}
        self.changed = False
        self._const_cache: dict[tuple[str, tuple[int, ...], bytes], str] = {}

    def constant(self, array: np.ndarray, stem: str = "const") -> str:
        array = np.ascontiguousarray(array)
        key = (str(array.dtype), tuple(array.shape), array.tobytes())
        if key not in self._const_cache:
            name = self.namer(stem)
            self.new_inits.append(make_initializer(array, name))
            self.values[name] = array
            self._const_cache[key] = name
        return self._const_cache[key]

    def ints(self, values: Sequence[int], stem: str = "shape") -> str:
        return self.constant(np.array(list(values), dtype=np.int64), stem)

    def node(self, op_type: str, inputs: Sequence[str], outputs: Sequence[str],
             **attrs: Any) -> onnx.NodeProto:
        return helper.make_node(op_type, list(inputs), list(outputs),
                                name=self.namer(f"opt_{op_type}"), **attrs)

    def fresh(self, stem: str) -> str:
        return self.namer(stem)

    def fresh_reshape(self, source: str, shape: Sequence[int],
                      nodes: list[onnx.NodeProto]) -> str:
        out = self.fresh(source + "_reshaped")
        nodes.append(self.node("Reshape", [source, self.ints(shape)], [out]))
        return out

    def shape(self, name: str) -> tuple[int, ...] | None:
        return self.shapes.get(name)

    def make_alias(self, node: onnx.NodeProto, source: str) -> bool:
        """Drop `node`, whose single output equals `source`; False if it must stay."""
        out = node.output[0]
        if out in self.graph_outputs:
            return False
        self.alias[out] = source
        self.changed = True
        return True

    def finish(self) -> onnx.ModelProto:
        def resolve(name: str) -> str:
            while name in self.alias:
                name = self.alias[name]
            return name

        for node in self.nodes:
            for i, name in enumerate(node.input):
                if name in self.alias:
                    node.input[i] = resolve(name)
        result = copy_model(self.model)
        replace_nodes(result, self.nodes)
        replace_initializers(result, list(result.graph.initializer) + self.new_inits)
        result.graph.ClearField("value_info")
        return prune(result)


def _rewrite(model: onnx.ModelProto,
             rule: Callable[[_Rewriter, onnx.NodeProto], list[onnx.NodeProto] | None],
             rounds: int = 8) -> onnx.ModelProto:
    """Apply `rule` to every node (it returns a replacement list or None) to a fixed point."""
    for _ in range(rounds):
        state = _Rewriter(model)
        out: list[onnx.NodeProto] = []
        for node in state.nodes:
            replacement = rule(state, node)
            if replacement is None:
                out.append(node)
            else:
                state.changed = True
                out.extend(replacement)
        state.nodes = out
        if not state.changed:
            return model
        model = state.finish()
    return model


# --------------------------------------------------------------------------------------
# reshapes and the seed axis


def _reshape_rule(state: _Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
    op = node.op_type
    if op not in ("Identity", "Transpose", "Unsqueeze", "Squeeze", "Flatten", "Reshape",
                  "Expand") or node.domain not in ("", "ai.onnx") or len(node.output) != 1:
        return None
    source = node.input[0]
    out = node.output[0]
    if op == "Identity":
        return [] if state.make_alias(node, source) else None
    in_shape, out_shape = state.shape(source), state.shape(out)
    if in_shape is None or out_shape is None:
        return None
    if in_shape == out_shape and op in ("Reshape", "Expand", "Unsqueeze", "Squeeze",
                                        "Flatten"):
        return [] if state.make_alias(node, source) else None
    if op == "Expand":
        return None
    if op == "Transpose":
        perm = attr_ints(node, "perm", list(reversed(range(len(in_shape)))))
        moved = [p for p in perm if in_shape[p] != 1]
        if moved != sorted(moved):
            return None
        if perm == list(range(len(in_shape))):
            return [] if state.make_alias(node, source) else None
    # fold a chain: Reshape(Reshape(x)) -> Reshape(x)
    producer = state.producers.get(source)
    if producer is not None and producer.op_type == "Reshape" and \
            state.shape(producer.input[0]) is not None:
        source = producer.input[0]
    if op == "Reshape" and source == node.input[0] and \
            state.values.get(node.input[1]) is not None and \
            list(state.values[node.input[1]]) == list(out_shape):
        return None  # already canonical
    if state.shape(source) == out_shape:
        return [] if state.make_alias(node, source) else None
    return [state.node("Reshape", [source, state.ints(out_shape)], [out])]


ELEMENTWISE = frozenset(
    {
        "Add",
        "Sub",
        "Mul",
        "Div",
        "Sum",
        "Where",
        "And",
        "Or",
        "Not",
        "Cast",
        "Equal",
        "Greater",
        "GreaterOrEqual",
        "Less",
        "LessOrEqual",
        "Relu",
        "Sigmoid",
        "Neg",
        "Clip",
        "Tanh",
        "Exp",
        "Abs",
        "Sqrt",
        "Reciprocal",
        "Max",
        "Min",
    }
)


def _small_constant(state: _Rewriter, name: str, rank: int) -> bool:
    value = state.values.get(name)
    return value is not None and value.size == 1 and value.ndim <= rank


def _sink_rule(state: _Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
    """Move a Reshape (or Expand) below an elementwise op, so that Reshape pairs meet and
    cancel: ``Mul(Reshape(a, O), Reshape(b, O)) -> Reshape(Mul(a, b), O)``."""
    if node.domain not in ("", "ai.onnx") or len(node.output) != 1:
        return None
    op = node.op_type
    if op == "ReduceSum":
        axes = state.values.get(node.input[1]) if len(node.input) > 1 and node.input[1] else None
        empty = (len(node.input) < 2 or not node.input[1]) or (axes is not None and axes.size == 0)
        shape_in, shape_out = state.shape(node.input[0]), state.shape(node.output[0])
        if (empty and attr_int(node, "noop_with_empty_axes", 0)) or (
            shape_in is not None and shape_in == shape_out
        ):
            return [] if state.make_alias(node, node.input[0]) else None
        return None
    if op in ("Sum", "Concat") and len(node.input) == 1:
        return [] if state.make_alias(node, node.input[0]) else None
    if op not in ELEMENTWISE:
        return None
    out_shape = state.shape(node.output[0])
    if out_shape is None:
        return None
    kind: str | None = None
    sources: dict[int, str] = {}
    source_shape: tuple[int, ...] | None = None
    expand_to: str | None = None
    for index, name in enumerate(node.input):
        if not name:
            continue
        producer = state.producers.get(name)
        if (
            producer is not None
            and producer.op_type in ("Reshape", "Expand")
            and state.shape(name) == out_shape
        ):
            shape = state.shape(producer.input[0])
            if shape is None or (kind is not None and kind != producer.op_type):
                return None
            if source_shape is not None and shape != source_shape:
                return None
            if producer.op_type == "Expand":
                if expand_to is not None and expand_to != producer.input[1]:
                    return None
                expand_to = producer.input[1]
            kind, source_shape = producer.op_type, shape
            sources[index] = producer.input[0]
        elif index == 0 and op == "Where" and state.shape(name) == out_shape:
            return None
        elif _small_constant(state, name, len(source_shape) if source_shape else 1):
            continue
        else:
            return None
    if kind is None or source_shape is None:
        return None
    if kind == "Reshape" and int(np.prod(source_shape)) != int(np.prod(out_shape)):
        return None
    for index, name in enumerate(node.input):
        if name and index not in sources and not _small_constant(state, name, len(source_shape)):
            return None
    if kind == "Expand" and len(sources) != 1:
        return None  # several expanded operands: keep (they may differ in where they broadcast)
    inner = state.fresh(node.output[0] + "_sunk")
    copy = onnx.NodeProto()
    copy.CopyFrom(node)
    for index, name in sources.items():
        copy.input[index] = name
    copy.output[0] = inner
    copy.name = state.fresh(node.name or op)
    shape_input = state.ints(out_shape) if kind == "Reshape" else expand_to
    assert shape_input is not None
    return [copy, state.node(kind, [inner, shape_input], [node.output[0]])]


def sink_reshapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Push Reshapes and Expands below elementwise ops until pairs cancel."""
    for _ in range(32):
        before = len(model.graph.node)
        model = _rewrite(model, _sink_rule, rounds=1)
        model = _rewrite(model, _reshape_rule, rounds=2)
        if len(model.graph.node) == before:
            break
    return model


def simplify_reshapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Turn the seed-axis bookkeeping (size-1 Transposes, (Un)Squeezes, Reshape chains,
    no-op Expands and Identities) into at most one Reshape per chain."""
    return _rewrite(model, _reshape_rule)


# --------------------------------------------------------------------------------------
# masks


def _is_zero(state: _Rewriter, name: str) -> bool:
    value = state.values.get(name)
    return value is not None and value.size <= 1 and not np.any(value)


def _float_of(state: _Rewriter, *names: str) -> int:
    for name in names:
        elem = state.types.get(name)
        if elem in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
            return int(elem)
        value = state.values.get(name)
        if value is not None and value.dtype.kind == "f":
            return int(helper.np_dtype_to_tensor_dtype(value.dtype))
    return int(TensorProto.FLOAT)


#: Rewrite ``Where(m, g, 0)`` as ``Mul(g, Cast(m))`` (measured: see bench/gradient_engine.py).
MASK_AS_MUL = True

#: Compute a Clip's derivative mask from its output alone (see `_mask_rule`).
MASK_FROM_OUTPUT = False


def _bound(state: _Rewriter, name: str) -> tuple[str, str, str] | None:
    """("low", x, lo) for ``x >= lo`` / ``Not(x < lo)``, ("high", x, hi) for the upper side."""
    node = state.producers.get(name)
    if node is None:
        return None
    if node.op_type == "GreaterOrEqual":
        return "low", node.input[0], node.input[1]
    if node.op_type == "LessOrEqual":
        return "high", node.input[0], node.input[1]
    if node.op_type == "Not":
        inner = state.producers.get(node.input[0])
        if inner is not None and inner.op_type == "Less":
            return "low", inner.input[0], inner.input[1]
        if inner is not None and inner.op_type == "Greater":
            return "high", inner.input[0], inner.input[1]
    return None


def _mask_rule(state: _Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
    if node.domain not in ("", "ai.onnx"):
        return None
    if node.op_type == "Not":
        candidate = state.producers.get(node.input[0])
        if candidate is not None and candidate.op_type in ("Less", "Greater"):
            flipped = "GreaterOrEqual" if candidate.op_type == "Less" else "LessOrEqual"
            return [state.node(flipped, list(candidate.input), [node.output[0]])]
        return None
    if node.op_type == "And":
        bounds = [_bound(state, name) for name in node.input]
        if bounds[0] is not None and bounds[1] is not None:
            low = next((b for b in bounds if b is not None and b[0] == "low"), None)
            high = next((b for b in bounds if b is not None and b[0] == "high"), None)
            if low is not None and high is not None and low[1] == high[1]:
                clipped = state.clips.get((low[1], low[2], high[2]))
                if clipped is not None and MASK_FROM_OUTPUT:
                    # lo < Clip(x) < hi: reads only the Clip's output, so the forward
                    # Conv+Clip stays fused (differs from the raw graph only where x sits
                    # exactly on a bound -- the kink, where either value is a subgradient)
                    above = state.fresh(clipped + "_above")
                    below = state.fresh(clipped + "_below")
                    return [
                        state.node("Greater", [clipped, low[2]], [above]),
                        state.node("Less", [clipped, high[2]], [below]),
                        state.node("And", [above, below], [node.output[0]]),
                    ]
                if clipped is not None:
                    # x inside [lo, hi] (bounds included) exactly when Clip(x) == x
                    return [state.node("Equal", [low[1], clipped], [node.output[0]])]
        return None
    if node.op_type != "Where" or not MASK_AS_MUL:
        return None
    condition, a, b = node.input
    out_shape = state.shape(node.output[0])
    if out_shape is None:
        return None
    if _is_zero(state, b):
        kept, negate = a, False
    elif _is_zero(state, a):
        kept, negate = b, True
    else:
        return None
    shapes = [state.shape(kept), state.shape(condition)]
    if any(s is None for s in shapes):
        return None
    if tuple(np.broadcast_shapes(*[s for s in shapes if s is not None])) != out_shape:
        return None
    dtype = _float_of(state, kept, a, b)
    nodes: list[onnx.NodeProto] = []
    if negate:
        flipped = state.fresh(condition + "_not")
        nodes.append(state.node("Not", [condition], [flipped]))
        condition = flipped
    mask = state.fresh(condition + "_f")
    nodes.append(state.node("Cast", [condition], [mask], to=dtype))
    nodes.append(state.node("Mul", [kept, mask], [node.output[0]]))
    return nodes


def simplify_masks(model: onnx.ModelProto) -> onnx.ModelProto:
    """``Where(m, g, 0)`` -> ``Mul(g, Cast(m))``; ``Not(Less)`` -> ``GreaterOrEqual``."""
    return _rewrite(model, _mask_rule)


#: Compute a Clip mask ``lo < y < hi`` on a 4-D tensor as two per-channel 1x1 Convs with a
#: fused Clip(0, 1) (``Clip(K*(y-lo), 0, 1) * Clip(K*(hi-y), 0, 1)``, K = 2**100), so that
#: ORT keeps the whole backward chain in its blocked NCHWc layout: no reorders around the
#: mask multiplies. Exact except for 0 < y - lo < 2**-100 (or hi - y), where it is
#: fractional instead of 1.
MASK_AS_CONV = False
_K = float(2.0**100)


def _mask_conv_rule(state: _Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
    if node.op_type != "Mul" or node.domain not in ("", "ai.onnx"):
        return None
    for g_index in (0, 1):
        cast = state.producers.get(node.input[1 - g_index])
        if cast is None or cast.op_type != "Cast":
            continue
        both = state.producers.get(cast.input[0])
        if both is None or both.op_type != "And":
            continue
        sides = [state.producers.get(name) for name in both.input]
        if any(side is None for side in sides):
            continue
        by_op = {side.op_type: side for side in sides if side is not None}
        above, below = by_op.get("Greater"), by_op.get("Less")
        if above is None or below is None or above.input[0] != below.input[0]:
            continue
        y = above.input[0]
        lo, hi = state.values.get(above.input[1]), state.values.get(below.input[1])
        shape = state.shape(y)
        clip = state.producers.get(y)
        if lo is None or hi is None or lo.size != 1 or hi.size != 1 or shape is None or \
                len(shape) != 4 or state.shape(node.output[0]) != shape or \
                state.shape(node.input[g_index]) != shape or clip is None or \
                clip.op_type != "Clip":
            continue
        dtype = np.float32 if _float_of(state, y) == TensorProto.FLOAT else np.float64
        channels = shape[1]
        low, high = float(lo.reshape(-1)[0]), float(hi.reshape(-1)[0])
        zero = state.constant(np.array(0.0, dtype=dtype), "zero")
        one = state.constant(np.array(1.0, dtype=dtype), "one")
        nodes: list[onnx.NodeProto] = []
        parts = []
        for sign, bias in ((1.0, -_K * low), (-1.0, _K * high)):
            raw = state.fresh(y + "_mask_linear")
            part = state.fresh(y + "_mask_side")
            weight = state.constant(np.full((channels, 1, 1, 1), sign * _K, dtype=dtype),
                                    "mask_scale")
            offset = state.constant(np.full((channels,), bias, dtype=dtype), "mask_offset")
            nodes.append(state.node("Conv", [y, weight, offset], [raw], group=channels,
                                    kernel_shape=[1, 1]))
            nodes.append(state.node("Clip", [raw, zero, one], [part]))
            parts.append(part)
        mask = state.fresh(y + "_mask")
        nodes.append(state.node("Mul", parts, [mask]))
        nodes.append(state.node("Mul", [node.input[g_index], mask], [node.output[0]]))
        return nodes
    return None


def masks_as_conv(model: onnx.ModelProto) -> onnx.ModelProto:
    """Clip masks of 4-D tensors as per-channel Convs with a fused Clip (`MASK_AS_CONV`)."""
    if not MASK_AS_CONV:
        return model
    return _rewrite(model, _mask_conv_rule, rounds=1)


#: Compute exact ``Clip(x, 0, hi)`` masks (ReLU6) in ORT's blocked NCHWc layout, from
#: per-channel 1x1 Convs with fused activations (see `conv_clip_masks`): no layout
#: reorders around the masks, the forward Clip fused with a 1x1 identity Conv.
EXACT_CONV_MASKS = True

#: `conv_clip_masks` is exact for every pre-activation outside (-2**-_LOW_EXP, 0).
_LOW_EXP = 100


def conv_mask_constants(hi: float) -> tuple[float, float] | None:
    """(w, alpha) for `conv_clip_masks`, or None where float32 cannot do it exactly.

    ``f = LeakyRelu(w * x, alpha)`` (w = 1/ulp above hi, alpha = -2**k, both powers of
    two, so the products are exact) is at most ``T = w * hi`` for x in [0, hi], and at
    least ``T + 1`` for x above hi (the next float is hi + 1/w) and for x <= -2**-100;
    overflow gives +inf, still outside. ``T + 1 < 2**24`` is an exact float and so is
    every ``T + 1 - f`` near the bounds, so ``Clip(T + 1 - f, 0, 1)`` is exactly the 0/1
    indicator of [0, hi] (bounds inside, as onnx-ad's ``Not(x < 0) & Not(x > hi)``).
    """
    hi32 = np.float32(hi)
    if not np.isfinite(hi32) or hi32 <= 0:
        return None
    above = np.nextafter(hi32, np.float32(np.inf))
    w = 1.0 / (float(above) - float(hi32))
    if w != 2.0 ** round(np.log2(w)) or w * float(hi32) + 1 >= 2.0**24 or w > 2.0**126:
        return None
    k = int(np.ceil(np.log2((w * float(hi32) + 1) / w))) + _LOW_EXP
    if k > 126:
        return None
    return w, -(2.0**k)


def _conv_clip_masks(model: onnx.ModelProto) -> onnx.ModelProto:
    state = _Rewriter(model)
    users: dict[str, list[onnx.NodeProto]] = {}
    for node in state.nodes:
        for name in node.input:
            if name:
                users.setdefault(name, []).append(node)
    # per Clip output c = Clip(x, 0, hi): the mask Muls ``Mul(g, Cast(Equal(x, c)))``
    # (the cast mask possibly reshaped, as where a seed axis is left: its shape input)
    plans: dict[str, list[tuple[onnx.NodeProto, int, str | None]]] = {}
    for node in state.nodes:
        if node.op_type != "Mul" or node.domain not in ("", "ai.onnx"):
            continue
        for g_index in (0, 1):
            operand = node.input[1 - g_index]
            cast = state.producers.get(operand)
            reshape_to: str | None = None
            if cast is not None and cast.op_type == "Reshape" and \
                    len(users.get(cast.output[0], [])) == 1:
                reshape_to = cast.input[1]
                cast = state.producers.get(cast.input[0])
            equal = state.producers.get(cast.input[0]) if cast is not None and \
                cast.op_type == "Cast" else None
            if cast is None or equal is None or equal.op_type != "Equal":
                continue
            x, clipped = equal.input
            clip = state.producers.get(clipped)
            if clip is None or clip.op_type != "Clip" or clip.input[0] != x or \
                    len(users.get(cast.output[0], [])) != 1 or \
                    len(users.get(equal.output[0], [])) != 1:
                continue
            shape, out = state.shape(x), state.shape(node.output[0])
            if shape is None or len(shape) != 4 or state.types.get(x) != TensorProto.FLOAT or \
                    out is None or state.shape(node.input[g_index]) != out or \
                    state.shape(operand) != out or \
                    (reshape_to is None and out != shape):
                continue
            plans.setdefault(clipped, []).append((node, g_index, reshape_to))
            break
    replaced: dict[int, list[onnx.NodeProto]] = {}
    for clipped, muls in plans.items():
        clip = state.producers[clipped]
        lo = state.values.get(clip.input[1]) if len(clip.input) > 1 else None
        hi = state.values.get(clip.input[2]) if len(clip.input) > 2 else None
        if lo is None or hi is None or lo.size != 1 or hi.size != 1 or \
                float(lo.reshape(-1)[0]) != 0.0 or clipped in state.graph_outputs:
            continue
        # every reader of Equal(x, c) must be one of these masks: they all get rewritten
        equals = [n for n in users.get(clipped, []) if n.op_type == "Equal"]
        if len(equals) != len(muls):
            continue
        consts = conv_mask_constants(float(hi.reshape(-1)[0]))
        if consts is None:
            continue
        w, alpha = consts
        bound = float(np.float32(hi.reshape(-1)[0]))
        x = clip.input[0]
        channels = state.shape(x)[1]  # type: ignore[index]
        f32 = np.float32
        scaled, vee, linear, mask = (state.fresh(clipped + suffix) for suffix in
                                     ("_mask_scaled", "_mask_vee", "_mask_linear", "_mask"))
        # the forward Clip reads a copy of x made by a 1x1 identity Conv: ORT fuses
        # that Conv with the Clip (in NCHWc) and x stays available for the mask.
        # (Recomputing x = Conv(v) scaled for the mask instead, so that the producing
        # Conv and the Clip fuse, measured slower even for depthwise producers.)
        copied = state.fresh(x + "_copy")
        forward = onnx.NodeProto()
        forward.CopyFrom(clip)
        forward.input[0] = copied
        replaced[id(clip)] = [
            state.node("Conv", [x, state.constant(np.ones((channels, 1, 1, 1), f32),
                                                  "identity")],
                       [copied], group=channels, kernel_shape=[1, 1]),
            forward,
        ]
        first = [state.node("Conv", [x, state.constant(np.full((channels, 1, 1, 1), w, f32),
                                                       "mask_scale")],
                            [scaled], group=channels, kernel_shape=[1, 1])]
        mask_nodes = [
            *first,
            state.node("LeakyRelu", [scaled], [vee], alpha=alpha),
            state.node("Conv", [vee, state.constant(np.full((channels, 1, 1, 1), -1.0, f32),
                                                   "mask_negate"),
                                state.constant(np.full((channels,), w * bound + 1.0, f32),
                                               "mask_offset")],
                       [linear], group=channels, kernel_shape=[1, 1]),
            state.node("Clip", [linear, state.constant(np.array(0.0, f32), "zero"),
                                state.constant(np.array(1.0, f32), "one")], [mask]),
        ]
        for index, (mul, g_index, reshape_to) in enumerate(muls):
            tail: list[onnx.NodeProto] = []
            operand = mask
            if reshape_to is not None:
                operand = state.fresh(mask + "_reshaped")
                tail.append(state.node("Reshape", [mask, reshape_to], [operand]))
            tail.append(state.node("Mul", [mul.input[g_index], operand], [mul.output[0]]))
            replaced[id(mul)] = (mask_nodes + tail) if index == 0 else tail
    if not replaced:
        return model
    nodes: list[onnx.NodeProto] = []
    for node in state.nodes:
        nodes.extend(replaced.get(id(node), [node]))
    state.nodes = nodes  # the masks sit at their first Mul: after the forward Clip
    return state.finish()


def conv_clip_masks(model: onnx.ModelProto) -> onnx.ModelProto:
    """Exact ``Clip(x, 0, hi)`` masks as depthwise 1x1 Convs (`EXACT_CONV_MASKS`).

    ``Mul(g, Cast(Equal(x, Clip(x, 0, hi))))`` runs in plain NCHW: ORT's NCHWc layout
    has no Equal, Cast or standalone Clip, so every ReLU6 costs a reorder of x out, of
    Clip(x) back in, and of g out and back in around the Mul (with the unfused Clip in
    between). Here, all in NCHWc:

    * forward: ``Clip(Conv1x1_identity(x), 0, hi)`` -- ORT fuses the Clip into that
      depthwise Conv; the value is exactly Clip(x) (x * 1 is exact), and x itself stays
      available for the mask;
    * mask: ``Clip(T + 1 - LeakyRelu(w * x, alpha), 0, 1)``: two depthwise 1x1 Convs
      with fused activations, exactly the 0/1 indicator of [0, hi], bounds inside (see
      `conv_mask_constants`; the one inexact range is x in (-2**-100, 0), where it is
      fractional, and no real pre-activation lands there);
    * backward: ``Mul(g, mask)``, in NCHWc as both operands are.

    Every op reads and writes whole activations (the graph is memory-bound there): 9
    activation-sized transfers per ReLU6 instead of about 16, and no layout switches.
    """
    if not EXACT_CONV_MASKS:
        return model
    return _conv_clip_masks(model)


# --------------------------------------------------------------------------------------
# ConvTranspose -> Conv


#: How a strided ConvTranspose is turned into a Conv: "polyphase" (one Conv computing
#: every output phase, then DepthToSpace; any group), or, for depthwise ones only, zero
#: insertion by "conv_transpose" (a 1x1 depthwise ConvTranspose of ones: the default,
#: measured fastest), "depth_to_space" (zeros concatenated along channels) or "pad" (a 6-D
#: Pad), or "none" (kept as ConvTranspose).
ZERO_INSERTION = "conv_transpose"


def _conv_transpose_pads(node: onnx.NodeProto, x: tuple[int, ...], w: tuple[int, ...],
                         y: tuple[int, ...]) -> tuple[list[int], list[int]] | None:
    """(begin, end) padding a ConvTranspose uses, from its actual static output shape."""
    spatial = len(x) - 2
    strides = attr_ints(node, "strides", [1] * spatial)
    dilations = attr_ints(node, "dilations", [1] * spatial)
    if get_attr(node, "auto_pad", "NOTSET") not in ("NOTSET",):
        return None
    pads = attr_ints(node, "pads", [0] * (2 * spatial))
    has_shape = get_attr(node, "output_shape") is not None
    begin, end = [], []
    for i in range(spatial):
        full = strides[i] * (x[2 + i] - 1) + dilations[i] * (w[2 + i] - 1) + 1
        total = full - y[2 + i]  # negative: output_padding beyond the full extent
        if has_shape:
            b = total - total // 2
        else:
            b = pads[i]
        begin.append(b)
        end.append(total - b)
    return begin, end


def _conv_transpose_rule(state: _Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
    if node.op_type != "ConvTranspose" or node.domain not in ("", "ai.onnx"):
        return None
    x_name, w_name = node.input[0], node.input[1]
    bias = node.input[2] if len(node.input) > 2 and node.input[2] else None
    weight = state.values.get(w_name)
    x, y = state.shape(x_name), state.shape(node.output[0])
    if weight is None or x is None or y is None or weight.ndim != 4:
        return None
    spatial = 2
    group = attr_int(node, "group", 1)
    strides = attr_ints(node, "strides", [1] * spatial)
    dilations = attr_ints(node, "dilations", [1] * spatial)
    pads = _conv_transpose_pads(node, x, tuple(weight.shape), y)
    if pads is None:
        return None
    begin, end = pads
    c_in, c_out_g = weight.shape[0], weight.shape[1]
    kernel = list(weight.shape[2:])
    # Conv weight: [group * c_out_g, c_in / group, kh, kw], spatially flipped
    per_group = c_in // group
    flipped = weight[:, :, ::-1, ::-1]
    k = flipped.reshape(group, per_group, c_out_g, *kernel).transpose(0, 2, 1, 3, 4)
    k = np.ascontiguousarray(k.reshape(group * c_out_g, per_group, *kernel))
    conv_pads_b = [dilations[i] * (kernel[i] - 1) - begin[i] for i in range(spatial)]
    conv_pads_e = [dilations[i] * (kernel[i] - 1) - end[i] for i in range(spatial)]
    if any(p < 0 for p in conv_pads_b + conv_pads_e):
        return None
    nodes: list[onnx.NodeProto] = []
    source = x_name
    if any(s != 1 for s in strides) and ZERO_INSERTION in ("polyphase", "polyphase_split"):
        return _polyphase(state, node, weight, x, y, group, strides, dilations, begin, end)
    if any(s != 1 for s in strides):
        # zero insertion: [N, C, H, W] -> [N, C, H, 1, W, 1] -> pad -> [N, C, H*s, W*s],
        # then drop the trailing s-1 zeros (a stride-s ConvTranspose starts and ends on a
        # real sample). Worth it only where the Conv is cheap: depthwise.
        if not (group == c_in and c_out_g == 1):
            return None
        n, c, h, w = x
        sh, sw = strides
        if ZERO_INSERTION == "depth_to_space":
            # [x, zeros] along channels, then DepthToSpace (DCR) puts x at (s*i, s*j)
            if sh != sw:
                return None
            zeros = state.fresh(x_name + "_zeros")
            nodes.append(
                state.node(
                    "ConstantOfShape",
                    [state.ints([n, c * (sh * sw - 1), h, w])],
                    [zeros],
                    value=helper.make_tensor("zero", TensorProto.FLOAT, [1], [0.0]),
                )
            )
            stacked = state.fresh(x_name + "_stacked")
            nodes.append(state.node("Concat", [x_name, zeros], [stacked], axis=1))
            flat = state.fresh(x_name + "_dilated")
            nodes.append(state.node("DepthToSpace", [stacked], [flat], blocksize=sh, mode="DCR"))
        elif ZERO_INSERTION == "conv_transpose":
            # a 1x1 stride-s depthwise ConvTranspose of ones: ORT's ConvTranspose is
            # slow per group, but with a 1x1 kernel it only scatters the samples
            flat = state.fresh(x_name + "_dilated")
            nodes.append(state.node(
                "ConvTranspose",
                [x_name, state.constant(np.ones((c, 1, 1, 1), dtype=weight.dtype), "ones")],
                [flat], group=c, kernel_shape=[1, 1], strides=[sh, sw],
                output_padding=[sh - 1, sw - 1]))
        elif ZERO_INSERTION == "pad":
            six = state.fresh(x_name + "_6d")
            nodes.append(state.node("Reshape", [x_name, state.ints([n, c, h, 1, w, 1])], [six]))
            padded = state.fresh(x_name + "_zeros")
            nodes.append(
                state.node(
                    "Pad",
                    [six, state.ints([0, 0, 0, 0, 0, 0, 0, 0, 0, sh - 1, 0, sw - 1])],
                    [padded],
                    mode="constant",
                )
            )
            flat = state.fresh(x_name + "_dilated")
            nodes.append(
                state.node("Reshape", [padded, state.ints([n, c, h * sh, w * sw])], [flat])
            )
        else:
            return None
        # the last s-1 rows/cols are the padding beyond the final sample: remove via pads
        conv_pads_e = [conv_pads_e[0] - (sh - 1), conv_pads_e[1] - (sw - 1)]
        source = flat
        if any(p < 0 for p in conv_pads_e):
            trimmed = state.fresh(x_name + "_trimmed")
            nodes.append(state.node(
                "Slice", [flat, state.ints([0, 0]),
                          state.ints([h * sh - (sh - 1), w * sw - (sw - 1)]),
                          state.ints([2, 3])], [trimmed]))
            conv_pads_e = [conv_pads_e[0] + (sh - 1), conv_pads_e[1] + (sw - 1)]
            source = trimmed
            if any(p < 0 for p in conv_pads_e):
                return None
    if WEIGHTS_AS_NODES and w_name in state.initializers:
        w_new = _conv_weight_nodes(state, w_name, weight.shape, group, nodes)
    else:
        w_new = state.constant(k.astype(weight.dtype), w_name + "_as_conv")
    inputs = [source, w_new] + ([bias] if bias else [])
    nodes.append(state.node("Conv", inputs, [node.output[0]], group=group,
                            dilations=dilations, kernel_shape=kernel,
                            pads=conv_pads_b + conv_pads_e, strides=[1, 1]))
    return nodes


#: Express a rewritten ConvTranspose's Conv weight as Slice/Transpose/Reshape nodes on the
#: original initializer (ORT constant-folds them when the session is created) rather than
#: as a new initializer: the cached model file then stays the size of the original.
WEIGHTS_AS_NODES = True

_INT64_MIN = -(2**63)


def _conv_weight_nodes(state: _Rewriter, w_name: str, shape: tuple[int, ...], group: int,
                       nodes: list[onnx.NodeProto]) -> str:
    """The Conv weight equivalent to ConvTranspose weight `w_name` (spatially flipped,
    in/out channels swapped within each group), as nodes appended to `nodes`."""
    c_in, c_out_g, kh, kw = shape
    per_group = c_in // group
    current = w_name
    if kh > 1 or kw > 1:
        flipped = state.fresh(w_name + "_flipped")
        nodes.append(state.node("Slice", [current, state.ints([-1, -1]),
                                          state.ints([_INT64_MIN, _INT64_MIN]),
                                          state.ints([2, 3]), state.ints([-1, -1])],
                                [flipped]))
        current = flipped
    if group == 1:
        swapped = state.fresh(w_name + "_as_conv")
        nodes.append(state.node("Transpose", [current], [swapped], perm=[1, 0, 2, 3]))
        return swapped
    if per_group == 1 and c_out_g == 1:
        return current              # depthwise: nothing to swap
    grouped = state.fresh_reshape(current, [group, per_group, c_out_g, kh, kw], nodes)
    swapped = state.fresh(w_name + "_swapped")
    nodes.append(state.node("Transpose", [grouped], [swapped], perm=[0, 2, 1, 3, 4]))
    target = state.fresh(w_name + "_as_conv")
    nodes.append(state.node("Reshape", [swapped, state.ints(
        [group * c_out_g, per_group, kh, kw])], [target]))
    return target


def _polyphase(
    state: _Rewriter,
    node: onnx.NodeProto,
    weight: np.ndarray,
    x: tuple[int, ...],
    y: tuple[int, ...],
    group: int,
    strides: list[int],
    dilations: list[int],
    begin: list[int],
    end: list[int],
) -> list[onnx.NodeProto] | None:
    """A stride-s ConvTranspose as one Conv computing all s*s output phases, a
    DepthToSpace (CRD) interleaving them, and a Slice applying the padding.

    Output phase (r_h, r_w) of a transposed convolution only meets the kernel taps
    ``w[r + s*m]``: a stride-1 convolution with that sub-kernel. Stacking the phases as
    extra output channels (``co * s*s + phase``, CRD order) makes it one grouped Conv with
    no multiplications by inserted zeros.
    """
    s = strides[0]
    if (
        any(st != s for st in strides)
        or any(d != 1 for d in dilations)
        or (len(node.input) > 2 and node.input[2])
    ):
        return None
    c_in, c_out_g, kh, kw = weight.shape
    c_out = c_out_g * group
    per_group_in = c_in // group
    m = max(-(-kh // s), -(-kw // s))  # taps per phase, rounded up
    kernel = np.zeros((c_out * s * s, per_group_in, m, m), dtype=weight.dtype)
    for co in range(c_out):
        g, j = divmod(co, c_out_g)
        w = weight[g * per_group_in : (g + 1) * per_group_in, j]  # [in/g, kh, kw]
        for r_h in range(s):
            for r_w in range(s):
                phase = co * s * s + r_h * s + r_w
                for a in range(m):
                    th = r_h + s * (m - 1 - a)
                    if th >= kh:
                        continue
                    for b in range(m):
                        tw = r_w + s * (m - 1 - b)
                        if tw < kw:
                            kernel[phase, :, a, b] = w[:, th, tw]
    q = [x[2 + i] + m - 1 for i in range(2)]
    out = [y[2 + i] for i in range(2)]
    if any(begin[i] < 0 or s * q[i] < begin[i] + out[i] for i in range(2)):
        return None
    interleaved = state.fresh(node.output[0] + "_interleaved")
    if ZERO_INSERTION == "polyphase_split" and group == c_in and c_out_g == 1:
        # one depthwise Conv per phase (ORT's fast depthwise path needs multiplier 1),
        # concatenated phase-major for DepthToSpace's DCR order
        parts = []
        nodes = []
        for phase in range(s * s):
            part = state.fresh(node.output[0] + f"_phase{phase}")
            sub = np.ascontiguousarray(kernel[phase :: s * s])
            nodes.append(
                state.node(
                    "Conv",
                    [node.input[0], state.constant(sub, node.input[1] + "_phase")],
                    [part],
                    group=group,
                    kernel_shape=[m, m],
                    pads=[m - 1] * 4,
                    strides=[1, 1],
                )
            )
            parts.append(part)
        stacked = state.fresh(node.output[0] + "_phases")
        nodes.append(state.node("Concat", parts, [stacked], axis=1))
        nodes.append(state.node("DepthToSpace", [stacked], [interleaved], blocksize=s, mode="DCR"))
    else:
        phases = state.fresh(node.output[0] + "_phases")
        nodes = [
            state.node(
                "Conv",
                [node.input[0], state.constant(kernel, node.input[1] + "_phases")],
                [phases],
                group=group,
                kernel_shape=[m, m],
                pads=[m - 1] * 4,
                strides=[1, 1],
            ),
            state.node("DepthToSpace", [phases], [interleaved], blocksize=s, mode="CRD"),
        ]
    if all(begin[i] == 0 and s * q[i] == out[i] for i in range(2)):
        nodes[-1].output[0] = node.output[0]
        return nodes
    nodes.append(
        state.node(
            "Slice",
            [
                interleaved,
                state.ints(begin[:2]),
                state.ints([begin[i] + out[i] for i in range(2)]),
                state.ints([2, 3]),
            ],
            [node.output[0]],
        )
    )
    del end
    return nodes


def rewrite_conv_transpose(model: onnx.ModelProto) -> onnx.ModelProto:
    """Stride-1 ConvTranspose (and strided depthwise ones, see `ZERO_INSERTION`) as Conv."""
    return _rewrite(model, _conv_transpose_rule, rounds=1)


# --------------------------------------------------------------------------------------

DEFAULT_PASSES: tuple[Pass, ...] = (
    prune_dead, fold_constants, simplify_reshapes, simplify_masks, rewrite_conv_transpose,
    simplify_reshapes, sink_reshapes, conv_clip_masks, masks_as_conv, prune_dead,
)


def optimize(model: onnx.ModelProto, passes: Sequence[Pass] = DEFAULT_PASSES) -> onnx.ModelProto:
    """Run `passes` in order; returns a new model."""
    for step in passes:
        model = step(model)
    return infer(model)


def node_count(model: onnx.ModelProto) -> int:
    return len(model.graph.node)


def op_histogram(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return dict(sorted(counts.items(), key=lambda kv: -kv[1]))


__all__ = [
    "DEFAULT_PASSES",
    "consumers",
    "conv_clip_masks",
    "fold_constants",
    "node_count",
    "op_histogram",
    "optimize",
    "prune_dead",
    "rewrite_conv_transpose",
    "simplify_masks",
    "simplify_reshapes",
]
