"""Build vector-Jacobian-product (VJP) models from a registered model.

ONNX Runtime evaluates models, it does not differentiate them. `build_vjp_model` derives,
with onnx-ad, a model that in one run returns

* `output`: the logits (``[batch, C]``) or any other float tensor of the graph whose first
  axis is the batch (an inner conv layer ``[batch, C, H, W]``, say),
* ``grad``: the gradient of ``sum(seed * output)`` with respect to `wrt` (``seed`` has
  the output's shape), and
* ``activation``: the value of `wrt`, when `wrt` is an inner tensor (a layer).

The graph is first cut down to what `output` needs: nodes after it never run. For an
inner layer only the *head* (the nodes between the layer and the output) is reversed, and
its adjoint is spliced onto the untouched forward graph, so the backward pass never runs
through the part of the network before the layer.

onnx-ad needs declared shapes in reverse mode, so the batch dimension is fixed to a bucket
size, shape inference runs (strict where possible) and the shape arithmetic that
torch.onnx.export emits (``Shape -> Slice -> Concat -> Cast -> Pad``) is folded to constants
before the reverse pass.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import onnx
from onnx import TensorProto, helper

from engine.errors import InvalidParams, UnknownLayer, UnsupportedModel

from . import _onnx_ad
from ._fold import fold_constants
from ._graph import (
    Namer,
    Shape,
    attr_int,
    attr_ints,
    copy_model,
    get_attr,
    infer,
    initializer_names,
    known_types,
    node_reads,
    opset_version,
    prune,
    runtime_inputs,
)

if TYPE_CHECKING:
    from .optimize import OptimizeOptions

#: Names of the tensors a gradient model adds to the original signature.
SEED = "seed"
GRAD = "grad"
ACTIVATION = "activation"
RESERVED = (SEED, GRAD, ACTIVATION)

OptimizeLevel = Literal["none", "prune", "full"]


@dataclass(frozen=True)
class GradientModel:
    """A VJP model and its signature."""

    model: onnx.ModelProto = field(repr=False)
    inputs: tuple[str, ...]     # the original runtime input(s), then ``seed``
    outputs: tuple[str, ...]    # ``output``, ``grad``, then ``activation`` for a layer
    batch: int
    wrt: str
    output: str = ""
    input_name: str = ""        # the image input fed with x by `vjp`
    #: The output's shape after the batch axis: ``(C,)`` for logits, ``(C, H, W)`` for a
    #: conv layer, ``()`` for one value per item. ``seed`` is ``[batch, *output_shape]``.
    output_shape: tuple[int, ...] = field(kw_only=True)

    @property
    def is_layer(self) -> bool:
        return ACTIVATION in self.outputs

    @property
    def seed_shape(self) -> tuple[int, ...]:
        """The shape of the ``seed`` input (and of `output`) at this model's batch."""
        return (self.batch, *self.output_shape)


# --------------------------------------------------------------------------------------
# capability check


def _float_types() -> frozenset[int]:
    return frozenset({TensorProto.FLOAT, TensorProto.DOUBLE, TensorProto.FLOAT16,
                      TensorProto.BFLOAT16})


def _float_dependents(model: onnx.ModelProto, wrt: str
                      ) -> tuple[set[str], list[onnx.NodeProto]]:
    """(tensors, nodes): the float tensors depending on `wrt` (`wrt` included) and the
    nodes reading one of them, in graph order. Unknown types count as float."""
    types = known_types(model)
    floats = _float_types()

    def is_float(name: str) -> bool:
        entry = types.get(name)
        return entry is None or entry[0] in floats

    depends = {wrt}
    forward: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node_reads(node) & depends:
            forward.append(node)
            depends.update(o for o in node.output if o and is_float(o))
    return depends, forward


def _path_nodes(model: onnx.ModelProto, wrt: str, output: str) -> list[onnx.NodeProto]:
    """Nodes an adjoint flows through: they read a float value depending on `wrt` and some
    of their outputs reach `output` (onnx-ad's own criterion for needing a rule)."""
    _, forward = _float_dependents(model, wrt)
    reaching = {output}
    path: list[onnx.NodeProto] = []
    for node in reversed(forward):
        if any(o in reaching for o in node.output if o):
            path.append(node)
            reaching |= node_reads(node)
    path.reverse()
    return path


def _node_label(node: onnx.NodeProto) -> str:
    return node.name or (node.output[0] if node.output else "?")


