"""The model store: validation of uploads, versions, layers, protection of the built-in."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper

from api_schemas.models import ModelManifest
from engine.errors import (
    InvalidManifest,
    InvalidModel,
    ModelProtected,
    ModelTooLarge,
    UnknownModel,
)
from engine.models.store import ModelStore, content_version, parse_manifest
from lantern_testing.models import conv_classifier, linear_classifier, manifest


def tiny(classes: int = 2, size: int = 8, layout: str = "NCHW") -> bytes:
    shape = (classes, 3, size, size) if layout == "NCHW" else (classes, size, size, 3)
    w = np.random.default_rng(0).normal(size=shape).astype(np.float32)
    return linear_classifier(w, layout=layout).SerializeToString()


def mf(name: str = "tiny", classes: int = 2, size: int = 8, layout: str = "NCHW") -> ModelManifest:
    return ModelManifest.model_validate(
        manifest(name, size, [f"c{i}" for i in range(classes)], layout)
    )


def test_add_get_list_delete(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    data = tiny()
    info = store.add(data, mf())
    assert info.version == content_version(data, mf())
    assert store.info("tiny", info.version) == info
    assert store.get("tiny") == info
    assert [m.name for m in store.list()] == ["tiny"]
    assert store.path("tiny", info.version).read_bytes() == data
    assert info.inputs[0].name == "input" and info.inputs[0].shape == ["N", 3, 8, 8]
    assert info.outputs[0].name == "logits"
    store.delete("tiny")
    with pytest.raises(UnknownModel):
        store.get("tiny")
    assert store.list() == []


def test_new_content_is_a_new_version_and_old_files_stay(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    a = store.add(tiny(), mf())
    b = store.add(linear_classifier(np.ones((2, 3, 8, 8), np.float32)).SerializeToString(), mf())
    assert a.version != b.version
    assert store.get("tiny").version == b.version
    assert store.path("tiny", a.version).exists()
    assert store.add(tiny(), mf()).version == a.version  # same content, same version


def test_a_new_manifest_is_a_new_version_and_the_old_record_stays(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    data = tiny()
    first = store.add(data, mf())
    relabelled = ModelManifest.model_validate({**mf().model_dump(), "labels": ["cat", "dog"]})
    second = store.add(data, relabelled)
    assert second.version != first.version
    assert store.get("tiny") == second
    # a job accepted for the first version still finds its manifest and its file
    assert store.info("tiny", first.version).manifest.labels == ["c0", "c1"]
    assert store.info("tiny", second.version).manifest.labels == ["cat", "dog"]
    assert store.path("tiny", first.version).read_bytes() == data
    assert store.path("tiny", second.version).read_bytes() == data
    # one copy on disk: the new version's file is a hard link to the old one's
    assert store.path("tiny", second.version).samefile(store.path("tiny", first.version))
    # the description changes no result: same version, the record updated
    described = ModelManifest.model_validate({**relabelled.model_dump(), "description": "v2"})
    third = store.add(data, described)
    assert third.version == second.version
    assert store.get("tiny").manifest.description == "v2"


def test_a_version_without_its_own_record_gets_the_current_one(tmp_path: Path) -> None:
    # stores written before per-version records: the old version's file, no <version>.json
    store = ModelStore(tmp_path)
    old = store.add(tiny(), mf())
    (tmp_path / "tiny" / f"{old.version}.json").unlink()
    new = store.add(linear_classifier(np.ones((2, 3, 8, 8), np.float32)).SerializeToString(), mf())
    assert store.info("tiny", old.version) == new


def test_layers_are_discovered_with_shapes(tmp_path: Path) -> None:
    info = ModelStore(tmp_path).add(conv_classifier().SerializeToString(), mf("conv", 3, 16))
    layers = {layer.name: layer for layer in info.layers}
    assert layers["conv"].op_type == "Conv" and layers["conv"].shape == ["N", 4, 16, 16]
    assert layers["act"].spatial and layers["act"].op_type == "Relu"
    assert not layers["flat"].spatial
    assert "logits" not in layers


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (b"", "empty"),
        (b"\x00\x01garbage" * 100, "not a valid ONNX model|onnx.checker"),
    ],
)
def test_not_a_model(tmp_path: Path, data: bytes, match: str) -> None:
    with pytest.raises(InvalidModel, match=match):
        ModelStore(tmp_path).add(data, mf())


def test_external_data_is_refused(tmp_path: Path) -> None:
    model = linear_classifier(np.ones((2, 3, 8, 8), np.float32))
    w = model.graph.initializer[0]
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    entry = w.external_data.add()
    entry.key, entry.value = "location", "../../etc/passwd"
    with pytest.raises(InvalidModel, match="external data"):
        ModelStore(tmp_path).add(model.SerializeToString(), mf())


def test_custom_domain_is_refused(tmp_path: Path) -> None:
    model = linear_classifier(np.ones((2, 3, 8, 8), np.float32))
    model.graph.node[2].domain = "evil.ops"
    model.opset_import.append(helper.make_opsetid("evil.ops", 1))
    with pytest.raises(InvalidModel, match="custom operator domains"):
        ModelStore(tmp_path).add(model.SerializeToString(), mf())


def test_label_count_must_match(tmp_path: Path) -> None:
    with pytest.raises(InvalidManifest, match="2 classes but the manifest lists 3"):
        ModelStore(tmp_path).add(tiny(2), mf(classes=3))


def test_layout_must_match(tmp_path: Path) -> None:
    with pytest.raises(InvalidManifest, match=r"NHWC.*axis 1 should be 8"):
        ModelStore(tmp_path).add(tiny(layout="NCHW"), mf(layout="NHWC"))
    with pytest.raises(InvalidManifest, match="input_size"):
        ModelStore(tmp_path).add(tiny(size=8), mf(size=16))


def test_nhwc_model(tmp_path: Path) -> None:
    info = ModelStore(tmp_path).add(tiny(layout="NHWC"), mf(layout="NHWC"))
    assert info.inputs[0].shape == ["N", 8, 8, 3]


def test_size_limit(tmp_path: Path) -> None:
    with pytest.raises(ModelTooLarge):
        ModelStore(tmp_path, max_model_bytes=1000).add(tiny(), mf())


def test_ort_must_load_it(tmp_path: Path) -> None:
    # valid protobuf and checker-clean, but the MatMul shapes disagree at run time
    model = linear_classifier(np.ones((2, 3, 8, 8), np.float32))
    model.graph.initializer[0].CopyFrom(
        onnx.numpy_helper.from_array(np.ones((5, 2), np.float32), "W")
    )
    with pytest.raises(InvalidModel):
        ModelStore(tmp_path).add(model.SerializeToString(), mf())


def test_builtin_is_protected(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    store.add(tiny(), mf("base"), builtin=True)
    with pytest.raises(ModelProtected):
        store.delete("base")
    with pytest.raises(ModelProtected):
        store.add(tiny(), mf("base"))


def test_unknown_and_implausible_names(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    for name in ("nope", "../etc", "a/b", ""):
        with pytest.raises(UnknownModel):
            store.get(name)


def test_parse_manifest_errors_say_where() -> None:
    with pytest.raises(InvalidManifest, match="labels"):
        parse_manifest('{"name": "x"}')
    with pytest.raises(InvalidManifest, match="std"):
        parse_manifest('{"name": "x", "labels": ["a"], "std": [1, 0, 1]}')
    with pytest.raises(InvalidManifest):
        parse_manifest("not json")
    with pytest.raises(InvalidManifest, match="name"):
        parse_manifest('{"name": "../../x", "labels": ["a"]}')
