"""ConvTranspose -> Conv (`rewrite_conv_transpose`).

A stride-1 ConvTranspose with a constant weight (all the 1x1 and depthwise adjoints)
becomes the equivalent Conv (flipped, transposed weight; complementary pads), which ORT
runs much faster and in its NCHWc layout. A strided depthwise one becomes zero insertion by
a 1x1 stride-s depthwise ConvTranspose of ones (ORT's ConvTranspose loops over groups,
single-threaded; with a 1x1 kernel it only scatters) followed by a stride-1 depthwise Conv
in NCHWc: EfficientNet-Lite0's four cost ~0.8 ms + ~0.6 ms instead of ~3.4 ms (batch 1,
1 thread). With ``zero_insertion=False`` (`OptimizeOptions.zero_insertion`;
bench/gradient_engine.py variant "keepct") strided ConvTransposes are kept. Other
zero-insertion forms (Pad, DepthToSpace) and a polyphase decomposition measured slower
than ORT's own strided ConvTranspose and were removed.
"""

from __future__ import annotations

import numpy as np
import onnx

from .._graph import attr_int, attr_ints, get_attr
from .rewriter import Rewriter, rewrite


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


def _conv_transpose_rule(state: Rewriter, node: onnx.NodeProto, zero_insertion: bool
                         ) -> list[onnx.NodeProto] | None:
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
    conv_pads_b = [dilations[i] * (kernel[i] - 1) - begin[i] for i in range(spatial)]
    conv_pads_e = [dilations[i] * (kernel[i] - 1) - end[i] for i in range(spatial)]
    if any(p < 0 for p in conv_pads_b + conv_pads_e):
        return None
    nodes: list[onnx.NodeProto] = []
    source = x_name
    if any(s != 1 for s in strides):
        # zero insertion: [N, C, H, W] -> [N, C, H*s, W*s] with the samples at (s*i, s*j),
        # then drop the trailing s-1 zeros (a stride-s ConvTranspose starts and ends on a
        # real sample). Worth it only where the Conv is cheap: depthwise.
        if not zero_insertion or not (group == c_in and c_out_g == 1):
            return None
        _, c, h, w = x
        sh, sw = strides
        # a 1x1 stride-s depthwise ConvTranspose of ones: ORT's ConvTranspose is slow per
        # group, but with a 1x1 kernel it only scatters the samples
        flat = state.fresh(x_name + "_dilated")
        nodes.append(state.node(
            "ConvTranspose",
            [x_name, state.constant(np.ones((c, 1, 1, 1), dtype=weight.dtype), "ones")],
            [flat], group=c, kernel_shape=[1, 1], strides=[sh, sw],
            output_padding=[sh - 1, sw - 1]))
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
    if w_name in state.initializers:
        # the Conv weight as Slice/Transpose/Reshape nodes on the original initializer
        # (ORT constant-folds them when the session is created) rather than as a new
        # initializer: the cached model file then stays the size of the original
        w_new = _conv_weight_nodes(state, w_name, weight.shape, group, nodes)
    else:
        # Conv weight: [group * c_out_g, c_in / group, kh, kw], spatially flipped
        per_group = c_in // group
        flipped = weight[:, :, ::-1, ::-1]
        k = flipped.reshape(group, per_group, c_out_g, *kernel).transpose(0, 2, 1, 3, 4)
        k = np.ascontiguousarray(k.reshape(group * c_out_g, per_group, *kernel))
        w_new = state.constant(k.astype(weight.dtype), w_name + "_as_conv")
    inputs = [source, w_new] + ([bias] if bias else [])
    nodes.append(state.node("Conv", inputs, [node.output[0]], group=group,
                            dilations=dilations, kernel_shape=kernel,
                            pads=conv_pads_b + conv_pads_e, strides=[1, 1]))
    return nodes


_INT64_MIN = -(2**63)


def _conv_weight_nodes(state: Rewriter, w_name: str, shape: tuple[int, ...], group: int,
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


def rewrite_conv_transpose(model: onnx.ModelProto, *,
                           zero_insertion: bool = True) -> onnx.ModelProto:
    """Stride-1 ConvTranspose as Conv; with `zero_insertion`, strided depthwise ones too
    (zero insertion, then a stride-1 depthwise Conv)."""

    def rule(state: Rewriter, node: onnx.NodeProto) -> list[onnx.NodeProto] | None:
        return _conv_transpose_rule(state, node, zero_insertion)

    return rewrite(model, rule, rounds=1)
