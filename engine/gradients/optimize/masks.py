"""Mask rules: the derivative masks onnx-ad writes, in cheaper exact forms.

* The Clip derivative mask ``Not(x < lo) & Not(x > hi)`` becomes the exact
  ``Equal(x, Clip(x))``; ``Not(Less)`` becomes ``GreaterOrEqual``.
* ``Where(m, g, 0)`` becomes ``Mul(g, Cast(m))`` (ORT's Where is ~4x slower than
  Cast+Mul).
* Opt-in (`simplify_masks(from_output=True)`, `OptimizeOptions.mask_from_output`):
  ``lo < Clip(x) < hi``, which reads only the Clip's output so ORT keeps the forward
  Conv+Clip fused (~5% faster) but differs where x sits exactly on a bound -- which does
  happen in EfficientNet at batch 16 (a pre-activation of exactly 0.0), so it is off by
  default (bench/gradient_engine.py times it as variant "fast").
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper

from .rewriter import Rewriter, rewrite


def _is_zero(state: Rewriter, name: str) -> bool:
    value = state.values.get(name)
    return value is not None and value.size <= 1 and not np.any(value)


def _float_of(state: Rewriter, *names: str) -> int:
    for name in names:
        elem = state.types.get(name)
        if elem in (TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16):
            return int(elem)
        value = state.values.get(name)
        if value is not None and value.dtype.kind == "f":
            return int(helper.np_dtype_to_tensor_dtype(value.dtype))
    return int(TensorProto.FLOAT)


def _bound(state: Rewriter, name: str) -> tuple[str, str, str] | None:
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


def _mask_rule(state: Rewriter, node: onnx.NodeProto, from_output: bool
               ) -> list[onnx.NodeProto] | None:
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
                if clipped is not None and from_output:
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
    if node.op_type != "Where":
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


def simplify_masks(model: onnx.ModelProto, *, from_output: bool = False) -> onnx.ModelProto:
    """``Where(m, g, 0)`` -> ``Mul(g, Cast(m))``; ``Not(Less)`` -> ``GreaterOrEqual``; Clip
    masks as ``Equal(x, Clip(x))``, or with `from_output` as ``lo < Clip(x) < hi`` (not
    equal to the raw graph where x is exactly on a bound)."""

    def rule(state: Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        return _mask_rule(state, node, from_output)

    return rewrite(model, rule)
