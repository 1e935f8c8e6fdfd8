"""Upload validation never materialises the tensors a small hostile graph asks for."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from api_schemas.models import ModelManifest
from engine.errors import InvalidModel
from engine.models.validate import validate_model
from lantern_testing.models import conv_classifier, linear_classifier, manifest

MB = 1024 * 1024
BIG = 1 << 30  # 1 Gi float32 elements: 4 GiB


def _mf(size: int = 8, classes: int = 2) -> ModelManifest:
    return ModelManifest.model_validate(manifest("m", size, [f"c{i}" for i in range(classes)]))


def _model(
    extra_nodes: list[onnx.NodeProto],
    extra_out: str,
    inits: list[onnx.TensorProto],
    sparse: list[onnx.SparseTensorProto] | None = None,
    opset: int = 17,
) -> onnx.ModelProto:
    """input (N,3,8,8) -> pool -> flatten -> matmul -> + ReduceSum(extra_out) -> logits (N,2)."""
    w = numpy_helper.from_array(np.ones((3, 2), np.float32), "W")
    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "W"], ["mm"], name="fc"),
        *extra_nodes,
        helper.make_node("ReduceSum", [extra_out], ["s"], name="sum", keepdims=0),
        helper.make_node("Add", ["mm", "s"], ["logits"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        initializer=[w, *inits],
        sparse_initializer=sparse or [],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def _i64(name: str, values: list[int]) -> onnx.TensorProto:
    return numpy_helper.from_array(np.asarray(values, np.int64), name)


def constant_of_shape() -> onnx.ModelProto:
    """The model of the report: ConstantOfShape of [1, 1<<30] from an initialiser."""
    return _model(
        [
            helper.make_node(
                "ConstantOfShape",
                ["shape"],
                ["big"],
                name="huge_fill",
                value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
            )
        ],
        "big",
        [_i64("shape", [1, BIG])],
    )


def constant_of_shape_from_a_constant_node() -> onnx.ModelProto:
    return _model(
        [
            helper.make_node(
                "Constant", [], ["shape"], name="shape_const", value=_i64("shape_value", [1, BIG])
            ),
            helper.make_node("ConstantOfShape", ["shape"], ["big"], name="huge_fill"),
        ],
        "big",
        [],
    )


def constant_of_shape_from_the_input() -> onnx.ModelProto:
    """The size depends on the input's shape, known once the manifest fixes it."""
    return _model(
        [
            helper.make_node("Shape", ["input"], ["in_shape"], name="shape_of"),
            helper.make_node("Mul", ["in_shape", "factor"], ["scaled"], name="scale_shape"),
            helper.make_node("ConstantOfShape", ["scaled"], ["big"], name="huge_fill"),
        ],
        "big",
        [_i64("factor", [1, 1, 4096, 4096])],
    )


def expand() -> onnx.ModelProto:
    return _model(
        [helper.make_node("Expand", ["one", "shape"], ["big"], name="huge_expand")],
        "big",
        [numpy_helper.from_array(np.ones((1,), np.float32), "one"), _i64("shape", [BIG])],
    )


def tile() -> onnx.ModelProto:
    return _model(
        [helper.make_node("Tile", ["one", "reps"], ["big"], name="huge_tile")],
        "big",
        [numpy_helper.from_array(np.ones((1, 1), np.float32), "one"), _i64("reps", [1, BIG])],
    )


def range_() -> onnx.ModelProto:
    return _model(
        [helper.make_node("Range", ["start", "limit", "delta"], ["big"], name="huge_range")],
        "big",
        [
            numpy_helper.from_array(np.asarray(0.0, np.float32), "start"),
            numpy_helper.from_array(np.asarray(float(BIG), np.float32), "limit"),
            numpy_helper.from_array(np.asarray(1.0, np.float32), "delta"),
        ],
    )


