"""The dataset store: uploads (zips), directories under a configured root, built-ins.

Layout under ``data_dir/datasets/<name>/``::

    record.json            the current version's DatasetInfo
    <version>.json         each version's DatasetInfo
    <version>/index.json   the images: id, path, label, width, height, bytes
    <version>/files/...    the images of an upload or a built-in (a directory's stay put)

A version is the hash of every image's path, label and bytes: the same content is the
same version. An upload is unpacked into a temporary directory and moved into place with
one rename after every check passed, then the record is written: a refused upload leaves
nothing behind.
"""

from __future__ import annotations

import collections
import csv
import hashlib
import io
import json
import os
import re
import shutil
import socket
import tempfile
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from api_schemas.datasets import DatasetInfo, ImageSizes, RejectedFile
from engine.datasets.activations import ActivationCache
from engine.datasets.archive import ArchiveLimits, entries, open_archive
from engine.errors import (
    DatasetPathForbidden,
    DatasetProtected,
    DatasetTooLarge,
    InvalidArchive,
    InvalidImages,
    InvalidInput,
    UnknownDataset,
)

NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")
INDEX_NAMES = ("index.csv", "index.json")
FORMATS = frozenset({"PNG", "JPEG", "GIF", "BMP", "TIFF", "WEBP", "PPM"})
_IGNORED = re.compile(r"(^|/)(__MACOSX|\.[^/]*)(/|$)")


@dataclass(frozen=True)
class DatasetLimits:
    archive: ArchiveLimits
    max_images: int
    max_pixels: int  # all images together
    max_image_pixels: int  # one image


@dataclass(frozen=True)
class Entry:
    path: str
    label: str | None
    width: int
    height: int
    bytes: int
    sha256: str


def _check_name(name: str) -> str:
    if not NAME.match(name):
        raise InvalidInput(
            f"{name[:80]!r} is not a dataset name: use 1-64 letters, digits, '.', '_' or '-', "
            "starting with a letter or digit.",
            details={"field": "name"},
        )
    return name


def _sniff(data: bytes, max_pixels: int) -> tuple[int, int] | tuple[str, str]:
    """(width, height) of an image, or (code, reason) why it is none."""
    try:
        with Image.open(io.BytesIO(data)) as img:
            fmt, (w, h) = img.format, img.size
            if fmt not in FORMATS:
                return "not_an_image", f"format {fmt} is not accepted"
            if w * h > max_pixels:
                return "image_too_large", f"{w}x{h} is more than {max_pixels} pixels"
            img.verify()
    except Image.DecompressionBombError:
        return "image_too_large", "more pixels than the decoder allows"
    except Exception:
        return "not_an_image", "not a readable image (PNG, JPEG, GIF, BMP, TIFF, WebP)"
    return int(w), int(h)


def _labels_from_index(name: str, raw: bytes) -> dict[str, str | None]:
    try:
        text = raw.decode("utf-8-sig")
        if name.lower().endswith(".json"):
            obj = json.loads(text)
            if isinstance(obj, dict):
                return {str(k): None if v is None else str(v) for k, v in obj.items()}
            if isinstance(obj, list):
                return {str(r["path"]): None if r.get("label") is None else str(r["label"])
                        for r in obj}
            raise ValueError("not a list or object")
        rows = list(csv.DictReader(io.StringIO(text)))
        if rows and "path" not in rows[0]:
            raise ValueError("no 'path' column")
        return {r["path"]: (r.get("label") or None) for r in rows}
    except (ValueError, KeyError, TypeError, AttributeError, UnicodeDecodeError) as e:
        raise InvalidArchive(
            f"The index {name!r} could not be read ({e}). Give a CSV with a header "
            '"path,label", or JSON [{"path": ..., "label": ...}] or {path: label}.',
            details={"index": name},
        ) from None


def _folder_labels(paths: list[str]) -> dict[str, str | None]:
    """One folder per class: every image one folder deep (below one shared top folder, if
    all are) -> the folder's name; else no labels."""
    parts = [p.split("/") for p in paths]
    if parts and all(len(p) >= 2 for p in parts) and len({p[0] for p in parts}) == 1:
        if all(len(p) == 3 for p in parts):
            return {"/".join(p): p[1] for p in parts}
    if parts and all(len(p) == 2 for p in parts):
        return {"/".join(p): p[0] for p in parts}
    return dict.fromkeys(paths)


def _version(items: list[Entry]) -> str:
    h = hashlib.sha256()
    for e in sorted(items, key=lambda e: e.path):
        h.update(json.dumps([e.path, e.label, e.sha256]).encode())
    return h.hexdigest()[:16]


