"""The restricted legacy-PyTorch-checkpoint reader, on files written by the test itself."""

from __future__ import annotations

import collections
import os
import pickle
import struct
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import pytest

from engine.models.zoo.torch_pickle import (
    LEGACY_MAGIC_NUMBER,
    LegacyFormatError,
    UnsafePickleError,
    load_legacy_state_dict,
)

SYS_INFO = {
    "protocol_version": 1001,
    "little_endian": True,
    "type_sizes": {"short": 2, "int": 4, "long": 8},
}


# --- stand-ins that pickle exactly like torch's objects ----------------------------------
# pickle writes a class/function as GLOBAL "module\nname", after checking that the object
# is reachable under that name; fake "torch" / "torch._utils" modules (installed only
# while writing, see ``fake_torch``) make that true without torch being installed.


def _make_storage_type(name: str) -> type:
    return type(name, (), {"__module__": "torch", "__qualname__": name})


FloatStorage = _make_storage_type("FloatStorage")
DoubleStorage = _make_storage_type("DoubleStorage")
LongStorage = _make_storage_type("LongStorage")


def _rebuild_tensor_v2(*args: Any) -> Any:  # never called: only its name is pickled
    raise AssertionError("stand-in must not be called")


_rebuild_tensor_v2.__module__ = "torch._utils"
_rebuild_tensor_v2.__qualname__ = "_rebuild_tensor_v2"


class FakeStorage:
    def __init__(self, key: str, storage_type: type, data: npt.NDArray[Any]) -> None:
        self.key = key
        self.storage_type = storage_type
        self.data = data


class FakeTensor:
    def __init__(
        self, storage: FakeStorage, offset: int, size: tuple[int, ...], stride: tuple[int, ...]
    ) -> None:
        self.args = (storage, offset, size, stride)

    def __reduce__(self) -> tuple[Any, ...]:
        storage, offset, size, stride = self.args
        return (
            _rebuild_tensor_v2,
            (storage, offset, size, stride, False, collections.OrderedDict()),
        )


class LegacyPickler(pickle.Pickler):
    def __init__(self, file: Any, storages: dict[str, FakeStorage]) -> None:
        super().__init__(file, protocol=2)
        self.storages = storages

    def persistent_id(self, obj: Any) -> Any:
        if isinstance(obj, FakeStorage):
            self.storages[obj.key] = obj
            return ("storage", obj.storage_type, obj.key, "cpu", obj.data.size, None)
        return None


@pytest.fixture
def fake_torch(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    torch_mod = types.ModuleType("torch")
    utils_mod = types.ModuleType("torch._utils")
    for cls in (FloatStorage, DoubleStorage, LongStorage):
        setattr(torch_mod, cls.__name__, cls)
    utils_mod._rebuild_tensor_v2 = _rebuild_tensor_v2  # type: ignore[attr-defined]
    torch_mod._utils = utils_mod  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "torch", torch_mod)
    monkeypatch.setitem(sys.modules, "torch._utils", utils_mod)
    yield


def write_legacy(
    path: Path, obj: Any, *, magic: int = LEGACY_MAGIC_NUMBER, truncate: int = 0
) -> None:
    storages: dict[str, FakeStorage] = {}
    with open(path, "wb") as f:
        pickle.dump(magic, f, protocol=2)
        pickle.dump(1001, f, protocol=2)
        pickle.dump(SYS_INFO, f, protocol=2)
        LegacyPickler(f, storages).dump(obj)
        keys = sorted(storages)
        pickle.dump(keys, f, protocol=2)
        for key in keys:
            data = storages[key].data
            f.write(struct.pack("<q", data.size))
            f.write(data.astype(data.dtype.newbyteorder("<")).tobytes())
        if truncate:
            f.truncate(f.tell() - truncate)


# --- hand-known tensors -------------------------------------------------------------------

MATRIX = np.array([[1.5, -2.0, 3.25], [4.0, 0.0, -6.5]], dtype=np.float32)


