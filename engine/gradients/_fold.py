"""Constant folding: Shape/Size of statically shaped tensors, and any node whose operands
are all constants, evaluated once with ``onnx.reference``.

Used twice: by the builder to turn torch.onnx.export-style shape arithmetic (a Pad whose
widths come out of Shape/Slice/Concat/Cast) into constants once the batch is fixed, and by
the optimiser to fold whatever depends on initializers only.
"""

from __future__ import annotations

import numpy as np
import onnx
from onnx import helper

from ._graph import (
    NONDETERMINISTIC,
    attr_int,
    constants,
    copy_model,
    infer,
    make_initializer,
    node_reads,
    replace_initializers,
    replace_nodes,
    static_shapes,
    subgraphs,
)


def _shape_query(node: onnx.NodeProto, shape: tuple[int, ...]) -> np.ndarray:
    if node.op_type == "Size":
        return np.array(int(np.prod(shape, dtype=np.int64)), dtype=np.int64)
    rank = len(shape)
    start = attr_int(node, "start", 0)
    end_value = None
    for attribute in node.attribute:
        if attribute.name == "end":
            end_value = int(attribute.i)
    start = max(0, min(rank, start + rank if start < 0 else start))
    end = rank if end_value is None else end_value
    end = max(0, min(rank, end + rank if end < 0 else end))
    return np.array(shape[start:end], dtype=np.int64)


def _evaluate(node: onnx.NodeProto, values: dict[str, np.ndarray],
              opsets: list[onnx.OperatorSetIdProto]) -> list[np.ndarray] | None:
    from onnx.reference import ReferenceEvaluator

    inputs = sorted(node_reads(node))
    graph = helper.make_graph(
        [node], "fold",
        [helper.make_tensor_value_info(name, helper.np_dtype_to_tensor_dtype(values[name].dtype),
                                       values[name].shape) for name in inputs],
        [helper.make_empty_tensor_value_info(name) for name in node.output if name])
    try:
        model = helper.make_model(graph, opset_imports=opsets)
        results = ReferenceEvaluator(model).run(None, {name: values[name] for name in inputs})
    except Exception:
        return None
    return [np.asarray(r) for r in results]


def fold_once(model: onnx.ModelProto, *, max_elements: int | None) -> tuple[onnx.ModelProto, int]:
    """One sweep; returns the model and how many nodes were folded.

    Folded values become initializers. `max_elements` bounds the size of a folded result
    (None: no bound), so large weight computations can be left to the runtime.
    """
    graph = model.graph
    shapes = static_shapes(model)
    values = constants(graph)
    opsets = list(model.opset_import)
    kept: list[onnx.NodeProto] = []
    new_tensors: list[onnx.TensorProto] = []
    folded = 0
    for node in graph.node:
        if node.op_type == "Constant":
            value = values.get(node.output[0]) if node.output else None
            if value is not None:
                new_tensors.append(make_initializer(value, node.output[0]))
                folded += 1
                continue
            kept.append(node)
            continue
        results: list[np.ndarray] | None = None
        if node.op_type in ("Shape", "Size") and node.input[0] not in values:
            shape = shapes.get(node.input[0])
            if shape is not None:
                results = [_shape_query(node, shape)]
        elif (node.op_type not in NONDETERMINISTIC and node.domain in ("", "ai.onnx")
              and not subgraphs(node)
              and all(name in values for name in node_reads(node))):
            results = _evaluate(node, values, opsets)
        if (
            results is not None
            and node.op_type in ("ConstantOfShape", "Expand", "Tile")
            and any(r.size > 4096 for r in results)
        ):
            results = None  # a big constant made of nothing: cheaper to make at run time
        if results is not None and (max_elements is None
                                    or all(r.size <= max_elements for r in results)):
            for name, value in zip(node.output, results, strict=False):
                if name:
                    values[name] = value
                    new_tensors.append(make_initializer(value, name))
            folded += 1
        else:
            kept.append(node)
    if not folded:
        return model, 0
    result = copy_model(model)
    replace_nodes(result, kept)
    replace_initializers(result, list(graph.initializer) + new_tensors)
    produced = {t.name for t in new_tensors}
    infos = [v for v in result.graph.value_info if v.name not in produced]
    del result.graph.value_info[:]
    result.graph.value_info.extend(infos)
    return result, folded


def fold_constants(model: onnx.ModelProto, *, max_elements: int | None = 1 << 16,
                   rounds: int = 16) -> onnx.ModelProto:
    """Fold to a fixed point, re-running shape inference between sweeps (a folded Pad
    width is what lets inference shape the Pad's output, whose Shape then folds)."""
    if not len(model.graph.value_info):
        model = infer(model)
    for _ in range(rounds):
        model, folded = fold_once(model, max_elements=max_elements)
        if not folded:
            break
        model = infer(model)
    return model