def _sizes(items: list[Entry]) -> ImageSizes:
    ws = [e.width for e in items]
    hs = [e.height for e in items]
    common = collections.Counter(f"{e.width}x{e.height}" for e in items).most_common(10)
    return ImageSizes(min_width=min(ws), max_width=max(ws), min_height=min(hs),
                      max_height=max(hs), common=dict(common))


class DatasetReader:
    """A dataset's images by index: bytes, decoded images, pixels at a model's size.

    Holds the index only (paths, labels, sizes); images are read when asked for, so a
    worker holds no more than the chunk it works on."""

    def __init__(self, info: DatasetInfo, base: Path, index: list[dict[str, Any]]) -> None:
        self.info = info
        self.base = base
        self.index = index
        self.activations: ActivationCache | None = None
        self.classes = list(info.classes)
        pos = {c: i for i, c in enumerate(self.classes)}
        self.labels: NDArray[np.int64] = np.asarray(
            [pos.get(r["label"], -1) if r["label"] is not None else -1 for r in index], np.int64
        )

    @property
    def name(self) -> str:
        return self.info.name

    @property
    def version(self) -> str:
        return self.info.version

    def __len__(self) -> int:
        return len(self.index)

    def ids(self) -> list[str]:
        return [str(r["path"]) for r in self.index]

    def read(self, i: int) -> bytes:
        return (self.base / str(self.index[i]["path"])).read_bytes()

    def image(self, i: int) -> Image.Image:
        """Image ``i`` as RGB."""
        with Image.open(io.BytesIO(self.read(i))) as img:
            img.load()
            return img.convert("RGB")


