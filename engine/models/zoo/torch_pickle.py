"""Restricted reader for PyTorch's *legacy* (pre-1.6, non-zip) checkpoint format.

The file is a concatenation of:

1. a pickle of the magic number ``0x1950A86A20F9469CFC6C``,
2. a pickle of the protocol version (``1001``),
3. a pickle of a "sys info" dict (endianness, C type sizes),
4. the main pickle: typically a ``collections.OrderedDict`` of tensors.  Each
   tensor is rebuilt by ``torch._utils._rebuild_tensor_v2(storage, offset,
   size, stride, requires_grad, backward_hooks)`` whose ``storage`` argument is
   a persistent id ``('storage', storage_type, root_key, location, numel,
   view_metadata)``,
5. a pickle of the list of storage keys, and
6. for every key, in that order, an 8-byte little-endian element count
   followed by the raw little-endian element data.

This module reads such a file with numpy only -- torch is never imported.  The
unpickler is restricted: :meth:`_RestrictedUnpickler.find_class` resolves only
the handful of globals listed in ``_STORAGE_DTYPES`` / ``_SAFE_GLOBALS`` and
raises :class:`UnsafePickleError` for anything else, so a malicious checkpoint
cannot execute code while being loaded.
"""

from __future__ import annotations

import collections
import io
import os
import pickle
import struct
from dataclasses import dataclass
from typing import IO, Any

import numpy as np
import numpy.typing as npt

__all__ = [
    "LEGACY_MAGIC_NUMBER",
    "LegacyFormatError",
    "UnsafePickleError",
    "load_legacy_state_dict",
]

LEGACY_MAGIC_NUMBER = 0x1950A86A20F9469CFC6C
_LEGACY_PROTOCOL_VERSION = 1001

# torch storage class name -> numpy little-endian dtype.
_STORAGE_DTYPES: dict[str, np.dtype[Any]] = {
    "DoubleStorage": np.dtype("<f8"),
    "FloatStorage": np.dtype("<f4"),
    "HalfStorage": np.dtype("<f2"),
    "LongStorage": np.dtype("<i8"),
    "IntStorage": np.dtype("<i4"),
    "ShortStorage": np.dtype("<i2"),
    "CharStorage": np.dtype("i1"),
    "ByteStorage": np.dtype("u1"),
    "BoolStorage": np.dtype("?"),
}


class UnsafePickleError(Exception):
    """The pickle stream references a global that the restricted loader refuses."""


class LegacyFormatError(ValueError):
    """The file is not a well-formed legacy PyTorch checkpoint."""


@dataclass(frozen=True)
class _StorageType:
    """Stand-in for ``torch.FloatStorage`` & co. inside the pickle stream."""

    name: str
    dtype: np.dtype[Any]


@dataclass
class _StorageRef:
    """A (possibly viewed) storage whose bytes are read after the main pickle."""

    root_key: str
    dtype: np.dtype[Any]
    numel: int
    view_offset: int = 0
    view_numel: int | None = None


@dataclass
class _TensorRef:
    """A tensor to materialise once the storages have been read."""

    storage: _StorageRef
    offset: int
    size: tuple[int, ...]
    stride: tuple[int, ...]


def _as_int_tuple(value: object, what: str) -> tuple[int, ...]:
    if not isinstance(value, (tuple, list)) or not all(
        isinstance(v, int) and not isinstance(v, bool) for v in value
    ):
        raise LegacyFormatError(f"tensor {what} must be a tuple of ints, got {value!r}")
    return tuple(int(v) for v in value)


def _rebuild_tensor(
    storage: object, storage_offset: object, size: object, stride: object
) -> _TensorRef:
    if not isinstance(storage, _StorageRef):
        raise LegacyFormatError(
            f"tensor storage must be a persistent storage, got {type(storage).__name__}"
        )
    if not isinstance(storage_offset, int) or storage_offset < 0:
        raise LegacyFormatError(f"bad storage offset {storage_offset!r}")
    shape = _as_int_tuple(size, "size")
    strides = _as_int_tuple(stride, "stride")
    if len(shape) != len(strides) or any(s < 0 for s in shape) or any(s < 0 for s in strides):
        raise LegacyFormatError(f"inconsistent tensor size {shape} / stride {strides}")
    return _TensorRef(storage, int(storage_offset), shape, strides)


def _rebuild_tensor_v2(
    storage: object,
    storage_offset: object,
    size: object,
    stride: object,
    requires_grad: object = False,
    backward_hooks: object = None,
    metadata: object = None,
) -> _TensorRef:
    del requires_grad, backward_hooks, metadata  # irrelevant for inference weights
    return _rebuild_tensor(storage, storage_offset, size, stride)


_SAFE_GLOBALS: dict[tuple[str, str], Any] = {
    ("collections", "OrderedDict"): collections.OrderedDict,
    ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor_v2,
    ("torch._utils", "_rebuild_tensor"): _rebuild_tensor,
}


