"""The dataset store: labels from folders or an index, content versions, and every refusal
(bombs, traversal, symlinks, non-images, limits) leaving nothing registered."""

from __future__ import annotations

import io
import json
import os
import stat
import zipfile
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from engine.datasets.archive import ArchiveLimits
from engine.datasets.store import DatasetLimits, DatasetStore
from engine.errors import (
    ArchiveBomb,
    DatasetPathForbidden,
    DatasetProtected,
    DatasetTooLarge,
    InvalidArchive,
    InvalidImages,
    LanternError,
    UnknownDataset,
    UnsafeArchivePath,
)


def png(w: int = 4, h: int = 3, value: int = 0) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(np.full((h, w, 3), value, np.uint8)).save(buf, format="PNG")
    return buf.getvalue()


def make_zip(files: dict[str, bytes], *, compression: int = zipfile.ZIP_DEFLATED) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression) as zf:
        for name, data in files.items():
            zf.writestr(name, data)
    return buf.getvalue()


def store(tmp_path: Path, **kw: int | float) -> DatasetStore:
    archive = ArchiveLimits(
        max_entries=int(kw.get("entries", 1000)),
        max_uncompressed_bytes=int(kw.get("bytes", 50 * 1024 * 1024)),
        max_ratio=float(kw.get("ratio", 100.0)),
    )
    limits = DatasetLimits(archive, int(kw.get("images", 1000)), int(kw.get("pixels", 10**9)),
                           int(kw.get("image_pixels", 10**6)))
    return DatasetStore(tmp_path / "datasets", limits, [tmp_path / "roots"])


def nothing_registered(s: DatasetStore) -> None:
    assert s.all() == []
    leftovers = [p for p in s.root.rglob("*")] if s.root.exists() else []
    assert leftovers == [], leftovers


def test_folder_per_class_labels_counts_sizes_and_version(tmp_path: Path) -> None:
    s = store(tmp_path)
    files = {"cats/a.png": png(4, 3), "cats/b.png": png(4, 3, 9), "dogs/c.png": png(6, 5)}
    info = s.add_zip("pets", make_zip(files))
    assert info.count == 3 and info.classes == ["cats", "dogs"]
    assert info.class_counts == {"cats": 2, "dogs": 1} and info.unlabelled == 0
    assert (info.sizes.min_width, info.sizes.max_width) == (4, 6)
    assert info.sizes.common == {"4x3": 2, "6x5": 1}
    assert info.pixels == 4 * 3 * 2 + 30
    r = s.reader("pets")
    assert r.ids() == ["cats/a.png", "cats/b.png", "dogs/c.png"]
    assert r.labels.tolist() == [0, 0, 1]
    assert r.read(2) == files["dogs/c.png"] and r.image(0).size == (4, 3)
    # the same content under one shared top folder and in another order: same labels
    again = s.add_zip("pets", make_zip({"root/" + k: v for k, v in reversed(files.items())}))
    assert again.classes == ["cats", "dogs"] and again.version != info.version  # paths differ
    same = s.add_zip("pets", make_zip(dict(reversed(files.items()))))
    assert same.version == info.version  # content-hashed: order does not matter
    changed = s.add_zip("pets", make_zip({**files, "dogs/c.png": png(6, 5, 200)}))
    assert changed.version != info.version and s.get("pets").version == changed.version
    assert s.info("pets", info.version).version == info.version


def test_csv_and_json_index(tmp_path: Path) -> None:
    s = store(tmp_path)
    files = {"x/1.png": png(), "x/2.png": png(value=3), "3.png": png(value=5)}
    csv = b"path,label\nx/1.png,zero\nx/2.png,one\n3.png,one\nnot/here.png,zero\n"
    info = s.add_zip("ix", make_zip({**files, "index.csv": csv}))
    assert info.count == 3 and info.class_counts == {"one": 2, "zero": 1}
    assert [(r.path, r.code) for r in info.rejected] == [("not/here.png", "missing")]
    j = json.dumps({"x/1.png": "a", "3.png": None}).encode()
    info2 = s.add_zip("ij", make_zip({**files, "labels/map.json": j}), index="labels/map.json")
    assert info2.count == 2 and info2.classes == ["a"] and info2.unlabelled == 1
    with pytest.raises(InvalidArchive):
        s.add_zip("bad", make_zip({**files, "index.csv": b"file;label\nx/1.png;a\n"}))
    with pytest.raises(InvalidArchive):
        s.add_zip("bad", make_zip(files), index="nope.csv")
    assert [d.name for d in s.all()] == ["ij", "ix"]


