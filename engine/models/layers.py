"""Layer discovery: the intermediate float tensors of a graph, with shapes from inference."""

from __future__ import annotations

import onnx
from onnx import TensorProto

from api_schemas.models import LayerInfo, TensorInfo

_SKIP_OPS = {"Constant", "Shape", "Size", "ConstantOfShape", "Range", "NonZero"}


def _dims(t: onnx.TypeProto) -> list[int | str | None]:
    if not t.tensor_type.HasField("shape"):
        return []
    out: list[int | str | None] = []
    for d in t.tensor_type.shape.dim:
        if d.HasField("dim_value"):
            out.append(int(d.dim_value))
        elif d.HasField("dim_param"):
            out.append(d.dim_param)
        else:
            out.append(None)
    return out


def _dtype(t: onnx.TypeProto) -> str:
    return str(onnx.helper.tensor_dtype_to_np_dtype(t.tensor_type.elem_type))


def graph_io(model: onnx.ModelProto) -> tuple[list[TensorInfo], list[TensorInfo]]:
    inits = {i.name for i in model.graph.initializer}
    inputs = [
        TensorInfo(name=v.name, shape=_dims(v.type), dtype=_dtype(v.type))
        for v in model.graph.input
        if v.name not in inits
    ]
    outputs = [
        TensorInfo(name=v.name, shape=_dims(v.type), dtype=_dtype(v.type))
        for v in model.graph.output
    ]
    return inputs, outputs


def discover_layers(model: onnx.ModelProto) -> list[LayerInfo]:
    """Every float tensor produced by a node (graph outputs excluded), in graph order."""
    try:
        inferred = onnx.shape_inference.infer_shapes(model, data_prop=True)
    except Exception:  # shape inference is best effort; fall back to declared shapes
        inferred = model
    types: dict[str, onnx.TypeProto] = {}
    for vi in list(inferred.graph.value_info) + list(inferred.graph.output):
        types[vi.name] = vi.type
    outputs = {o.name for o in model.graph.output}
    layers: list[LayerInfo] = []
    for node in inferred.graph.node:
        if node.op_type in _SKIP_OPS:
            continue
        for name in node.output:
            if not name or name in outputs:
                continue
            t = types.get(name)
            if t is None or t.tensor_type.elem_type not in (
                TensorProto.FLOAT,
                TensorProto.FLOAT16,
                TensorProto.DOUBLE,
            ):
                continue
            shape = _dims(t)
            layers.append(
                LayerInfo(name=name, op_type=node.op_type, shape=shape, spatial=len(shape) == 4)
            )
    return layers