class _RestrictedUnpickler(pickle.Unpickler):
    """Unpickler that resolves only an allow-list of globals."""

    def __init__(self, file: IO[bytes], storages: dict[str, _StorageRef] | None = None) -> None:
        super().__init__(file)
        self.storages: dict[str, _StorageRef] = storages if storages is not None else {}

    def find_class(self, module: str, name: str) -> Any:
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name, _STORAGE_DTYPES[name])
        try:
            return _SAFE_GLOBALS[(module, name)]
        except KeyError:
            raise UnsafePickleError(f"refusing to load forbidden global {module}.{name}") from None

    def persistent_load(self, pid: Any) -> Any:
        if not isinstance(pid, tuple) or len(pid) != 6 or pid[0] != "storage":
            raise LegacyFormatError(f"unsupported persistent id {pid!r}")
        _, storage_type, root_key, _location, numel, view_metadata = pid
        if not isinstance(storage_type, _StorageType):
            raise LegacyFormatError(f"unsupported storage type {storage_type!r}")
        if not isinstance(root_key, str) or not isinstance(numel, int) or numel < 0:
            raise LegacyFormatError(f"bad storage descriptor {pid!r}")
        root = self.storages.get(root_key)
        if root is None:
            root = _StorageRef(root_key, storage_type.dtype, numel)
            self.storages[root_key] = root
        elif root.dtype != storage_type.dtype or root.numel != numel:
            raise LegacyFormatError(f"storage {root_key!r} declared with conflicting type or size")
        if view_metadata is None:
            return root
        # Old-style storage view: (view_key, offset, view_size).
        if (
            not isinstance(view_metadata, tuple)
            or len(view_metadata) != 3
            or not all(isinstance(v, int) for v in view_metadata[1:])
        ):
            raise LegacyFormatError(f"bad storage view metadata {view_metadata!r}")
        _view_key, view_offset, view_size = view_metadata
        if view_offset < 0 or view_size < 0 or view_offset + view_size > numel:
            raise LegacyFormatError(f"storage view {view_metadata!r} out of bounds")
        return _StorageRef(root_key, storage_type.dtype, numel, view_offset, view_size)


def _read_exact(f: IO[bytes], n: int) -> bytes:
    data = f.read(n)
    if len(data) != n:
        raise LegacyFormatError("unexpected end of file while reading storages")
    return data


def _materialise(ref: _TensorRef, buffers: dict[str, npt.NDArray[Any]]) -> npt.NDArray[Any]:
    base = buffers[ref.storage.root_key]
    start = ref.storage.view_offset
    stop = start + (
        ref.storage.view_numel if ref.storage.view_numel is not None else ref.storage.numel
    )
    flat = base[start:stop]
    if any(s == 0 for s in ref.size):
        return np.zeros(ref.size, dtype=flat.dtype)
    last = ref.offset + sum((n - 1) * s for n, s in zip(ref.size, ref.stride, strict=True))
    if last >= flat.size:
        raise LegacyFormatError(
            f"tensor of size {ref.size}, stride {ref.stride}, offset {ref.offset} "
            "overruns its storage"
        )
    itemsize = flat.dtype.itemsize
    view = np.lib.stride_tricks.as_strided(
        flat[ref.offset :],
        shape=ref.size,
        strides=tuple(s * itemsize for s in ref.stride),
        writeable=False,
    )
    # Native byte order, C-contiguous, owning its memory.
    # (np.ascontiguousarray would turn 0-d tensors into 1-d arrays.)
    return np.array(view, dtype=flat.dtype.newbyteorder("="), order="C", copy=True)


def load_legacy_state_dict(path: str | os.PathLike[str]) -> dict[str, npt.NDArray[Any]]:
    """Load a legacy-format PyTorch state dict as ``{name: numpy array}``.

    Raises :class:`UnsafePickleError` when the pickle references any global
    outside the allow-list and :class:`LegacyFormatError` for malformed or
    unsupported files (e.g. the zip-based format of torch >= 1.6).
    """
    with open(path, "rb") as fh:
        raw = fh.read()
    if raw[:2] == b"PK":
        raise LegacyFormatError(
            f"{os.fspath(path)} is a zip-format checkpoint, not the legacy format"
        )
    f = io.BytesIO(raw)
    try:
        magic = _RestrictedUnpickler(f).load()
        if magic != LEGACY_MAGIC_NUMBER:
            raise LegacyFormatError("invalid magic number: not a legacy PyTorch checkpoint")
        protocol = _RestrictedUnpickler(f).load()
        if protocol != _LEGACY_PROTOCOL_VERSION:
            raise LegacyFormatError(f"unsupported legacy protocol version {protocol!r}")
        sys_info = _RestrictedUnpickler(f).load()
        if isinstance(sys_info, dict) and sys_info.get("little_endian") is False:
            raise LegacyFormatError("big-endian checkpoints are not supported")
        storages: dict[str, _StorageRef] = {}
        result = _RestrictedUnpickler(f, storages).load()
        keys = _RestrictedUnpickler(f).load()
    except (pickle.UnpicklingError, EOFError, struct.error) as exc:
        raise LegacyFormatError(f"corrupt legacy checkpoint: {exc}") from exc

    if not isinstance(keys, list) or not all(isinstance(k, str) for k in keys):
        raise LegacyFormatError("storage key list is malformed")
    if set(keys) != set(storages) or len(keys) != len(storages):
        raise LegacyFormatError(
            "storage key list does not match the storages referenced by the pickle"
        )

    buffers: dict[str, npt.NDArray[Any]] = {}
    for key in keys:
        ref = storages[key]
        (count,) = struct.unpack("<q", _read_exact(f, 8))
        if count != ref.numel:
            raise LegacyFormatError(
                f"storage {key!r}: header says {count} elements, pickle says {ref.numel}"
            )
        data = _read_exact(f, count * ref.dtype.itemsize)
        buffers[key] = np.frombuffer(data, dtype=ref.dtype, count=count)

    if not isinstance(result, dict):
        raise LegacyFormatError(f"expected a state dict, got {type(result).__name__}")
    out: dict[str, npt.NDArray[Any]] = {}
    for name, value in result.items():
        if not isinstance(name, str) or not isinstance(value, _TensorRef):
            raise LegacyFormatError(f"state dict entry {name!r} is not a tensor")
        out[name] = _materialise(value, buffers)
    return out