def _refuse(node: onnx.NodeProto, why: str, wrt: str, output: str) -> UnsupportedModel:
    return UnsupportedModel(
        f"{node.op_type} node '{_node_label(node)}' {why}; gradient methods cannot run "
        f"on this model (with respect to '{wrt}')",
        details={"op_type": node.op_type, "node": _node_label(node), "wrt": wrt,
                 "output": output})


def _attribute_problem(node: onnx.NodeProto) -> str | None:
    """Restrictions onnx-ad's rules enforce, caught here so no reverse() call has to."""
    op = node.op_type
    if op in ("Conv", "ConvTranspose", "AveragePool", "MaxPool", "LpPool"):
        auto_pad = get_attr(node, "auto_pad", "NOTSET")
        if auto_pad not in ("NOTSET", "VALID"):
            return (f"uses auto_pad={auto_pad} on an input of unknown size, which has no "
                    "gradient rule (export explicit pads)")
    if op in ("AveragePool", "LpPool") and attr_int(node, "ceil_mode", 0):
        return "uses ceil_mode=1, which has no reverse gradient rule"
    if op == "Pad" and get_attr(node, "mode", "constant") != "constant":
        return "pads with a non-constant mode, which has no reverse gradient rule"
    if op == "BatchNormalization" and attr_int(node, "training_mode", 0):
        return "runs in training mode, which has no gradient rule"
    return None


