"""The model store: validation of uploads, versions, layers, protection of the built-in."""

from __future__ import annotations

import json
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


# -- damaged records --------------------------------------------------------------------------


def _write_record(root: Path, name: str, raw: bytes) -> None:
    """As the store lays records out: <root>/<name>/record.json."""
    (root / name).mkdir(parents=True, exist_ok=True)
    (root / name / "record.json").write_bytes(raw)


def test_damaged_records_are_listed_apart(tmp_path: Path) -> None:
    from engine.errors import ModelRecordDamaged

    store = ModelStore(tmp_path)
    good = store.add(tiny(), mf())
    bad = good.model_dump(mode="json")
    bad["name"], bad["manifest"]["name"], bad["manifest"]["scale"] = "nulled", "nulled", None
    _write_record(tmp_path, "nulled", json.dumps(bad).encode())
    _write_record(tmp_path, "corrupt", b'{"name": "corrupt"')
    _write_record(tmp_path, "array", b"[1, 2]")
    models, broken = store.scan()
    assert [m.name for m in models] == ["tiny"] and [m.name for m in store.list()] == ["tiny"]
    assert [(b.name, b.version) for b in broken] == [
        ("array", None),
        ("corrupt", None),
        ("nulled", good.version),
    ]
    assert all(b.error for b in broken)
    for name in ("nulled", "corrupt", "array"):
        with pytest.raises(ModelRecordDamaged) as e:
            store.get(name)
        assert e.value.status == 409 and e.value.code == "model_damaged"
        assert name in e.value.message
    with pytest.raises(ModelRecordDamaged):
        store.add(tiny(), mf("corrupt"))
    assert store.delete("corrupt") == []
    assert not (tmp_path / "corrupt").exists()
    with pytest.raises(UnknownModel):
        store.get("corrupt")
    assert [b.name for b in store.scan()[1]] == ["array", "nulled"]


def test_a_damaged_version_record(tmp_path: Path) -> None:
    from engine.errors import ModelRecordDamaged

    store = ModelStore(tmp_path)
    a = store.add(tiny(), mf())
    store.add(linear_classifier(np.ones((2, 3, 8, 8), np.float32)).SerializeToString(), mf())
    (tmp_path / "tiny" / f"{a.version}.json").write_bytes(b"{")
    with pytest.raises(ModelRecordDamaged):
        store.info("tiny", a.version)
    assert len(store.delete("tiny")) == 2


def test_a_damaged_builtin_record_is_repaired_by_the_builtin_registration(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    _write_record(tmp_path, "tiny", b"{")
    info = store.add(tiny(), mf(), builtin=True)
    assert store.get("tiny") == info and store.scan()[1] == []


def test_delete_returns_the_versions_removed(tmp_path: Path) -> None:
    store = ModelStore(tmp_path)
    a = store.add(tiny(), mf())
    b = store.add(linear_classifier(np.ones((2, 3, 8, 8), np.float32)).SerializeToString(), mf())
    assert sorted(store.delete("tiny")) == sorted([a.version, b.version])


def test_non_finite_manifest_numbers_are_refused() -> None:
    for text in (
        '{"name": "x", "labels": ["a"], "scale": 1e999}',
        '{"name": "x", "labels": ["a"], "scale": NaN}',
        '{"name": "x", "labels": ["a"], "mean": [0, Infinity, 0]}',
        '{"name": "x", "labels": ["a"], "std": [1, 1, NaN]}',
    ):
        with pytest.raises(InvalidManifest, match="must be a finite number"):
            parse_manifest(text)
    with pytest.raises(ValueError, match="finite"):
        ModelManifest(name="x", labels=["a"], scale=float("inf"))
    with pytest.raises(ValueError, match="finite"):
        ModelManifest(name="x", labels=["a"], std=(1.0, float("nan"), 1.0))
