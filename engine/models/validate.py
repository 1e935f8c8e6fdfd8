"""Checks that an uploaded .onnx is safe to store and agrees with its manifest."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnx
import onnxruntime as ort
from google.protobuf.message import DecodeError

from api_schemas.models import ModelManifest
from engine.errors import InvalidManifest, InvalidModel, ModelTooLarge

ALLOWED_DOMAINS = {"", "ai.onnx", "ai.onnx.ml", "com.microsoft"}


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


def validate_model(data: bytes, manifest: ModelManifest, max_bytes: int) -> ValidatedModel:
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
    try:
        so = ort.SessionOptions()
        so.intra_op_num_threads = 1
        sess = ort.InferenceSession(data, so, providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises many types; any failure means "cannot load"
        raise InvalidModel(
            "ONNX Runtime cannot load this model. Check its opset and operators.",
            details={"reason": str(e)[:500]},
        ) from None
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise InvalidModel(
            f"The model has {len(inputs)} inputs; image models must take exactly one input tensor.",
            details={"inputs": [i.name for i in inputs]},
        )
    inp = inputs[0]
    if inp.type != "tensor(float)":
        raise InvalidModel(
            f"The model input is {inp.type}; Lantern feeds float32 images.",
            details={"input_type": inp.type},
        )
    shape = list(inp.shape)
    if len(shape) != 4:
        raise InvalidManifest(
            f"The model input has rank {len(shape)}; an image model takes a rank-4 "
            "tensor (NCHW or NHWC).",
            details={"input_shape": shape},
        )
    h, w = manifest.input_size
    expect = [None, 3, h, w] if manifest.layout == "NCHW" else [None, h, w, 3]
    for axis, (got, want) in enumerate(zip(shape, expect, strict=True)):
        if want is not None and isinstance(got, int) and got != want:
            raise InvalidManifest(
                f"The model input has shape {shape}, but the manifest says "
                f"{manifest.layout} with input_size {list(manifest.input_size)} "
                f"(axis {axis} should be {want}). Fix the manifest's layout or input_size.",
                details={"input_shape": shape, "layout": manifest.layout},
            )
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 1
    dummy_shape = [batch, 3, h, w] if manifest.layout == "NCHW" else [batch, h, w, 3]
    try:
        out = sess.run(None, {inp.name: np.zeros(dummy_shape, dtype=np.float32)})[0]
    except Exception as e:
        raise InvalidModel(
            "The model failed on a test input of the manifest's size. Check input_size and layout.",
            details={"reason": str(e)[:500]},
        ) from None
    arr = np.asarray(out)
    num_classes = int(arr.size // max(batch, 1))
    if num_classes != len(manifest.labels):
        raise InvalidManifest(
            f"The model's first output has {num_classes} classes but the manifest lists "
            f"{len(manifest.labels)} labels. Give exactly one label per output class.",
            details={"outputs": num_classes, "labels": len(manifest.labels)},
        )
    return ValidatedModel(
        proto=proto,
        input_name=inp.name,
        output_name=sess.get_outputs()[0].name,
        num_classes=num_classes,
    )