def explicit_auto_pad(model: onnx.ModelProto) -> onnx.ModelProto:
    """Replace ``auto_pad=SAME_UPPER/SAME_LOWER`` (which onnx-ad refuses; TF exports use it)
    on Conv and pooling nodes by the explicit pads it stands for, wherever the input's
    spatial size is known."""
    typed = model if len(model.graph.value_info) else infer(model, strict=False)
    types = known_types(typed)
    result = copy_model(model)
    changed = False
    for node in result.graph.node:
        if node.op_type not in ("Conv", "AveragePool", "MaxPool", "LpPool"):
            continue
        mode = get_attr(node, "auto_pad", "NOTSET")
        if mode not in ("SAME_UPPER", "SAME_LOWER"):
            continue
        shape = types.get(node.input[0], (0, None))[1]
        if shape is None or len(shape) < 3:
            continue
        spatial = len(shape) - 2
        kernel = attr_ints(node, "kernel_shape", [])
        if not kernel and node.op_type == "Conv" and len(node.input) > 1:
            weight = types.get(node.input[1], (0, None))[1]
            kernel = [int(d) for d in weight[2:] if d is not None] if weight else []
        strides = attr_ints(node, "strides", [1] * spatial)
        dilations = attr_ints(node, "dilations", [1] * spatial)
        sizes = shape[2:]
        if len(kernel) != spatial or any(d is None for d in sizes):
            continue
        begin, end = [], []
        for i in range(spatial):
            size = int(sizes[i])  # type: ignore[arg-type]
            out = -(-size // strides[i])
            total = max(0, (out - 1) * strides[i] + (kernel[i] - 1) * dilations[i] + 1 - size)
            small = total // 2
            begin.append(small if mode == "SAME_UPPER" else total - small)
            end.append(total - begin[-1])
        kept = [a for a in node.attribute if a.name not in ("auto_pad", "pads")]
        del node.attribute[:]
        node.attribute.extend(kept)
        node.attribute.append(helper.make_attribute("pads", begin + end))
        changed = True
    return result if changed else model


def _typed(model: onnx.ModelProto) -> onnx.ModelProto:
    return model if len(model.graph.value_info) else infer(model, strict=False)


def check_differentiable(model: onnx.ModelProto, *, wrt: str, output: str | None = None) -> None:
    """Raise `UnsupportedModel` naming the first node between `wrt` and `output` that
    onnx-ad cannot differentiate. Cheap: no reverse pass is attempted.

    `output` (default: the graph's first output) may be any float tensor the graph
    computes, an inner layer included; `wrt` an input or a tensor upstream of it. Refused
    before that: an `output` that is no tensor of the graph, or not a float one
    (`InvalidParams`); a `wrt` that is no tensor of the graph, a weight, or not upstream of
    `output` (`UnknownLayer`); ``wrt == output`` (`InvalidParams`).
    """
    graph = model.graph
    if output is None:
        if not graph.output:
            raise UnsupportedModel("the model has no outputs")
        output = graph.output[0].name
    typed = _typed(model)
    _check_target(typed, wrt=wrt, output=output)
    opset = opset_version(model)
    typed = explicit_auto_pad(typed)
    for node in _path_nodes(typed, wrt, output):
        if not _onnx_ad.has_reverse_rule(node.op_type, node.domain, opset):
            domain = f" (domain '{node.domain}')" if node.domain not in ("", "ai.onnx") else ""
            raise _refuse(node, f"has no gradient rule{domain}", wrt, output)
        problem = _attribute_problem(node)
        if problem is not None:
            raise _refuse(node, problem, wrt, output)


def _check_names(model: onnx.ModelProto, *, wrt: str, output: str) -> None:
    graph = model.graph
    produced = {o for n in graph.node for o in n.output if o}
    inputs = {v.name for v in runtime_inputs(graph)}
    if output not in produced and output not in inputs:
        if output in initializer_names(graph):
            raise InvalidParams(f"'{output}' is a weight, not a tensor the graph computes",
                                details={"output": output})
        raise InvalidParams(f"the model has no output '{output}'",
                            details={"output": output})
    if wrt not in produced and wrt not in inputs:
        if wrt in initializer_names(graph):
            raise UnknownLayer(f"'{wrt}' is a weight, not a layer output",
                               details={"layer": wrt})
        raise UnknownLayer(f"the model has no tensor '{wrt}'", details={"layer": wrt})
    if wrt == output:
        raise InvalidParams("wrt must differ from the output", details={"wrt": wrt})


def _check_target(typed: onnx.ModelProto, *, wrt: str, output: str) -> None:
    """`output` is a float tensor of the graph and `wrt` a tensor upstream of it (`typed`:
    the model with whatever types inference could give)."""
    _check_names(typed, wrt=wrt, output=output)
    entry = known_types(typed).get(output)
    if entry is not None and entry[0] not in _float_types():
        type_name = TensorProto.DataType.Name(entry[0])
        raise InvalidParams(
            f"output '{output}' is a {type_name} tensor; gradients need a float output",
            details={"output": output, "elem_type": type_name})
    depends, _ = _float_dependents(typed, wrt)
    if output not in depends:
        raise UnknownLayer(f"'{wrt}' is not upstream of output '{output}' (the output "
                           f"does not depend on it through float tensors)",
                           details={"layer": wrt, "output": output})


# --------------------------------------------------------------------------------------
# preparation: fixed batch, inferred shapes, folded shape arithmetic


def fixed_batch(model: onnx.ModelProto) -> int | None:
    """The batch size the model's inputs declare statically, if any."""
    for value in runtime_inputs(model.graph):
        dims = value.type.tensor_type.shape.dim
        if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0:
            return int(dims[0].dim_value)
    return None


def _set_batch(value: onnx.ValueInfoProto, batch: int) -> None:
    tensor_type = value.type.tensor_type
    if tensor_type.HasField("shape") and len(tensor_type.shape.dim) >= 1:
        dim = tensor_type.shape.dim[0]
        dim.Clear()
        dim.dim_value = batch


def prepare(model: onnx.ModelProto, *, output: str, batch: int,
            keep: Sequence[str] = ()) -> onnx.ModelProto:
    """The model restricted to `output` (and `keep`), with the batch fixed, shapes
    inferred and constant shape arithmetic folded."""
    declared = fixed_batch(model)
    if declared is not None and declared != batch:
        raise InvalidParams(
            f"the model's inputs have a fixed batch of {declared}; cannot build batch {batch}",
            details={"batch": batch, "model_batch": declared})
    result = copy_model(model)
    graph = result.graph
    types = known_types(result)
    graph.ClearField("value_info")
    for value in runtime_inputs(graph):
        _set_batch(value, batch)
    outputs = [v for v in graph.output if v.name == output]
    if not outputs:
        elem = types.get(output, (TensorProto.FLOAT, None))[0]
        outputs = [helper.make_tensor_value_info(output, elem, None)]
    kept = onnx.ValueInfoProto()
    kept.CopyFrom(outputs[0])
    _set_batch(kept, batch)
    graph.ClearField("output")
    graph.output.append(kept)
    result = prune(result, [output, *keep])
    result = infer(result)
    result = explicit_auto_pad(result)
    result = fold_constants(result)
    result = prune(result, [output, *keep])
    return infer(result)


# --------------------------------------------------------------------------------------
# the reverse pass


def _unsupported_from(error: Exception, wrt: str, output: str) -> UnsupportedModel:
    message = str(error)
    match = re.search(r"no reverse rule for (\S+) \(node '([^']*)'\)", message)
    details: dict[str, object] = {"wrt": wrt, "output": output, "reason": message}
    if match:
        details["op_type"], details["node"] = match.group(1), match.group(2)
    return UnsupportedModel(f"cannot differentiate the model: {message}", details=details)


def _value_info(name: str, elem: int, shape: Shape | None) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, elem, None if shape is None else list(shape))


