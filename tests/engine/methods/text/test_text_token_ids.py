"""A token-id text model (onnx.helper: an embedding bag, one score per class): it
registers, and occlusion and exact KernelSHAP equal each word's hand-computed term."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from api_schemas.modalities.text import TextManifest
from engine.errors import InvalidManifest
from engine.methods.base import no_progress
from engine.methods.registry import get_method
from engine.models.runtime import GraphIO, LoadedModel, RuntimeOptions
from engine.models.validate import validate_model
from engine.objectives import ClassScore

VOCAB = ["<pad>", "<unk>", "good", "bad", "film", "very"]
EMB = np.array(
    [[0, 0], [0.1, -0.1], [-1, 2], [1.5, -1], [0, 0.25], [0.5, 0.5]], np.float32
)  # one score per class and token; pad contributes nothing
L = 8


def bag_model(length: int = L) -> bytes:
    ids = helper.make_tensor_value_info("ids", TensorProto.INT64, [None, length])
    out = helper.make_tensor_value_info("logits", TensorProto.FLOAT, [None, 2])
    nodes = [
        helper.make_node("Gather", ["emb", "ids"], ["vecs"]),
        helper.make_node("ReduceSum", ["vecs", "axis"], ["logits"], keepdims=0),
    ]
    graph = helper.make_graph(
        nodes,
        "bag",
        [ids],
        [out],
        [numpy_helper.from_array(EMB, "emb"), numpy_helper.from_array(np.array([1]), "axis")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    onnx.checker.check_model(model)
    return model.SerializeToString()


def manifest(**kw: object) -> TextManifest:
    return TextManifest.model_validate(
        {
            "name": "bag",
            "modality": "text",
            "labels": ["neg", "pos"],
            "input": "token_ids",
            "vocabulary": VOCAB,
            "unk_id": 1,
            "max_tokens": L,
            "scores": "logits",
            **kw,
        }
    )


def test_token_id_model_registers_and_is_explained(tmp_path: Path) -> None:
    data = bag_model()
    checked = validate_model(data, manifest(), 10**7)
    assert (checked.input_name, checked.output_name) == ("ids", "logits")
    path = tmp_path / "bag.onnx"
    path.write_bytes(data)
    model = LoadedModel("bag", "v", path, manifest(), RuntimeOptions(), io=GraphIO("ids", "logits"))
    item = model.codec.item("Good film, very very good! odd")
    assert item.words == ["Good", "film", "very", "odd"]  # "good" is "Good"
    objective = ClassScore(index=1, score="logit", label="pos")
    # the words' terms by hand: count × embedding[token][pos]; "odd" is <unk>
    expect = np.array([2 * 2.0, 0.25, 2 * 0.5, -0.1])
    for method, params in (("occlusion", {}), ("kernel_shap", {"num_samples": 1000})):
        spec = get_method(method, "text")
        result = spec.fn(model, item, objective, spec.parse_params(params), no_progress)
        np.testing.assert_allclose(result.artifacts[0].values, expect, atol=1e-5)


def test_token_id_length_must_match_the_graph() -> None:
    with pytest.raises(InvalidManifest, match="max_tokens"):
        validate_model(bag_model(length=5), manifest(), 10**7)