def test_non_images_listed_and_kept_out_or_refused_whole(tmp_path: Path) -> None:
    s = store(tmp_path)
    files = {"a/1.png": png(), "a/notes.txt": b"hello", "b/2.png": png(),
             "b/broken.png": png()[:20], ".DS_Store": b"x", "__MACOSX/a/._1.png": b"x"}
    info = s.add_zip("mixed", make_zip(files))
    assert info.count == 2
    assert sorted((r.path, r.code) for r in info.rejected) == [
        ("a/notes.txt", "not_an_image"), ("b/broken.png", "not_an_image")]
    with pytest.raises(InvalidImages) as e:
        s.add_zip("strict", make_zip(files), strict=True)
    assert {r["path"] for r in e.value.details["rejected"]} == {"a/notes.txt", "b/broken.png"}
    with pytest.raises(InvalidImages):
        s.add_zip("none", make_zip({"a.txt": b"text"}))
    assert [d.name for d in s.all()] == ["mixed"]


@pytest.mark.parametrize(
    ("name", "error", "reason"),
    [
        ("../evil.png", UnsafeArchivePath, "traversal"),
        ("a/../../evil.png", UnsafeArchivePath, "traversal"),
        ("/etc/evil.png", UnsafeArchivePath, "traversal"),
        ("C:/evil.png", UnsafeArchivePath, "traversal"),
        ("..\\evil.png", UnsafeArchivePath, "traversal"),
    ],
)
def test_paths_escaping_the_archive(tmp_path: Path, name: str, error: type[LanternError],
                                    reason: str) -> None:
    s = store(tmp_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("ok/1.png", png())
        zf.writestr(zipfile.ZipInfo(name), png())
    with pytest.raises(error) as e:
        s.add_zip("t", buf.getvalue())
    assert e.value.details["reason"] == reason and e.value.status == 422
    nothing_registered(s)
    assert not (tmp_path / "evil.png").exists()


def test_symlink_entry_refused(tmp_path: Path) -> None:
    s = store(tmp_path)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("a/1.png", png())
        link = zipfile.ZipInfo("a/link.png")
        link.external_attr = (stat.S_IFLNK | 0o777) << 16
        zf.writestr(link, "/etc/passwd")
    with pytest.raises(UnsafeArchivePath) as e:
        s.add_zip("t", buf.getvalue())
    assert e.value.details["reason"] == "symlink"
    nothing_registered(s)


def test_zip_bombs(tmp_path: Path) -> None:
    zeros = make_zip({"a/1.png": png(), "a/big.png": b"\0" * (8 * 1024 * 1024)})
    with pytest.raises(ArchiveBomb) as e:  # one entry compressed > 100x
        store(tmp_path).add_zip("b", zeros)
    assert e.value.details["limit"] == "ratio" and e.value.status == 413
    stored = make_zip({f"a/{i}.png": png() for i in range(20)}, compression=zipfile.ZIP_STORED)
    with pytest.raises(ArchiveBomb) as e:
        store(tmp_path, bytes=1000).add_zip("b", stored)
    assert e.value.details["limit"] == "uncompressed_bytes"
    with pytest.raises(ArchiveBomb) as e:
        store(tmp_path, entries=10).add_zip("b", stored)
    assert e.value.details["limit"] == "entries"
    # a nested zip is a file like another: not an image
    info = store(tmp_path).add_zip("nested", make_zip({"a/1.png": png(), "a/in.zip": zeros}))
    assert [r.code for r in info.rejected] == ["not_an_image"]
    s = store(tmp_path)
    s.delete("nested")
    nothing_registered(s)


def test_image_and_pixel_limits(tmp_path: Path) -> None:
    files = {f"a/{i}.png": png(10, 10, i) for i in range(5)}
    with pytest.raises(DatasetTooLarge) as e:
        store(tmp_path, images=4).add_zip("big", make_zip(files))
    assert e.value.details["limit"] == "images"
    with pytest.raises(DatasetTooLarge) as e:
        store(tmp_path, pixels=499).add_zip("big", make_zip(files))
    assert e.value.details["limit"] == "pixels"
    info = store(tmp_path, image_pixels=99).add_zip("big", make_zip({**files, "a/s.png": png()}))
    assert info.count == 1 and {r.code for r in info.rejected} == {"image_too_large"}
    s = store(tmp_path)
    s.delete("big")
    nothing_registered(s)


@pytest.mark.parametrize("garbage", [b"", b"PK\x03\x04garbage", os.urandom(4096), png()])
def test_not_a_zip(tmp_path: Path, garbage: bytes) -> None:
    s = store(tmp_path)
    with pytest.raises(InvalidArchive):
        s.add_zip("g", garbage)
    nothing_registered(s)


def test_fuzzed_archives_only_refused_with_codes(tmp_path: Path) -> None:
    """Random byte flips of a valid zip: registered, or refused with a LanternError (4xx);
    never another exception, never a half-registered dataset."""
    s = store(tmp_path)
    good = make_zip({f"c{i % 2}/{i}.png": png(5, 5, i * 20) for i in range(6)})
    rng = np.random.default_rng(0)
    outcomes: dict[str, int] = {}
    for trial in range(120):
        data = bytearray(good)
        for _ in range(int(rng.integers(1, 6))):
            data[int(rng.integers(0, len(data)))] = int(rng.integers(0, 256))
        name = f"f{trial}"
        try:
            s.add_zip(name, bytes(data))
            outcomes["ok"] = outcomes.get("ok", 0) + 1
        except LanternError as e:
            assert 400 <= e.status < 500
            outcomes[e.code] = outcomes.get(e.code, 0) + 1
            with pytest.raises(UnknownDataset):
                s.get(name)
    assert len(outcomes) >= 2, outcomes
    assert not [p for p in s.root.iterdir() if p.name.startswith(".")]


def test_directory_under_a_root_only(tmp_path: Path) -> None:
    s = store(tmp_path)
    d = tmp_path / "roots" / "set"
    (d / "a").mkdir(parents=True)
    (d / "a" / "1.png").write_bytes(png())
    (d / "b").mkdir()
    (d / "b" / "2.png").write_bytes(png(value=7))
    info = s.add_directory("dir", str(d))
    assert info.source == "directory" and info.classes == ["a", "b"] and info.root == str(d)
    assert s.reader("dir").read(1) == (d / "b" / "2.png").read_bytes()
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    for path in (str(outside), str(d / ".." / ".." / "elsewhere"), "/etc"):
        with pytest.raises(DatasetPathForbidden):
            s.add_directory("x", path)
    (d / "a" / "link.png").symlink_to(tmp_path / "elsewhere")
    with pytest.raises(DatasetPathForbidden):
        s.add_directory("x", str(d))
    with pytest.raises(DatasetPathForbidden):
        DatasetStore(tmp_path / "d2", s.limits, []).add_directory("x", str(d))


def test_builtin_protected(tmp_path: Path) -> None:
    s = store(tmp_path)
    s.add_files("base", [("a/1.png", png())], builtin=True)
    with pytest.raises(DatasetProtected):
        s.add_zip("base", make_zip({"a/1.png": png()}))
    with pytest.raises(DatasetProtected):
        s.delete("base")
    with pytest.raises(UnknownDataset):
        s.delete("nope")


def test_builtin_digits_built_once_into_the_zoo(tmp_path: Path) -> None:
    from engine.datasets.builtin import builtin_datasets
    from engine.models.zoo.digits_cnn import digits_pixels

    digits = next(d for d in builtin_datasets() if d.name == "digits")
    zoo = tmp_path / "zoo"
    a, b = store(tmp_path / "a", images=5000), store(tmp_path / "b", images=5000)
    info = digits.register(a, zoo)
    assert info.count == 1797 and info.classes == [str(i) for i in range(10)]
    assert info.source == "builtin" and info.root is not None and info.root.startswith(str(zoo))
    assert digits.register(b, zoo).version == info.version  # the zoo's build, adopted
    images, labels = digits_pixels()
    r = b.reader("digits")
    order = [int(p.split("/")[1][:4]) for p in r.ids()]
    assert np.array_equal(np.asarray([int(r.classes[k]) for k in r.labels]), labels[order])
    assert np.array_equal(np.asarray(r.image(5).convert("L")), images[order[5]])
    with pytest.raises(DatasetProtected):
        b.delete("digits")