def _static(types: dict[str, tuple[int, Shape | None]], name: str, what: str) -> tuple[int, ...]:
    entry = types.get(name)
    if entry is None or entry[1] is None or any(d is None for d in entry[1]):
        raise UnsupportedModel(
            f"the shape of {what} '{name}' cannot be inferred with a fixed batch; "
            "gradients need static shapes", details={"tensor": name})
    return tuple(int(d) for d in entry[1] if d is not None)


def _rename(nodes: Sequence[onnx.NodeProto], tensors: Sequence[onnx.TensorProto],
            mapping: dict[str, str]) -> None:
    if not mapping:
        return
    for node in nodes:
        for i, name in enumerate(node.input):
            if name in mapping:
                node.input[i] = mapping[name]
        for i, name in enumerate(node.output):
            if name in mapping:
                node.output[i] = mapping[name]
    for tensor in tensors:
        if tensor.name in mapping:
            tensor.name = mapping[tensor.name]


def _unsqueeze_last(value: str, out: str, opset: int, namer: Namer,
                    inits: list[onnx.TensorProto], squeeze: bool = False) -> onnx.NodeProto:
    op = "Squeeze" if squeeze else "Unsqueeze"
    if opset >= 13:
        axes = namer(f"{out}_axes")
        inits.append(helper.make_tensor(axes, TensorProto.INT64, [1], [-1]))
        return helper.make_node(op, [value, axes], [out], name=namer(f"{out}_{op.lower()}"))
    return helper.make_node(op, [value], [out], axes=[-1], name=namer(f"{out}_{op.lower()}"))


def explicit_transpose_padding(model: onnx.ModelProto) -> onnx.ModelProto:
    """Rewrite every ConvTranspose that carries both `output_shape` and `pads` into the
    explicit `pads` + `output_padding` form.

    onnx-ad emits the adjoint of a Conv (and of a padded AveragePool) as
    ``ConvTranspose(pads=<the conv's pads>, output_shape=<input size>)``. The ONNX spec --
    and ONNX Runtime -- ignore `pads` when `output_shape` is given and split the total
    padding symmetrically themselves, so with asymmetric pads (``[0, 0, 1, 1]``, as
    TF-style "SAME" exports have) the raw adjoint is shifted by a pixel. The intended
    operator keeps the conv's pads and appends `output_padding` rows at the end.
    """
    typed = infer(model, strict=False)
    shapes: dict[str, Shape | None] = {name: shape for name, (_, shape) in
                                       known_types(typed).items()}
    changed = False
    result = copy_model(model)
    for node in result.graph.node:
        if node.op_type != "ConvTranspose" or get_attr(node, "output_shape") is None:
            continue
        x = shapes.get(node.input[0])
        w = shapes.get(node.input[1])
        if x is None or w is None:
            continue
        spatial = len(x) - 2
        target = [int(v) for v in get_attr(node, "output_shape")][-spatial:]  # type: ignore[attr-defined]
        strides = attr_ints(node, "strides", [1] * spatial)
        dilations = attr_ints(node, "dilations", [1] * spatial)
        pads = attr_ints(node, "pads", [0] * (2 * spatial))
        padding = []
        for i in range(spatial):
            size, kernel = x[2 + i], w[2 + i]
            if size is None or kernel is None:
                break
            natural = strides[i] * (size - 1) + dilations[i] * (kernel - 1) + 1 \
                - pads[i] - pads[spatial + i]
            padding.append(target[i] - natural)
        if len(padding) != spatial or any(p < 0 or p >= max(strides[i], dilations[i])
                                          for i, p in enumerate(padding)):
            continue
        kept = [a for a in node.attribute if a.name not in ("output_shape", "output_padding")]
        del node.attribute[:]
        node.attribute.extend(kept)
        if any(padding):
            node.attribute.append(helper.make_attribute("output_padding", padding))
        changed = True
    return result if changed else model


