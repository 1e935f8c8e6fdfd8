"""Checks that an uploaded .onnx is safe to store and agrees with its manifest."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import onnx
import onnx.numpy_helper
import onnx.shape_inference
import onnxruntime as ort
from google.protobuf.message import DecodeError

from api_schemas.models import AnyManifest
from engine.errors import InvalidModel, ModelTooLarge
from engine.modalities.registry import modality

ALLOWED_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}
DEFAULT_MAX_TENSOR_BYTES = 256 * 1024 * 1024
"""The largest tensor an uploaded graph may create (LANTERN_MAX_MODEL_TENSOR_BYTES)."""


@dataclass(frozen=True)
class ValidatedModel:
    proto: onnx.ModelProto
    input_name: str
    output_name: str
    num_classes: int


def _has_external_data(model: onnx.ModelProto) -> bool:
    def tensor_external(t: onnx.TensorProto) -> bool:
        return t.data_location == onnx.TensorProto.EXTERNAL or len(t.external_data) > 0

    def graph_external(g: onnx.GraphProto) -> bool:
        if any(tensor_external(t) for t in g.initializer):
            return True
        for node in g.node:
            for a in node.attribute:
                if a.HasField("t") and tensor_external(a.t):
                    return True
                if any(tensor_external(t) for t in a.tensors):
                    return True
                if a.HasField("g") and graph_external(a.g):
                    return True
                if any(graph_external(sg) for sg in a.graphs):
                    return True
        return False

    return graph_external(model.graph)


def validate_model(
    data: bytes,
    manifest: AnyManifest,
    max_bytes: int,
    *,
    max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
) -> ValidatedModel:
    """Check an upload; every refusal is a typed error with a sentence.

    Before ONNX Runtime loads the model (and folds its constants), the sizes of the tensors
    the graph would create are checked without creating them (``check_tensor_sizes``).
    """
    if len(data) == 0:
        raise InvalidModel("The model file is empty. Upload a serialised ONNX model (.onnx).")
    if len(data) > max_bytes:
        raise ModelTooLarge(
            f"The model is {len(data)} bytes; the limit is {max_bytes}. Upload a smaller model.",
            details={"size": len(data), "limit": max_bytes},
        )
    try:
        proto = onnx.load_from_string(data)
    except (DecodeError, ValueError, RuntimeError) as e:
        raise InvalidModel(
            "The file is not a valid ONNX model (protobuf decoding failed). "
            "Upload the .onnx produced by your exporter.",
            details={"reason": str(e)[:300]},
        ) from None
    if len(proto.graph.node) == 0:
        raise InvalidModel("The ONNX graph has no nodes. Upload a complete model.")
    if _has_external_data(proto):
        raise InvalidModel(
            "The model references external data files, which are refused. "
            "Save it with all tensors embedded (onnx.save(..., save_as_external_data=False)).",
        )
    bad_domains = sorted({n.domain for n in proto.graph.node if n.domain not in ALLOWED_DOMAINS})
    if bad_domains:
        raise InvalidModel(
            f"The model uses custom operator domains {bad_domains} that ONNX Runtime "
            "cannot run here. Export it with standard ONNX operators.",
            details={"domains": bad_domains},
        )
    try:
        onnx.checker.check_model(proto)
    except onnx.checker.ValidationError as e:
        raise InvalidModel(
            "onnx.checker rejected the model. Fix the graph and upload it again.",
            details={"reason": str(e)[:500]},
        ) from None
    check_tensor_sizes(proto, manifest, max_tensor_bytes)
    try:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises many types; any failure means "cannot load"
        raise InvalidModel(
            "ONNX Runtime cannot load this model. Check its opset and operators.",
            details={"reason": str(e)[:500]},
        ) from None
    graph = modality(manifest.modality).check_graph(sess, manifest)
    return ValidatedModel(
        proto=proto,
        input_name=graph.input_name,
        output_name=graph.output_name,
        num_classes=graph.num_classes,
    )


# -- tensors the graph would create -----------------------------------------------------------

# Ops ONNX Runtime does not fold at load (non-deterministic, or kept for QDQ models).
_NOT_FOLDED = {
    "RandomNormal",
    "RandomNormalLike",
    "RandomUniform",
    "RandomUniformLike",
    "Multinomial",
    "Bernoulli",
    "DequantizeLinear",
    "QuantizeLinear",
}
_SMALL = 64  # elements of a constant read as a value (a shape, repeats, a Range bound)
_INLINE = 4096  # elements of a constant kept inline in the copy used for shape inference


def _itemsize(elem_type: int) -> int:
    try:
        return int(np.dtype(onnx.helper.tensor_dtype_to_np_dtype(elem_type)).itemsize)
    except (KeyError, TypeError, ValueError):
        return 1


def _elements(dims: Iterable[int]) -> int:
    n = 1
    for d in dims:
        n *= max(int(d), 0)
    return n


def _tensor_elements(t: onnx.TensorProto) -> int:
    return _elements(t.dims)


def _small_value(t: onnx.TensorProto) -> list[float] | None:
    """The values of a small numeric constant, else None (never decodes a large one)."""
    if _tensor_elements(t) > _SMALL or t.data_type in (
        onnx.TensorProto.STRING,
        onnx.TensorProto.UNDEFINED,
    ):
        return None
    try:
        arr = onnx.numpy_helper.to_array(t)
    except Exception:  # malformed: ONNX Runtime will say so
        return None
    if arr.dtype.kind not in "biuf":
        return None
    return [float(v) for v in np.asarray(arr).reshape(-1)]


@dataclass
class _Value:
    shape: list[int] | None = None
    elem_type: int = 0
    data: list[float] | None = None
    constant: bool = False


class _Sizes:
    """Static shapes of a graph's tensors: from constants, by computing the generator ops,
    and from ONNX shape inference (with the input fixed at the manifest's size)."""

    def __init__(self, inferred: dict[str, _Value]) -> None:
        self.values: dict[str, _Value] = dict(inferred)

    def get(self, name: str) -> _Value:
        return self.values.setdefault(name, _Value())

    def bytes_of(self, name: str) -> int | None:
        v = self.values.get(name)
        if v is None or v.shape is None:
            return None
        return _elements(v.shape) * _itemsize(v.elem_type or onnx.TensorProto.FLOAT)


def _attr(node: onnx.NodeProto, name: str) -> onnx.AttributeProto | None:
    found: onnx.AttributeProto | None = next((a for a in node.attribute if a.name == name), None)
    return found


def _constant_node(node: onnx.NodeProto) -> _Value:
    for a in node.attribute:
        if a.name == "value" and a.HasField("t"):
            return _Value(list(a.t.dims), a.t.data_type, _small_value(a.t), True)
        if a.name == "sparse_value" and a.HasField("sparse_value"):
            sv = a.sparse_value
            return _Value(list(sv.dims), sv.values.data_type, None, True)
        if a.name == "value_int":
            return _Value([], onnx.TensorProto.INT64, [float(a.i)], True)
        if a.name == "value_float":
            return _Value([], onnx.TensorProto.FLOAT, [float(a.f)], True)
        if a.name == "value_ints":
            return _Value([len(a.ints)], onnx.TensorProto.INT64, [float(i) for i in a.ints], True)
        if a.name == "value_floats":
            return _Value([len(a.floats)], onnx.TensorProto.FLOAT, list(a.floats), True)
    return _Value(constant=True)


def _broadcast(a: list[int], b: list[int]) -> list[int]:
    n = max(len(a), len(b))
    a = [1] * (n - len(a)) + a
    b = [1] * (n - len(b)) + b
    return [x if y == 1 else y if x == 1 else max(x, y) for x, y in zip(a, b, strict=True)]


def _generated_shape(node: onnx.NodeProto, sizes: _Sizes) -> tuple[list[int], int] | None:
    """(shape, elem_type) of what ConstantOfShape, Expand, Tile or Range create, computed
    from their constant inputs; None where the inputs are not known."""
    ins = [sizes.values.get(i, _Value()) if i else _Value() for i in node.input]
    op = node.op_type
    if op == "ConstantOfShape" and ins and ins[0].data is not None:
        value = _attr(node, "value")
        elem = value.t.data_type if value is not None and value.HasField("t") else 1
        return [int(d) for d in ins[0].data], elem
    if op == "Expand" and len(ins) == 2 and ins[1].data is not None:
        base = ins[0].shape if ins[0].shape is not None else []
        return _broadcast(base, [int(d) for d in ins[1].data]), ins[0].elem_type
    if op == "Tile" and len(ins) == 2 and ins[1].data is not None:
        reps = [int(r) for r in ins[1].data]
        base = ins[0].shape if ins[0].shape is not None else [1] * len(reps)
        if len(base) == len(reps):
            return [b * r for b, r in zip(base, reps, strict=True)], ins[0].elem_type
    if (
        op == "Range"
        and len(ins) == 3
        and all(i.data is not None and len(i.data) == 1 for i in ins)
    ):
        start, limit, delta = (i.data[0] for i in ins if i.data is not None)
        if delta != 0 and all(math.isfinite(x) for x in (start, limit, delta)):
            return [max(math.ceil((limit - start) / delta), 0)], ins[0].elem_type
    return None


def _inference_copy(proto: onnx.ModelProto, manifest: AnyManifest) -> onnx.ModelProto:
    """The graph without its large constants (they become typed inputs), the data input
    fixed at batch 1 and the manifest's size: what shape inference needs, and small."""
    g = proto.graph
    m = onnx.ModelProto()
    m.ir_version = proto.ir_version
    m.opset_import.extend(proto.opset_import)
    m.functions.extend(proto.functions)
    mg = m.graph
    mg.name = g.name
    init_names = {t.name for t in g.initializer} | {s.values.name for s in g.sparse_initializer}
    listed = {i.name for i in g.input}
    dims = modality(manifest.modality).inference_dims(manifest)
    data_inputs = [i for i in g.input if i.name not in init_names]
    for inp in g.input:
        new = mg.input.add()
        new.CopyFrom(inp)
        if dims is not None and len(data_inputs) == 1 and inp.name == data_inputs[0].name:
            tt = new.type.tensor_type
            if len(tt.shape.dim) == len(dims):
                for d, v in zip(tt.shape.dim, dims, strict=True):
                    if not (d.HasField("dim_value") and d.dim_value > 0):
                        d.Clear()
                        d.dim_value = v
    for t in g.initializer:
        if _tensor_elements(t) <= _INLINE:
            mg.initializer.append(t)
        elif t.name not in listed:
            mg.input.append(onnx.helper.make_tensor_value_info(t.name, t.data_type, t.dims))
    for s in g.sparse_initializer:
        if s.values.name not in listed:
            mg.input.append(
                onnx.helper.make_tensor_value_info(s.values.name, s.values.data_type, s.dims)
            )
    for node in g.node:
        value = _attr(node, "value") if node.op_type == "Constant" else None
        if value is not None and value.HasField("t") and _tensor_elements(value.t) > _INLINE:
            mg.input.append(
                onnx.helper.make_tensor_value_info(node.output[0], value.t.data_type, value.t.dims)
            )
            continue
        mg.node.append(node)
    mg.output.extend(g.output)
    return m


def _inferred(proto: onnx.ModelProto, manifest: AnyManifest) -> dict[str, _Value]:
    try:
        m = onnx.shape_inference.infer_shapes(
            _inference_copy(proto, manifest), check_type=False, strict_mode=False, data_prop=True
        )
    except Exception:  # inference is a help here; what it cannot do is checked below
        return {}
    out: dict[str, _Value] = {}
    for vi in [*m.graph.value_info, *m.graph.output]:
        if not vi.type.HasField("tensor_type"):
            continue
        tt = vi.type.tensor_type
        shape: list[int] | None = None
        if tt.HasField("shape") and all(d.HasField("dim_value") for d in tt.shape.dim):
            shape = [int(d.dim_value) for d in tt.shape.dim]
        out[vi.name] = _Value(shape, tt.elem_type)
    return out


def _mib(nbytes: int) -> str:
    return f"{nbytes / 2**20:.0f} MiB" if nbytes >= 2**20 else f"{nbytes} bytes"


def _too_large(
    what: str, node: str, nbytes: int, limit: int, *, total: int | None = None
) -> InvalidModel:
    cap = f"{_mib(limit)} ({limit} bytes)"
    if total is None:
        sentence = (
            f"The model's graph would create a tensor of {_mib(nbytes)} at {what} {node!r}; "
            f"the limit is {cap} per tensor."
        )
    elif total <= nbytes:
        sentence = (
            f"The model's graph would create a tensor of {_mib(nbytes)} from constants at "
            f"{what} {node!r} when it is loaded; the limit is {cap}."
        )
    else:
        sentence = (
            f"The model's graph would create {_mib(total)} of tensors from constants when it "
            f"is loaded, {_mib(nbytes)} of them at {what} {node!r}; the limit is {cap} in all."
        )
    return InvalidModel(
        f"{sentence} Remove the node or make what it creates smaller.",
        details={"node": node, "bytes": nbytes, "limit": limit, "total": total},
    )


def check_tensor_sizes(proto: onnx.ModelProto, manifest: AnyManifest, limit: int) -> None:
    """Refuse a graph that would create a tensor over ``limit`` bytes — without creating it.

    * Tensors made from constants when ONNX Runtime loads the model (constant folding:
      ConstantOfShape, Expand, Tile, Range... of constants; sparse initialisers made dense)
      may add at most ``limit`` bytes in all beyond the data the file holds.
    * Any other tensor whose size is known statically — shape inference with the input at
      the manifest's size and batch 1, or computed from constant inputs — is at most
      ``limit`` bytes.

    Dense initialisers and Constant values are exempt: their bytes are in the file, which
    ``max_bytes`` bounds.
    """
    sizes = _Sizes(_inferred(proto, manifest))
    created = [0]

    def fold(what: str, name: str, out_bytes: int, in_bytes: int) -> None:
        created[0] += max(out_bytes - in_bytes, 0)
        if created[0] > limit:
            raise _too_large(what, name, out_bytes, limit, total=created[0])

    def visit(g: onnx.GraphProto) -> None:
        graph_inputs = {i.name for i in g.input}
        for t in g.initializer:
            v = sizes.get(t.name)
            v.shape, v.elem_type, v.data = list(t.dims), t.data_type, _small_value(t)
            v.constant = t.name not in graph_inputs  # an input may override it
        for s in g.sparse_initializer:
            name = s.values.name
            v = sizes.get(name)
            v.shape, v.elem_type, v.constant = list(s.dims), s.values.data_type, True
            kept = _tensor_elements(s.values) * _itemsize(s.values.data_type)
            fold("sparse initializer", name, sizes.bytes_of(name) or 0, kept)
        for node in g.node:
            visit_node(node)
            for a in node.attribute:
                if a.HasField("g"):
                    visit(a.g)
                for sg in a.graphs:
                    visit(sg)

    def visit_node(node: onnx.NodeProto) -> None:
        standard = node.domain in ("", "ai.onnx")
        label = node.name or (node.output[0] if node.output else node.op_type)
        if standard and node.op_type == "Constant":
            for o in node.output:
                sizes.values[o] = _constant_node(node)
            return
        generated = _generated_shape(node, sizes) if standard else None
        if generated is not None and node.output:
            v = sizes.get(node.output[0])
            v.shape, v.elem_type = generated[0], generated[1] or v.elem_type
        inputs = [i for i in node.input if i]
        folded = (
            standard
            and node.op_type not in _NOT_FOLDED
            and bool(inputs)
            and all(sizes.get(i).constant for i in inputs)
            and not any(
                a.type in (onnx.AttributeProto.GRAPH, onnx.AttributeProto.GRAPHS)
                for a in node.attribute
            )
        )
        out_bytes = 0
        for o in node.output:
            nbytes = sizes.bytes_of(o) if o else None
            if nbytes is None:
                continue
            out_bytes += nbytes
            if not folded and nbytes > limit:
                raise _too_large(f"{node.op_type} node", label, nbytes, limit)
        if folded:
            for o in node.output:
                if o:
                    sizes.get(o).constant = True
            fold(
                f"{node.op_type} node",
                label,
                out_bytes,
                sum(sizes.bytes_of(i) or 0 for i in inputs),
            )

    visit(proto.graph)
