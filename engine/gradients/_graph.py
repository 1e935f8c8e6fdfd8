"""Small, typed helpers over the ONNX protobuf shared by the builder and the optimiser.

Everything here works on flat graphs (no control-flow subgraphs are rewritten, though
subgraph captures are honoured when deciding what is alive).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import onnx
from onnx import AttributeProto, TensorProto, helper, numpy_helper, shape_inference

Shape = tuple[int | None, ...]

#: Ops whose result is not a pure function of their operands: never folded.
NONDETERMINISTIC = frozenset({
    "RandomNormal", "RandomUniform", "RandomNormalLike", "RandomUniformLike",
    "Bernoulli", "Multinomial",
})


def opset_version(model: onnx.ModelProto) -> int:
    versions = [o.version for o in model.opset_import if o.domain in ("", "ai.onnx")]
    return max(versions) if versions else 18


def subgraphs(node: onnx.NodeProto) -> list[onnx.GraphProto]:
    found: list[onnx.GraphProto] = []
    for attribute in node.attribute:
        if attribute.type == AttributeProto.GRAPH:
            found.append(attribute.g)
        elif attribute.type == AttributeProto.GRAPHS:
            found.extend(attribute.graphs)
    return found


def _defines(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in graph.input}
    names.update(t.name for t in graph.initializer)
    names.update(o for n in graph.node for o in n.output if o)
    return names


def captures(graph: onnx.GraphProto) -> set[str]:
    """Outer-scope names a subgraph reads."""
    reads: set[str] = set()
    for node in graph.node:
        reads |= node_reads(node)
    reads.update(v.name for v in graph.output)
    return reads - _defines(graph) - {""}


def node_reads(node: onnx.NodeProto) -> set[str]:
    """Explicit inputs plus whatever the node's subgraphs capture."""
    reads = {name for name in node.input if name}
    for graph in subgraphs(node):
        reads |= captures(graph)
    return reads


def initializer_names(graph: onnx.GraphProto) -> set[str]:
    return {t.name for t in graph.initializer}


def runtime_inputs(graph: onnx.GraphProto) -> list[onnx.ValueInfoProto]:
    """Graph inputs that are not initializers (IR < 4 lists initializers as inputs)."""
    inits = initializer_names(graph)
    return [v for v in graph.input if v.name not in inits]


def all_names(graph: onnx.GraphProto) -> set[str]:
    names = {v.name for v in list(graph.input) + list(graph.output) + list(graph.value_info)}
    names.update(t.name for t in graph.initializer)
    for node in graph.node:
        names.update(o for o in node.output if o)
        names.update(i for i in node.input if i)
    return names


class Namer:
    """Fresh tensor names that avoid everything a graph already uses."""

    def __init__(self, taken: Iterable[str]) -> None:
        self._taken = set(taken)
        self._counter = 0

    def __call__(self, stem: str) -> str:
        if stem not in self._taken:
            self._taken.add(stem)
            return stem
        while True:
            self._counter += 1
            candidate = f"{stem}__{self._counter}"
            if candidate not in self._taken:
                self._taken.add(candidate)
                return candidate


def value_shape(value: onnx.ValueInfoProto) -> Shape | None:
    tensor_type = value.type.tensor_type
    if not tensor_type.HasField("shape"):
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None
                 for d in tensor_type.shape.dim)


def known_types(model: onnx.ModelProto) -> dict[str, tuple[int, Shape | None]]:
    """(elem_type, shape) of every value the model declares or has inferred."""
    graph = model.graph
    known: dict[str, tuple[int, Shape | None]] = {}
    for value in list(graph.input) + list(graph.output) + list(graph.value_info):
        elem = value.type.tensor_type.elem_type
        if elem:
            known[value.name] = (elem, value_shape(value))
    for tensor in graph.initializer:
        known[tensor.name] = (tensor.data_type, tuple(int(d) for d in tensor.dims))
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            value = constant_node_value(node)
            if value is not None:
                known[node.output[0]] = (
                    helper.np_dtype_to_tensor_dtype(value.dtype), tuple(value.shape))
    return known


def static_shapes(model: onnx.ModelProto) -> dict[str, tuple[int, ...]]:
    """Fully static shapes only."""
    found: dict[str, tuple[int, ...]] = {}
    for name, (_, shape) in known_types(model).items():
        if shape is not None and all(d is not None for d in shape):
            found[name] = tuple(int(d) for d in shape if d is not None)
    return found


def infer(model: onnx.ModelProto, *, strict: bool = True) -> onnx.ModelProto:
    """Shape inference with data propagation; strict first, lenient as a fallback."""
    if strict:
        try:
            return shape_inference.infer_shapes(model, strict_mode=True, data_prop=True)
        except Exception:
            pass
    try:
        return shape_inference.infer_shapes(model, strict_mode=False, data_prop=True)
    except Exception:
        return model