def sparse_initializer() -> onnx.ModelProto:
    values = numpy_helper.from_array(np.ones((1,), np.float32), "sparse_big")
    indices = numpy_helper.from_array(np.zeros((1,), np.int64), "idx")
    sparse = helper.make_sparse_tensor(values, indices, [BIG])
    return _model([], "sparse_big", [], sparse=[sparse])


HOSTILE = {
    "constant-of-shape": (constant_of_shape, "huge_fill"),
    "constant-of-shape-constant-node": (constant_of_shape_from_a_constant_node, "huge_fill"),
    "constant-of-shape-from-input": (constant_of_shape_from_the_input, "huge_fill"),
    "expand": (expand, "huge_expand"),
    "tile": (tile, "huge_tile"),
    "range": (range_, "huge_range"),
    "sparse-initializer": (sparse_initializer, "sparse_big"),
}


@pytest.mark.parametrize("case", list(HOSTILE))
def test_graphs_that_would_create_huge_tensors_are_refused(case: str) -> None:
    build, node = HOSTILE[case]
    data = build().SerializeToString()
    assert len(data) < 1024
    with pytest.raises(InvalidModel) as e:
        validate_model(data, _mf(), max_bytes=10 * MB, max_tensor_bytes=64 * MB)
    assert e.value.status == 422 and e.value.code == "invalid_model"
    assert node in e.value.message, e.value.message
    assert e.value.details["node"] == node
    assert e.value.details["bytes"] > 64 * MB and e.value.details["limit"] == 64 * MB


def test_small_generated_tensors_are_fine() -> None:
    model = _model(
        [helper.make_node("ConstantOfShape", ["shape"], ["small"], name="fill")],
        "small",
        [_i64("shape", [4, 4])],
    )
    checked = validate_model(model.SerializeToString(), _mf(), max_bytes=10 * MB)
    assert checked.num_classes == 2


def test_ordinary_models_pass_under_a_small_cap() -> None:
    for proto, size, classes in (
        (conv_classifier(), 16, 3),
        (linear_classifier(np.ones((2, 3, 8, 8), np.float32)), 8, 2),
    ):
        validate_model(
            proto.SerializeToString(),
            _mf(size, classes),
            max_bytes=10 * MB,
            max_tensor_bytes=1 * MB,
        )


PROBE = r"""
import json, sys
sys.path[:0] = sys.argv[2].split(":")
def status(key):
    for line in open("/proc/self/status"):
        if line.startswith(key + ":"):
            return int(line.split()[1]) * 1024
from api_schemas.models import ModelManifest
from engine.errors import InvalidModel
from engine.models.validate import validate_model
from lantern_testing.models import manifest
data = open(sys.argv[1], "rb").read()
mf = ModelManifest.model_validate(manifest("m", 8, ["a", "b"]))
try:
    open("/proc/self/clear_refs", "w").write("5")
except OSError:
    pass
before = status("VmRSS")
try:
    validate_model(data, mf, 512 * 1024 * 1024)
    outcome = {"accepted": True}
except InvalidModel as e:
    outcome = {"accepted": False, "message": e.message, "details": e.details}
outcome["added"] = status("VmHWM") - before
print(json.dumps(outcome))
"""


@pytest.mark.skipif(not Path("/proc/self/status").exists(), reason="Linux /proc needed")
def test_the_reported_model_is_refused_with_little_memory(tmp_path: Path) -> None:
    """The 889-byte-class model of the report made validation allocate 1-4 GiB and was
    accepted; with the default cap it is refused and validation stays small."""
    path = tmp_path / "hostile.onnx"
    path.write_bytes(constant_of_shape().SerializeToString())
    root = Path(__file__).resolve().parents[3]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(path), f"{root}:{root / 'tests'}"],
        capture_output=True,
        text=True,
        cwd=root,
        timeout=300,
        check=True,
        env=dict(os.environ),
    )
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["accepted"] is False, result
    assert "huge_fill" in result["message"]
    assert result["added"] < 150 * MB, f"validation added {result['added'] / MB:.0f} MiB"
