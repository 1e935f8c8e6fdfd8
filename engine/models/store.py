"""The model store: .onnx files and their records in the data dir, shared by API and workers.

Layout::

    <root>/<name>/record.json       current version, manifest, inputs, outputs, layers
    <root>/<name>/<version>.onnx    one file per version
    <root>/<name>/<version>.json    that version's record

A version is a hash of the .onnx bytes and of the manifest's fields that change results
(all but ``description``): re-registering the same file with other preprocessing or labels
is a new version, so a job accepted before runs with the manifest it was accepted with.
Writes are atomic (temporary file + ``os.replace``), so readers in other processes never
see half a file. Old versions stay until the model is deleted, so jobs that name them
can still run.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path

import onnx
from pydantic import ValidationError

from api_schemas.errors import describe_validation_errors, validation_message
from api_schemas.models import (
    MANIFESTS,
    NAME_PATTERN,
    AnyManifest,
    BrokenModel,
    Capabilities,
    LayerInfo,
    ModelInfo,
)
from engine.errors import (
    InvalidManifest,
    ModelProtected,
    ModelRecordDamaged,
    UnknownLayer,
    UnknownModel,
    UnsupportedModel,
)
from engine.gradients import check_differentiable
from engine.models.heads import cam_head, default_cam_layer
from engine.models.layers import discover_layers, graph_io
from engine.models.validate import DEFAULT_MAX_TENSOR_BYTES, validate_model


def content_version(data: bytes, manifest: AnyManifest | None = None) -> str:
    """sha256 prefix of the model bytes and, when given, of the manifest's fields that
    change results (all but the description)."""
    digest = hashlib.sha256(data)
    if manifest is not None:
        digest.update(b"\0manifest\0")
        digest.update(manifest.model_dump_json(exclude={"description"}).encode())
    return digest.hexdigest()[:16]


def _atomic_write(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=".tmp-")
    try:
        with os.fdopen(fd, "wb") as f:
            f.write(data)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _same_bytes(path: Path, data: bytes) -> bool:
    try:
        return path.stat().st_size == len(data) and path.read_bytes() == data
    except OSError:
        return False


def _link(src: Path, dst: Path) -> bool:
    """A hard link (a new manifest for the same file stores no second copy); False where
    the file system refuses one."""
    try:
        os.link(src, dst)
    except FileExistsError:
        return True
    except OSError:
        return False
    return True


_Infos = list[ModelInfo]
_Broken = list[BrokenModel]
_Names = list[str]


def _load_record(name: str, raw: bytes) -> ModelInfo:
    """A stored record, or ModelRecordDamaged saying why it cannot be read."""
    try:
        return ModelInfo.model_validate_json(raw)
    except ValidationError as e:
        errors = describe_validation_errors(e.errors())
        version: str | None = None
        try:
            obj = json.loads(raw)
        except ValueError:
            pass
        else:
            v = obj.get("version") if isinstance(obj, dict) else None
            version = v if isinstance(v, str) else None
        reason = validation_message("the record is not valid", errors)
        raise ModelRecordDamaged(
            f"The stored record of model {name!r} is damaged ({reason.rstrip('.')}) and "
            f"cannot be used. An admin can DELETE /v1/models/{name} and register the model "
            "again.",
            details={"model": name, "version": version, "error": reason},
        ) from None


class ModelStore:
    def __init__(
        self,
        root: Path,
        max_model_bytes: int = 512 * 1024 * 1024,
        max_tensor_bytes: int = DEFAULT_MAX_TENSOR_BYTES,
    ) -> None:
        self.root = root
        self.max_model_bytes = max_model_bytes
        self.max_tensor_bytes = max_tensor_bytes
        #: parsed current records by name, with the file's identity (read-only: shared)
        self._records: dict[str, tuple[tuple[int, int, int], ModelInfo]] = {}
        root.mkdir(parents=True, exist_ok=True)

    def _dir(self, name: str) -> Path:
        return self.root / name

    def add(
        self,
        data: bytes,
        manifest: AnyManifest,
        *,
        builtin: bool = False,
        max_tensor_bytes: int | None = None,
    ) -> ModelInfo:
        """Validate and store a model; the same name with new content becomes a new version.
        ``max_tensor_bytes``: the cap on tensors the graph creates (default: the store's).

        Over a damaged record (see ``scan``) only the built-in registration writes (it
        repairs its own record at start-up); an upload is refused until an admin deletes it.
        """
        checked = validate_model(
            data,
            manifest,
            self.max_model_bytes,
            max_tensor_bytes=self.max_tensor_bytes
            if max_tensor_bytes is None
            else max_tensor_bytes,
        )
        version = content_version(data, manifest)
        try:
            current = self._read(manifest.name)
        except ModelRecordDamaged:
            if not builtin:
                raise
            current = None
        if current is not None and current.builtin and not builtin:
            raise ModelProtected(
                f"{manifest.name!r} is a built-in model and cannot be replaced. "
                "Register yours under another name.",
                details={"model": manifest.name},
            )
        if current is not None and current.version == version and current.manifest == manifest:
            return current
        inputs, outputs = graph_io(checked.proto)
        layers = discover_layers(checked.proto)
        info = ModelInfo(
            name=manifest.name,
            version=version,
            builtin=builtin,
            size_bytes=len(data),
            created_at=time.time(),
            manifest=manifest,
            output=checked.output_name,
            inputs=inputs,
            outputs=outputs,
            layers=layers,
            capabilities=capabilities(
                checked.proto, checked.input_name, checked.output_name, layers
            ),
        )
        d = self._dir(manifest.name)
        onnx_path = d / f"{version}.onnx"
        if not onnx_path.exists():
            src = d / f"{current.version}.onnx" if current is not None else None
            if not (src is not None and _same_bytes(src, data) and _link(src, onnx_path)):
                _atomic_write(onnx_path, data)
        record = info.model_dump_json().encode()
        _atomic_write(d / f"{version}.json", record)
        _atomic_write(d / "record.json", record)
        return info

    def _read(self, name: str) -> ModelInfo | None:
        """The current record; None if there is none; ModelRecordDamaged if it cannot be
        read."""
        path = self._dir(name) / "record.json"
        try:
            st = path.stat()
        except (FileNotFoundError, NotADirectoryError):
            return None
        key = (st.st_ino, st.st_mtime_ns, st.st_size)  # records are replaced, never edited
        cached = self._records.get(name)
        if cached is not None and cached[0] == key:
            return cached[1]
        try:
            raw = path.read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return None
        info = _load_record(name, raw)
        self._records[name] = (key, info)
        return info

    def get(self, name: str) -> ModelInfo:
        info = self._read(name) if _plausible_name(name) else None
        if info is None:
            raise UnknownModel(
                f"No model named {name!r}. List models with GET /v1/models or register one "
                "with POST /v1/models.",
                details={"model": name},
            )
        return info

    def info(self, name: str, version: str) -> ModelInfo:
        """The record of this version of the model: the current one's, or the one written
        when that version was registered. A version stored before per-version records
        existed gets the current record (its manifest; its inputs belong to the current
        version, which `version` then tells apart)."""
        current = self.get(name)
        if version == current.version:
            return current
        try:
            raw = (self._dir(name) / f"{version}.json").read_bytes()
        except (FileNotFoundError, NotADirectoryError):
            return current
        return _load_record(name, raw)

    def path(self, name: str, version: str) -> Path:
        p = self._dir(name) / f"{version}.onnx"
        if not p.exists():
            raise UnknownModel(
                f"Version {version} of model {name!r} is no longer stored.",
                details={"model": name, "version": version},
            )
        return p

    def list(self) -> list[ModelInfo]:
        """The models whose records can be read (see ``scan`` for the others)."""
        return self.scan()[0]

    def scan(self) -> tuple[_Infos, _Broken]:
        """(readable models, damaged records), by name. A record that cannot be read never
        hides the others."""
        models: _Infos = []
        broken: _Broken = []
        for d in sorted(self.root.iterdir()):
            if not d.is_dir() or not _plausible_name(d.name):
                continue
            try:
                info = self._read(d.name)
            except ModelRecordDamaged as e:
                broken.append(
                    BrokenModel(name=d.name, version=e.details["version"], error=e.details["error"])
                )
                continue
            except OSError as e:  # unreadable file: reported, never a failed listing
                broken.append(BrokenModel(name=d.name, error=f"the record cannot be read: {e}"))
                continue
            if info is not None:
                models.append(info)
        return models, broken

    def delete(self, name: str) -> _Names:
        """Delete the model and all its versions; the versions whose files were removed.
        A damaged record is deleted too (its builtin flag cannot be trusted; the built-in
        model registers itself again at start-up)."""
        try:
            info: ModelInfo | None = self.get(name)
        except ModelRecordDamaged:
            info = None
        if info is not None and info.builtin:
            raise ModelProtected(
                f"{name!r} is the built-in model and cannot be deleted.",
                details={"model": name},
            )
        d = self._dir(name)
        versions = sorted(p.stem for p in d.glob("*.onnx"))
        shutil.rmtree(d, ignore_errors=True)
        return versions


def capabilities(
    proto: onnx.ModelProto, input_name: str, output_name: str, layers: list[LayerInfo]
) -> Capabilities:
    refusal: str | None = None
    try:
        check_differentiable(proto, wrt=input_name, output=output_name)
    except (UnsupportedModel, UnknownLayer) as e:  # UnknownLayer: no float path (text input)
        refusal = e.message
    try:
        cam_head(proto, output_name)
        has_cam = True
    except UnsupportedModel:
        has_cam = False
    return Capabilities(
        gradients=refusal is None,
        gradients_refusal=refusal,
        cam=has_cam,
        default_layer=default_cam_layer(proto, [ly.name for ly in layers if ly.spatial]),
    )


def _plausible_name(name: str) -> bool:
    return re.fullmatch(NAME_PATTERN, name) is not None


def parse_manifest(raw: str | bytes) -> AnyManifest:
    """Parse a manifest sent by a caller, as an error with a sentence when it is wrong."""
    try:
        return MANIFESTS.validate_json(raw)
    except ValidationError as e:
        errors = describe_validation_errors(e.errors())
        raise InvalidManifest(
            validation_message("The manifest is invalid", errors, MANIFEST_HINT),
            details={"errors": errors},
        ) from None


MANIFEST_HINT = (
    "Send a JSON manifest with name, labels and its modality's fields (image, the default: "
    "layout, input_size, mean, std; see the ModelManifest schemas of /docs)."
)