def build_vjp_model(model: onnx.ModelProto, *, output: str, wrt: str, batch: int,
                    level: OptimizeLevel = "full",
                    options: OptimizeOptions | None = None) -> GradientModel:
    """The VJP model of `model` for `output` with respect to `wrt` at a fixed `batch`.

    `output` is any float tensor of the graph whose first axis is the batch: the logits,
    or an inner layer (the graph is cut after it); `wrt` the input or a tensor upstream of
    `output`. The model's ``seed`` input and its `output` have the output's shape
    ``[batch, *GradientModel.output_shape]``.

    `level` picks the optimisation: "none" keeps the raw onnx-ad graph, "prune" only
    removes dead nodes and initializers, "full" runs `optimize.optimize` with `options`
    (default: `optimize.OptimizeOptions()`; only read at level "full").

    Refused: an `output` that is no float tensor of the graph (`InvalidParams`), a `wrt`
    not upstream of it (`UnknownLayer`), an output without a leading batch axis or an op
    onnx-ad cannot differentiate on the way (`UnsupportedModel`).
    """
    if batch < 1:
        raise InvalidParams("batch must be positive", details={"batch": batch})
    _check_target(_typed(model), wrt=wrt, output=output)
    for name in RESERVED:
        if name in {output, wrt} or any(name in n.output for n in model.graph.node) or \
                name in {v.name for v in model.graph.input}:
            raise UnsupportedModel(f"the model uses the reserved tensor name '{name}'",
                                   details={"tensor": name})
    prepared = prepare(model, output=output, batch=batch, keep=[wrt])
    check_differentiable(prepared, wrt=wrt, output=output)
    graph = prepared.graph
    inputs = runtime_inputs(graph)
    input_names = [v.name for v in inputs]
    types = known_types(prepared)
    out_shape = _static(types, output, "output")
    if not out_shape or out_shape[0] != batch:
        raise UnsupportedModel(
            f"output '{output}' has shape {list(out_shape)} at batch {batch}: its first "
            "axis must be the batch", details={"output": output, "shape": list(out_shape)})
    wrt_shape = _static(types, wrt, "tensor")
    elem_out = types[output][0]
    elem_wrt = types[wrt][0]
    opset = opset_version(prepared)
    is_layer = wrt not in input_names

    if is_layer:
        head, prefix, externals = _split(prepared, wrt, output)
        head_model = _head_model(prepared, head, wrt, externals, output, types)
    else:
        head, prefix, externals = list(graph.node), [], []
        head_model = prepared
    try:
        reversed_ = _onnx_ad.reverse(head_model, wrt=wrt, output=output)
    except _onnx_ad.UnsupportedOperator as error:
        raise _unsupported_from(error, wrt, output) from error
    rgraph = explicit_transpose_padding(reversed_.model).graph

    # splice: the forward prefix, then the reversed head (primal head + adjoint)
    head_names = {o for n in head_model.graph.node for o in n.output if o}
    head_names |= {v.name for v in head_model.graph.input}
    head_names |= initializer_names(head_model.graph)
    outer_names = {o for n in prefix for o in n.output if o} | set(input_names) | \
        initializer_names(graph) | set(RESERVED)
    r_nodes = [copy_node for copy_node in _copies(rgraph.node)]
    r_inits = [t for t in _copies_t(rgraph.initializer)]
    new_names = ({o for n in r_nodes for o in n.output if o} | {t.name for t in r_inits}) \
        - head_names
    new_names.add(reversed_.seed)
    namer = Namer(outer_names | head_names | new_names)
    mapping = {name: namer(name) for name in sorted(new_names) if name in outer_names}
    _rename(r_nodes, r_inits, mapping)
    adj_seed = mapping.get(reversed_.seed, reversed_.seed)
    adj_grad = mapping.get(reversed_.gradient, reversed_.gradient)

    extra_inits: list[onnx.TensorProto] = []
    nodes = list(_copies(prefix))
    nodes.append(_unsqueeze_last(SEED, adj_seed, opset, namer, extra_inits))
    nodes.extend(r_nodes)
    nodes.append(_unsqueeze_last(adj_grad, GRAD, opset, namer, extra_inits, squeeze=True))
    outputs = [_value_info(output, elem_out, out_shape),
               _value_info(GRAD, elem_wrt, wrt_shape)]
    if is_layer:
        # the layer's tensor itself becomes the "activation" output (no copy)
        for node in nodes:
            for i, name in enumerate(node.input):
                if name == wrt:
                    node.input[i] = ACTIVATION
            for i, name in enumerate(node.output):
                if name == wrt:
                    node.output[i] = ACTIVATION
        outputs.append(_value_info(ACTIVATION, elem_wrt, wrt_shape))

    seen: set[str] = set()
    initializers: list[onnx.TensorProto] = []
    for tensor in list(_copies_t(graph.initializer)) + r_inits + extra_inits:
        if tensor.name not in seen:
            seen.add(tensor.name)
            initializers.append(tensor)
    new_graph = helper.make_graph(
        nodes, (graph.name or "model") + "_vjp",
        [*_copies_v(inputs), _value_info(SEED, elem_out, out_shape)],
        outputs, initializers)
    result = helper.make_model(new_graph, opset_imports=list(reversed_.model.opset_import),
                               ir_version=max(prepared.ir_version, 8))
    result.producer_name = "lantern-gradients"

    if level != "none":
        from .optimize import optimize, prune_dead

        result = prune_dead(result) if level == "prune" else optimize(result, options)
    return GradientModel(model=result, inputs=(*input_names, SEED),
                         outputs=(output, GRAD, ACTIVATION) if is_layer else (output, GRAD),
                         batch=batch, wrt=wrt, output=output,
                         input_name=input_names[0] if input_names else "",
                         output_shape=out_shape[1:])