def _state_dict() -> collections.OrderedDict[str, FakeTensor]:
    shared = FakeStorage("140001", FloatStorage, MATRIX.ravel())  # row-major 2x3
    doubles = FakeStorage(
        "140002", DoubleStorage, np.array([9.0, 0.125, -1e300, 2.5], dtype=np.float64)
    )
    counter = FakeStorage("140003", LongStorage, np.array([2**40 + 7], dtype=np.int64))
    return collections.OrderedDict(
        [
            ("conv.weight", FakeTensor(shared, 0, (2, 3), (3, 1))),
            (
                "conv.weight_t",
                FakeTensor(shared, 0, (3, 2), (1, 3)),
            ),  # transposed view, same storage
            ("row1", FakeTensor(shared, 3, (3,), (1,))),  # storage offset
            ("doubles.tail", FakeTensor(doubles, 1, (3,), (1,))),
            ("bn.num_batches_tracked", FakeTensor(counter, 0, (), ())),  # 0-d tensor
        ]
    )


def test_loads_hand_known_values_exactly(tmp_path: Path, fake_torch: None) -> None:
    path = tmp_path / "tiny.pth"
    write_legacy(path, _state_dict())

    sd = load_legacy_state_dict(path)

    assert list(sd) == [
        "conv.weight",
        "conv.weight_t",
        "row1",
        "doubles.tail",
        "bn.num_batches_tracked",
    ]
    assert sd["conv.weight"].dtype == np.float32
    np.testing.assert_array_equal(sd["conv.weight"], MATRIX)
    np.testing.assert_array_equal(sd["conv.weight_t"], MATRIX.T)
    assert sd["conv.weight_t"].flags.c_contiguous
    np.testing.assert_array_equal(sd["row1"], np.array([4.0, 0.0, -6.5], dtype=np.float32))
    assert sd["doubles.tail"].dtype == np.float64
    np.testing.assert_array_equal(sd["doubles.tail"], np.array([0.125, -1e300, 2.5]))
    counter = sd["bn.num_batches_tracked"]
    assert counter.dtype == np.int64 and counter.shape == () and int(counter) == 2**40 + 7


class _Evil:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self) -> tuple[Any, ...]:
        return (os.system, (f"touch {self.marker}",))


def test_refuses_os_system(tmp_path: Path) -> None:
    marker = tmp_path / "pwned"
    path = tmp_path / "evil.pth"
    write_legacy(path, collections.OrderedDict([("x", _Evil(marker))]))

    with pytest.raises(UnsafePickleError, match="system"):
        load_legacy_state_dict(path)
    assert not marker.exists()


def test_refuses_forbidden_global_in_header(tmp_path: Path) -> None:
    path = tmp_path / "evil_header.pth"
    with open(path, "wb") as f:
        pickle.dump(_Evil(tmp_path / "pwned"), f, protocol=2)
    with pytest.raises(UnsafePickleError):
        load_legacy_state_dict(path)
    assert not (tmp_path / "pwned").exists()


def test_unsafe_pickle_error_is_plain_exception() -> None:
    assert issubclass(UnsafePickleError, Exception)
    assert not issubclass(UnsafePickleError, LegacyFormatError)


def test_rejects_bad_magic(tmp_path: Path, fake_torch: None) -> None:
    path = tmp_path / "bad_magic.pth"
    write_legacy(path, _state_dict(), magic=12345)
    with pytest.raises(LegacyFormatError, match="magic"):
        load_legacy_state_dict(path)


def test_rejects_truncated_storage(tmp_path: Path, fake_torch: None) -> None:
    path = tmp_path / "truncated.pth"
    write_legacy(path, _state_dict(), truncate=4)
    with pytest.raises(LegacyFormatError, match="end of file"):
        load_legacy_state_dict(path)


def test_rejects_zip_format(tmp_path: Path) -> None:
    path = tmp_path / "new_format.pth"
    path.write_bytes(b"PK\x03\x04" + b"\0" * 32)
    with pytest.raises(LegacyFormatError, match="zip"):
        load_legacy_state_dict(path)