def constant_node_value(node: onnx.NodeProto) -> np.ndarray | None:
    for attribute in node.attribute:
        value = helper.get_attribute_value(attribute)
        if attribute.name == "value":
            return np.asarray(numpy_helper.to_array(value))
        if attribute.name == "value_int":
            return np.array(value, dtype=np.int64)
        if attribute.name == "value_ints":
            return np.array(list(value), dtype=np.int64)
        if attribute.name == "value_float":
            return np.array(value, dtype=np.float32)
        if attribute.name == "value_floats":
            return np.array(list(value), dtype=np.float32)
    return None


def constants(graph: onnx.GraphProto) -> dict[str, np.ndarray]:
    values: dict[str, np.ndarray] = {}
    for tensor in graph.initializer:
        values[tensor.name] = np.asarray(numpy_helper.to_array(tensor))
    for node in graph.node:
        if node.op_type == "Constant" and node.output:
            value = constant_node_value(node)
            if value is not None:
                values[node.output[0]] = value
    return values


def copy_model(model: onnx.ModelProto) -> onnx.ModelProto:
    result = onnx.ModelProto()
    result.CopyFrom(model)
    return result


def replace_nodes(model: onnx.ModelProto, nodes: Sequence[onnx.NodeProto]) -> None:
    """Install a node list in place (copies, so the list may alias the old field)."""
    copies = []
    for node in nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        copies.append(copy)
    model.graph.ClearField("node")
    model.graph.node.extend(copies)


def replace_initializers(model: onnx.ModelProto, tensors: Sequence[onnx.TensorProto]) -> None:
    copies = []
    for tensor in tensors:
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        copies.append(copy)
    model.graph.ClearField("initializer")
    model.graph.initializer.extend(copies)


def live_nodes(graph: onnx.GraphProto, outputs: Iterable[str]) -> list[onnx.NodeProto]:
    """The nodes some of `outputs` depend on, in their original order."""
    needed = set(outputs)
    keep: list[onnx.NodeProto] = []
    for node in reversed(list(graph.node)):
        if any(o in needed for o in node.output if o):
            keep.append(node)
            needed |= node_reads(node)
    keep.reverse()
    return keep


def prune(model: onnx.ModelProto, outputs: Sequence[str] | None = None) -> onnx.ModelProto:
    """Dead-node and dead-initializer removal (a copy).

    A node survives when some graph output (or one of `outputs`) depends on it; an
    initializer when a surviving node reads it. Runtime inputs are kept (they are the
    signature), as are value_infos of surviving values only.
    """
    result = copy_model(model)
    graph = result.graph
    wanted = [v.name for v in graph.output] if outputs is None else list(outputs)
    nodes = live_nodes(graph, wanted)
    read: set[str] = set(wanted)
    for node in nodes:
        read |= node_reads(node)
    produced = {o for n in nodes for o in n.output if o}
    replace_nodes(result, nodes)
    replace_initializers(result, [t for t in graph.initializer if t.name in read])
    inits = initializer_names(graph)
    inputs = [v for v in graph.input if v.name not in inits or v.name in read]
    if len(inputs) != len(graph.input):
        copies = [onnx.ValueInfoProto() for _ in inputs]
        for copy, value in zip(copies, inputs, strict=True):
            copy.CopyFrom(value)
        graph.ClearField("input")
        graph.input.extend(copies)
    alive = read | produced
    infos = [v for v in graph.value_info if v.name in alive]
    if len(infos) != len(graph.value_info):
        copies = [onnx.ValueInfoProto() for _ in infos]
        for copy, value in zip(copies, infos, strict=True):
            copy.CopyFrom(value)
        graph.ClearField("value_info")
        graph.value_info.extend(copies)
    return result


def get_attr(node: onnx.NodeProto, name: str, default: object = None) -> object:
    for attribute in node.attribute:
        if attribute.name == name:
            value = helper.get_attribute_value(attribute)
            return value.decode() if isinstance(value, bytes) else value
    return default


def attr_ints(node: onnx.NodeProto, name: str, default: Sequence[int]) -> list[int]:
    value = get_attr(node, name)
    if value is None:
        return list(default)
    assert isinstance(value, list)
    return [int(v) for v in value]


def attr_int(node: onnx.NodeProto, name: str, default: int) -> int:
    value = get_attr(node, name)
    return default if value is None else int(value)  # type: ignore[call-overload]


def make_initializer(array: np.ndarray, name: str) -> TensorProto:
    return numpy_helper.from_array(np.ascontiguousarray(array), name)