class DatasetStore:
    def __init__(
        self,
        root: Path,
        limits: DatasetLimits,
        dataset_roots: list[Path],
        activations: ActivationCache | None = None,
        *,
        stale_s: float = 3600.0,
    ) -> None:
        self.root = Path(root)
        #: Where analyses keep activations (shared by the readers of this store).
        self.activations = activations or ActivationCache(self.root.parent / "activations", 256)
        self.limits = limits
        self.dataset_roots = [Path(r) for r in dataset_roots]
        self._readers: dict[tuple[str, str], DatasetReader] = {}
        self.stale_s = stale_s
        self.swept = self.sweep()

    # scratch left by a crashed process ----------------------------------------------------
    def sweep(self) -> list[Path]:
        """Remove what a process that died mid-way left in the store: an upload's temporary
        directory, a deleted dataset's trash, a record's temporary file. Called when the
        store opens. Scratch of this host whose process is gone goes at once; other scratch
        (another host's, or a live process's: a concurrent upload) only once nothing in it
        changed for ``stale_s`` seconds. The paths removed."""
        gone: list[Path] = []
        if not self.root.is_dir():
            return gone
        now = time.time()
        for entry in _scandir(self.root):
            if entry.name.startswith("."):
                if _stale(Path(entry.path), now, self.stale_s):
                    _remove(Path(entry.path))
                    gone.append(Path(entry.path))
            elif entry.is_dir(follow_symlinks=False):
                for f in _scandir(Path(entry.path)):  # a record's temp file (_atomic_write)
                    if f.name.startswith(".") and _stale(Path(f.path), now, self.stale_s):
                        _remove(Path(f.path))
                        gone.append(Path(f.path))
        return gone

    # reading ------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        return self.root / _check_name(name)

    def get(self, name: str) -> DatasetInfo:
        path = self._dir(name) / "record.json"
        try:
            return DatasetInfo.model_validate_json(path.read_bytes())
        except FileNotFoundError:
            raise UnknownDataset(
                f"No dataset {name!r}. See GET /v1/datasets for the registered ones.",
                details={"dataset": name},
            ) from None

    def info(self, name: str, version: str) -> DatasetInfo:
        try:
            return DatasetInfo.model_validate_json(
                (self._dir(name) / f"{version}.json").read_bytes()
            )
        except FileNotFoundError:
            raise UnknownDataset(
                f"Dataset {name!r} has no version {version!r} (deleted?).",
                details={"dataset": name, "version": version},
            ) from None

    def all(self) -> list[DatasetInfo]:
        out: list[DatasetInfo] = []
        if not self.root.is_dir():
            return out
        for d in sorted(self.root.iterdir()):
            rec = d / "record.json"
            if d.name.startswith(".") or not rec.is_file():
                continue
            try:
                out.append(DatasetInfo.model_validate_json(rec.read_bytes()))
            except ValueError:
                continue
        return out

    def reader(self, name: str, version: str | None = None) -> DatasetReader:
        info = self.get(name) if version is None else self.info(name, version)
        key = (info.name, info.version)
        cached = self._readers.get(key)
        if cached is not None:
            return cached
        vdir = self._dir(name) / info.version
        index = json.loads((vdir / "index.json").read_text())
        base = Path(info.root) if info.root is not None else vdir / "files"
        reader = DatasetReader(info, base, index)
        reader.activations = self.activations
        self._readers[key] = reader
        return reader

    def delete(self, name: str) -> DatasetInfo:
        info = self.get(name)
        if info.builtin:
            raise DatasetProtected(
                f"{name!r} is a built-in dataset and cannot be deleted.",
                details={"dataset": name},
            )
        d = self._dir(name)
        versions = [p.stem for p in d.glob("*.json") if p.name != "record.json"]
        trash = self.root / f"{_scratch_prefix('deleted')}{name}-{time.monotonic_ns()}"
        os.replace(d, trash)
        shutil.rmtree(trash, ignore_errors=True)
        shared = {i.version for i in self.all()}  # another name with the same content
        for v in set(versions) - shared:  # its activations, for every model
            for acts in self.activations.root.glob(f"*/{v}"):
                shutil.rmtree(acts, ignore_errors=True)
        self._readers = {k: v for k, v in self._readers.items() if k[0] != name}
        return info

    # writing ------------------------------------------------------------------------
    def add_zip(
        self, name: str, data: bytes, *, index: str | None = None, strict: bool = False,
        description: str = "",
    ) -> DatasetInfo:
        """Register an uploaded zip (see the module doc); refused whole, or not at all."""
        _check_name(name)
        self._protect(name)
        zf = open_archive(data, self.limits.archive)
        files = dict(entries(zf))
        return self._ingest(name, files.items(), index, strict, "upload", description, None)

    def add_directory(
        self, name: str, path: str, *, index: str | None = None, strict: bool = False,
        description: str = "",
    ) -> DatasetInfo:
        """Register a directory in place: it must lie under one of ``dataset_roots``."""
        _check_name(name)
        self._protect(name)
        root = self._allowed(path)
        files: list[tuple[str, bytes]] = []
        for dirpath, dirnames, filenames in os.walk(root, followlinks=False):
            dirnames.sort()
            for f in [*dirnames, *sorted(filenames)]:
                full = Path(dirpath) / f
                if f in dirnames and not full.is_symlink():
                    continue
                rel = full.relative_to(root).as_posix()
                if full.is_symlink():
                    target = full.resolve()
                    if not target.is_relative_to(root):
                        raise DatasetPathForbidden(
                            f"{rel!r} is a link to outside the directory. Register a "
                            "directory whose files lie inside it.",
                            details={"path": rel, "reason": "symlink"},
                        )
                if full.is_file():
                    files.append((rel, full.read_bytes()))
        return self._ingest(name, files, index, strict, "directory", description, root)

    def add_files(
        self, name: str, files: Iterable[tuple[str, bytes]], *, builtin: bool,
        description: str = "",
    ) -> DatasetInfo:
        """Register (path, bytes) pairs (a built-in dataset's images)."""
        _check_name(name)
        return self._ingest(name, files, None, True, "builtin" if builtin else "upload",
                            description, None, builtin=builtin)

    def adopt(self, info: DatasetInfo, other: DatasetStore) -> DatasetInfo:
        """Register ``other``'s dataset version here in place: the index is copied, the
        images stay where ``other`` keeps them (the record's ``root``)."""
        src = other._dir(info.name) / info.version
        root = Path(info.root) if info.root is not None else src / "files"
        try:
            current = self.get(info.name)
            if current.version == info.version and current.root == str(root):
                return current
        except UnknownDataset:
            pass
        d = self._dir(info.name)
        (d / info.version).mkdir(parents=True, exist_ok=True)
        _atomic_write(d / info.version / "index.json", (src / "index.json").read_bytes())
        adopted = info.model_copy(update={"root": str(root)})
        record = adopted.model_dump_json().encode()
        _atomic_write(d / f"{info.version}.json", record)
        _atomic_write(d / "record.json", record)
        self._readers.pop((info.name, info.version), None)
        return adopted

    def _protect(self, name: str) -> None:
        try:
            current = self.get(name)
        except UnknownDataset:
            return
        if current.builtin:
            raise DatasetProtected(
                f"{name!r} is a built-in dataset and cannot be replaced. Use another name.",
                details={"dataset": name},
            )

    def _allowed(self, path: str) -> Path:
        if not self.dataset_roots:
            raise DatasetPathForbidden(
                "Registering directories is off: the server has no dataset roots "
                "(LANTERN_DATASET_ROOTS). Upload a zip instead.",
                details={"path": path[:300]},
            )
        target = Path(path).resolve()
        for r in self.dataset_roots:
            if target.is_relative_to(r.resolve()) and target.is_dir():
                return target
        raise DatasetPathForbidden(
            f"{path[:300]!r} is not a directory under a dataset root "
            f"({', '.join(str(r) for r in self.dataset_roots)}).",
            details={"path": path[:300]},
        )

    def _ingest(
        self,
        name: str,
        files: Iterable[tuple[str, bytes]],
        index: str | None,
        strict: bool,
        source: Literal["upload", "directory", "builtin"],
        description: str,
        root: Path | None,
        builtin: bool = False,
    ) -> DatasetInfo:
        all_files = {p: b for p, b in files if not _IGNORED.search(p)}
        idx_name = index if index is not None else next(
            (n for n in INDEX_NAMES if n in all_files), None
        )
        labels: dict[str, str | None]
        rejected: list[RejectedFile] = []
        if idx_name is not None:
            if idx_name not in all_files:
                raise InvalidArchive(
                    f"The index {idx_name!r} is not in the dataset.",
                    details={"index": idx_name},
                )
            labels = _labels_from_index(idx_name, all_files.pop(idx_name))
            for p in list(labels):
                if p not in all_files:
                    rejected.append(RejectedFile(path=p, code="missing",
                                                 reason="listed in the index, not present"))
                    labels.pop(p)
            candidates = list(labels)
        else:
            candidates = sorted(all_files)
            labels = {}
        images: list[tuple[str, bytes, int, int]] = []
        for p in candidates:
            sniffed = _sniff(all_files[p], self.limits.max_image_pixels)
            if isinstance(sniffed[0], str):
                rejected.append(RejectedFile(path=p, code=str(sniffed[0]), reason=str(sniffed[1])))
                continue
            images.append((p, all_files[p], int(sniffed[0]), int(sniffed[1])))
        if idx_name is None:
            labels = _folder_labels([p for p, *_ in images])
        if rejected and strict:
            raise InvalidImages(
                f"{len(rejected)} file(s) of the dataset are not usable images (the first: "
                f"{rejected[0].path!r}, {rejected[0].reason}). Remove them, or upload without "
                "`strict` to keep the rest.",
                details={"rejected": [r.model_dump() for r in rejected[:1000]]},
            )
        if not images:
            raise InvalidImages(
                "The dataset holds no usable images. Send PNG, JPEG, GIF, BMP, TIFF or WebP "
                "files.",
                details={"rejected": [r.model_dump() for r in rejected[:1000]]},
            )
        if len(images) > self.limits.max_images:
            raise DatasetTooLarge(
                f"The dataset has {len(images)} images; the limit is {self.limits.max_images}.",
                details={"limit": "images", "images": len(images), "max": self.limits.max_images},
            )
        pixels = sum(w * h for _, _, w, h in images)
        if pixels > self.limits.max_pixels:
            raise DatasetTooLarge(
                f"The dataset's images have {pixels} pixels together; the limit is "
                f"{self.limits.max_pixels}.",
                details={"limit": "pixels", "pixels": pixels, "max": self.limits.max_pixels},
            )
        items = [Entry(p, labels.get(p), w, h, len(b), hashlib.sha256(b).hexdigest())
                 for p, b, w, h in images]
        version = _version(items)
        counts = collections.Counter(e.label for e in items if e.label is not None)
        classes = sorted(counts, key=_natural)
        info = DatasetInfo(
            name=name, version=version, source=source,
            builtin=builtin, created_at=time.time(), count=len(items), classes=classes,
            class_counts={c: counts[c] for c in classes},
            unlabelled=sum(1 for e in items if e.label is None), sizes=_sizes(items),
            pixels=pixels, bytes=sum(e.bytes for e in items),
            root=None if root is None else str(root), description=description,
            rejected=rejected[:1000],
        )
        self._commit(info, items, None if root is not None else dict(
            (p, b) for p, b, _, _ in images))
        return info

    def _commit(
        self, info: DatasetInfo, items: list[Entry], files: dict[str, bytes] | None
    ) -> None:
        d = self._dir(info.name)
        vdir = d / info.version
        existing = d / f"{info.version}.json"
        if not (vdir / "index.json").is_file():
            self.root.mkdir(parents=True, exist_ok=True)
            tmp = Path(tempfile.mkdtemp(prefix=_scratch_prefix("upload"), dir=self.root))
            try:
                if files is not None:
                    for p, b in files.items():
                        out = tmp / "files" / p
                        if not out.resolve().is_relative_to(tmp.resolve()):
                            raise InvalidArchive(f"unsafe path {p!r}")  # pragma: no cover
                        out.parent.mkdir(parents=True, exist_ok=True)
                        out.write_bytes(b)
                index = [{"id": i, "path": e.path, "label": e.label, "width": e.width,
                          "height": e.height, "bytes": e.bytes} for i, e in enumerate(items)]
                (tmp / "index.json").write_text(json.dumps(index))
                d.mkdir(parents=True, exist_ok=True)
                try:
                    os.replace(tmp, vdir)
                except OSError:  # another process committed the same version first
                    if not (vdir / "index.json").is_file():
                        raise
            finally:
                shutil.rmtree(tmp, ignore_errors=True)
        elif existing.is_file():
            old = DatasetInfo.model_validate_json(existing.read_bytes())
            info.created_at = old.created_at
        record = info.model_dump_json().encode()
        _atomic_write(d / f"{info.version}.json", record)
        _atomic_write(d / "record.json", record)
        self._readers.pop((info.name, info.version), None)


