"""Reshape rules: the seed axis onnx-ad carries through every tensor, undone.

* `simplify_reshapes`: with static shapes, a Transpose that only moves size-1 axes, an
  Unsqueeze, Squeeze or Flatten is a Reshape; chained Reshapes collapse; a Reshape, Expand
  or Identity that changes nothing disappears. This removes the seed axis bookkeeping.
* `sink_reshapes`: Reshapes/Expands move below elementwise ops until pairs cancel; no-op
  ReduceSum/Sum disappear. What is left of the seed axis is a handful of Reshapes.
"""

from __future__ import annotations

import numpy as np
import onnx

from .._graph import attr_int, attr_ints
from .rewriter import Rewriter, rewrite


def _reshape_rule(state: Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
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


def _small_constant(state: Rewriter, name: str, rank: int) -> bool:
    value = state.values.get(name)
    return value is not None and value.size == 1 and value.ndim <= rank


def _sink_rule(state: Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
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
        model = rewrite(model, _sink_rule, rounds=1)
        model = rewrite(model, _reshape_rule, rounds=2)
        if len(model.graph.node) == before:
            break
    return model


def simplify_reshapes(model: onnx.ModelProto) -> onnx.ModelProto:
    """Turn the seed-axis bookkeeping (size-1 Transposes, (Un)Squeezes, Reshape chains,
    no-op Expands and Identities) into at most one Reshape per chain."""
    return rewrite(model, _reshape_rule)
