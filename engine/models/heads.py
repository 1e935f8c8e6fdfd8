"""Reading a classifier's structure from its graph: the last spatial layer, the CAM head.

CAM needs ``layer -> GlobalAveragePool (or ReduceMean over H, W) -> Flatten/Reshape ->
Gemm | MatMul [+ Add]``; Grad-CAM's default layer is the input of that pooling, else the
last rank-4 float tensor before the output.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
from numpy.typing import NDArray
from onnx import numpy_helper

from engine.errors import UnsupportedModel

_PASS_THROUGH = {"Flatten", "Reshape", "Squeeze", "Identity", "Dropout"}


@dataclass(frozen=True)
class CamHead:
    layer: str
    weights: NDArray[np.float32]  # (classes, channels): logit_c = sum_k W[c, k] mean(A_k) + b_c
    bias: NDArray[np.float32]


def _consumers(graph: onnx.GraphProto) -> dict[str, list[onnx.NodeProto]]:
    out: dict[str, list[onnx.NodeProto]] = {}
    for node in graph.node:
        for name in node.input:
            out.setdefault(name, []).append(node)
    return out


def _constants(graph: onnx.GraphProto) -> dict[str, NDArray[np.float32]]:
    values = {t.name: numpy_helper.to_array(t) for t in graph.initializer}
    for node in graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value":
                    values[node.output[0]] = numpy_helper.to_array(a.t)
    return values


def _is_global_pool(node: onnx.NodeProto, consts: dict[str, NDArray[np.float32]]) -> bool:
    if node.op_type == "GlobalAveragePool":
        return True
    if node.op_type == "ReduceMean":
        axes: list[int] = []
        for a in node.attribute:
            if a.name == "axes":
                axes = list(a.ints)
        if len(node.input) > 1 and node.input[1] in consts:
            axes = [int(v) for v in consts[node.input[1]].ravel()]
        return sorted(a % 4 for a in axes) == [2, 3]
    return False


def pooled_layers(model: onnx.ModelProto) -> list[str]:
    """Tensors that feed a global average pooling, in graph order."""
    consts = _constants(model.graph)
    return [n.input[0] for n in model.graph.node if _is_global_pool(n, consts)]


def default_cam_layer(model: onnx.ModelProto, spatial_layers: list[str]) -> str | None:
    """The last spatial layer before global pooling, else the last spatial layer."""
    pooled = [name for name in pooled_layers(model) if name in spatial_layers]
    if pooled:
        return pooled[-1]
    return spatial_layers[-1] if spatial_layers else None


def cam_head(model: onnx.ModelProto, output: str, layer: str | None = None) -> CamHead:
    """The linear head after global pooling, as weights per class and channel."""
    graph = model.graph
    consts = _constants(graph)
    consumers = _consumers(graph)
    pools = [n for n in graph.node if _is_global_pool(n, consts)]
    if layer is not None:
        pools = [n for n in pools if n.input[0] == layer]
    for pool in reversed(pools):
        name = pool.output[0]
        node = _single(consumers.get(name, []))
        while node is not None and node.op_type in _PASS_THROUGH:
            name = node.output[0]
            node = _single(consumers.get(name, []))
        if node is None:
            continue
        if node.op_type == "Gemm":
            w = consts.get(node.input[1])
            if w is None or node.input[0] != name:
                continue
            attrs = {a.name: a for a in node.attribute}
            trans_b = attrs["transB"].i if "transB" in attrs else 0
            trans_a = attrs["transA"].i if "transA" in attrs else 0
            alpha = attrs["alpha"].f if "alpha" in attrs else 1.0
            beta = attrs["beta"].f if "beta" in attrs else 1.0
            if trans_a:
                continue
            wm = (w if trans_b else w.T) * alpha
            b = consts.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
            bias = np.zeros(wm.shape[0], np.float32) if b is None else np.broadcast_to(
                b * beta, (wm.shape[0],)
            )
            out_name = node.output[0]
        elif node.op_type == "MatMul":
            w = consts.get(node.input[1])
            if w is None or w.ndim != 2 or node.input[0] != name:
                continue
            wm = w.T
            out_name = node.output[0]
            bias = np.zeros(wm.shape[0], np.float32)
            nxt = _single(consumers.get(out_name, []))
            if nxt is not None and nxt.op_type == "Add":
                other = nxt.input[1] if nxt.input[0] == out_name else nxt.input[0]
                if other in consts:
                    bias = np.broadcast_to(consts[other], (wm.shape[0],))
                    out_name = nxt.output[0]
        else:
            continue
        if out_name != output:
            continue
        return CamHead(
            layer=pool.input[0],
            weights=np.asarray(wm, np.float32),
            bias=np.asarray(bias, np.float32),
        )
    raise UnsupportedModel(
        "CAM needs the output to be a linear layer (Gemm or MatMul) right after global "
        "average pooling of a spatial layer, which this model does not have. Use grad_cam.",
        details={"layer": layer},
    )


def _single(nodes: list[onnx.NodeProto]) -> onnx.NodeProto | None:
    return nodes[0] if len(nodes) == 1 else None


def probe_model(model: onnx.ModelProto, layers: list[str]) -> onnx.ModelProto:
    """The model with ``layers`` exposed as extra outputs (types from shape inference)."""
    inferred = onnx.shape_inference.infer_shapes(model)
    infos = {vi.name: vi for vi in inferred.graph.value_info}
    out = onnx.ModelProto()
    out.CopyFrom(model)
    existing = {o.name for o in out.graph.output}
    for name in layers:
        if name in existing:
            continue
        vi = infos.get(name)
        if vi is None:
            raise UnsupportedModel(
                f"The type of layer {name!r} cannot be inferred, so it cannot be exposed.",
                details={"layer": name},
            )
        out.graph.output.append(vi)
    return out