def _copies(nodes: Iterable[onnx.NodeProto]) -> list[onnx.NodeProto]:
    out: list[onnx.NodeProto] = []
    for node in nodes:
        copy = onnx.NodeProto()
        copy.CopyFrom(node)
        out.append(copy)
    return out


def _copies_t(tensors: Iterable[onnx.TensorProto]) -> list[onnx.TensorProto]:
    out: list[onnx.TensorProto] = []
    for tensor in tensors:
        copy = onnx.TensorProto()
        copy.CopyFrom(tensor)
        out.append(copy)
    return out


def _copies_v(values: Sequence[onnx.ValueInfoProto]) -> list[onnx.ValueInfoProto]:
    out: list[onnx.ValueInfoProto] = []
    for value in values:
        copy = onnx.ValueInfoProto()
        copy.CopyFrom(value)
        out.append(copy)
    return out


def _split(model: onnx.ModelProto, wrt: str, output: str
           ) -> tuple[list[onnx.NodeProto], list[onnx.NodeProto], list[str]]:
    """(head, prefix, externals): the head is every node downstream of `wrt`; externals are
    the non-constant tensors the head reads from before the cut."""
    depends = {wrt}
    head: list[onnx.NodeProto] = []
    prefix: list[onnx.NodeProto] = []
    for node in model.graph.node:
        if node_reads(node) & depends:
            head.append(node)
            depends.update(o for o in node.output if o)
        else:
            prefix.append(node)
    if output not in depends:
        raise UnknownLayer(f"layer '{wrt}' does not reach output '{output}'",
                           details={"layer": wrt, "output": output})
    produced = {o for n in head for o in n.output if o}
    inits = initializer_names(model.graph)
    externals: list[str] = []
    for node in head:
        for name in sorted(node_reads(node)):
            if name not in produced and name not in inits and name != wrt \
                    and name not in externals:
                externals.append(name)
    return head, prefix, externals


def _head_model(model: onnx.ModelProto, head: list[onnx.NodeProto], wrt: str,
                externals: list[str], output: str,
                types: dict[str, tuple[int, Shape | None]]) -> onnx.ModelProto:
    reads: set[str] = set()
    for node in head:
        reads |= node_reads(node)
    inits = [t for t in model.graph.initializer if t.name in reads]
    inputs = []
    for name in [wrt, *externals]:
        elem, shape = types.get(name, (TensorProto.FLOAT, None))
        inputs.append(_value_info(name, elem, shape))
    produced = {o for n in head for o in n.output if o}
    infos = [v for v in model.graph.value_info if v.name in produced and v.name != output]
    elem, shape = types[output]
    graph = helper.make_graph(_copies(head), "head", inputs, [_value_info(output, elem, shape)],
                              _copies_t(inits), value_info=_copies_v(infos))
    result = helper.make_model(graph, opset_imports=list(model.opset_import),
                               ir_version=model.ir_version)
    return infer(result)
