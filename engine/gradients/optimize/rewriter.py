"""The core every rewrite pass shares: `Rewriter`, a mutable node list over a model with
static shapes and known constants, and `rewrite`, which applies a node rule to a fixed
point."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import onnx
from onnx import helper

from .._graph import (
    Namer,
    all_names,
    constants,
    copy_model,
    infer,
    make_initializer,
    prune,
    replace_initializers,
    replace_nodes,
    static_shapes,
)

#: A rewrite rule: the nodes replacing `node` (possibly none), or None to keep it.
Rule = Callable[["Rewriter", onnx.NodeProto], "list[onnx.NodeProto] | None"]


class Rewriter:
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


def rewrite(model: onnx.ModelProto, rule: Rule, rounds: int = 8) -> onnx.ModelProto:
    """Apply `rule` to every node (it returns a replacement list or None) to a fixed point."""
    for _ in range(rounds):
        state = Rewriter(model)
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