def _natural(label: str) -> tuple[int, int | str]:
    return (0, int(label)) if label.isdigit() else (1, label)


def _atomic_write(path: Path, payload: bytes) -> None:
    fd, tmp = tempfile.mkstemp(prefix=_scratch_prefix(path.name), dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(payload)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _host() -> str:
    """This host's tag in scratch names: its name and its pid namespace (two containers of
    one name sharing a volume still tell their processes apart)."""
    name = re.sub(r"[^A-Za-z0-9]", "", socket.gethostname())[:40] or "host"
    try:
        return f"{name}{os.stat('/proc/self/ns/pid').st_ino}"
    except OSError:
        return name


_HOST = _host()
_SCRATCH = re.compile(r"^\.[^~]*~(?P<host>[A-Za-z0-9]+)~(?P<pid>\d+)~")


def _scratch_prefix(what: str) -> str:
    """A temporary name that says which host and process made it (see DatasetStore.sweep)."""
    return f".{what}~{_HOST}~{os.getpid()}~"


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def _newest_mtime(path: Path) -> float:
    try:
        newest = path.lstat().st_mtime
    except OSError:
        return time.time()  # gone, or going: leave it
    if path.is_dir() and not path.is_symlink():
        for dirpath, dirnames, filenames in os.walk(path):
            for f in [*dirnames, *filenames]:
                try:
                    newest = max(newest, os.lstat(os.path.join(dirpath, f)).st_mtime)
                except OSError:
                    continue
    return newest


def _stale(path: Path, now: float, stale_s: float) -> bool:
    m = _SCRATCH.match(path.name)
    if m is not None and m["host"] == _HOST and int(m["pid"]) != os.getpid():
        if not _alive(int(m["pid"])):
            return True
    return now - _newest_mtime(path) > stale_s


def _remove(path: Path) -> None:
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path, ignore_errors=True)
    else:
        path.unlink(missing_ok=True)


def _scandir(path: Path) -> list[os.DirEntry[str]]:
    try:
        return list(os.scandir(path))
    except OSError:
        return []


def iter_chunks(n: int, chunk: int) -> Iterator[tuple[int, int]]:
    for a in range(0, n, chunk):
        yield a, min(n, a + chunk)


def dataset_store(settings: Any) -> DatasetStore:
    """The store a process's settings describe (lantern.settings.Settings)."""
    return DatasetStore(
        settings.data_dir / "datasets",
        DatasetLimits(
            archive=ArchiveLimits(
                max_entries=settings.max_dataset_entries,
                max_uncompressed_bytes=settings.max_dataset_uncompressed_bytes,
                max_ratio=settings.max_dataset_ratio,
            ),
            max_images=settings.max_dataset_images,
            max_pixels=settings.max_dataset_pixels,
            max_image_pixels=settings.max_pixels,
        ),
        list(settings.dataset_roots),
        ActivationCache(settings.data_dir / "activations", settings.dataset_chunk_images,
                        max_bytes=settings.activation_cache_bytes,
                        pixel_ratio=settings.dataset_pixel_cache_ratio,
                        decode_threads=settings.dataset_decode_threads),
        stale_s=settings.dataset_scratch_stale_s,
    )
