"""Scratch a crashed process left in the dataset store (an upload's temporary directory, a
deleted dataset's trash, a record's temporary file) is removed when the store opens; a
concurrent upload's fresh directory, and a live process's, are not."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

from engine.datasets import store as store_mod
from engine.datasets.archive import ArchiveLimits
from engine.datasets.store import DatasetLimits, DatasetStore

from .test_store import make_zip, png


def open_store(tmp_path: Path, stale_s: float = 3600.0) -> DatasetStore:
    limits = DatasetLimits(ArchiveLimits(1000, 50 * 1024 * 1024, 100.0), 1000, 10**9, 10**6)
    return DatasetStore(tmp_path / "datasets", limits, [], stale_s=stale_s)


def dead_pid() -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid


def scratch(root: Path, what: str, pid: int, host: str | None = None) -> Path:
    d = root / f".{what}~{host or store_mod._HOST}~{pid}~abc123"
    (d / "files" / "0").mkdir(parents=True)
    (d / "files" / "0" / "a.png").write_bytes(png())
    return d


def test_a_dead_process_scratch_goes_a_live_one_stays(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    s.add_zip("kept", make_zip({"a/x.png": png(), "b/y.png": png(value=9)}))
    root = s.root
    crashed = scratch(root, "upload", dead_pid())
    trash = scratch(root, "deleted", dead_pid())
    record_tmp = root / "kept" / f".record.json~{store_mod._HOST}~{dead_pid()}~q1"
    record_tmp.write_bytes(b"{")
    live = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    try:
        concurrent = scratch(root, "upload", live.pid)  # another process, uploading now
        mine = scratch(root, "upload", os.getpid())
        other_host = scratch(root, "upload", dead_pid(), host="elsewhere1")
        reopened = open_store(tmp_path)
        assert sorted(reopened.swept) == sorted([crashed, trash, record_tmp])
        for p in (crashed, trash, record_tmp):
            assert not p.exists()
        for p in (concurrent, mine, other_host):
            assert (p / "files" / "0" / "a.png").is_file()
    finally:
        live.kill()
        live.wait()
    # the datasets themselves are untouched
    assert [i.name for i in reopened.all()] == ["kept"]
    assert len(reopened.reader("kept")) == 2


def test_old_scratch_goes_whoever_made_it(tmp_path: Path) -> None:
    s = open_store(tmp_path, stale_s=600)
    s.root.mkdir(parents=True)
    old = scratch(s.root, "upload", os.getpid(), host="elsewhere1")
    legacy = s.root / ".mydata.x1y2z3"  # a temporary directory named the former way
    (legacy / "files").mkdir(parents=True)
    (legacy / "files" / "a.png").write_bytes(png())
    fresh = scratch(s.root, "upload", 1, host="elsewhere2")
    long_ago = time.time() - 3600
    for p in (old, legacy):
        for q in [p, *p.rglob("*")]:
            os.utime(q, (long_ago, long_ago))
    # a file written just now deep inside keeps an old directory: the upload is going on
    busy = scratch(s.root, "upload", 2, host="elsewhere3")
    for q in [busy, *busy.rglob("*")]:
        os.utime(q, (long_ago, long_ago))
    (busy / "files" / "0" / "b.png").write_bytes(png())
    reopened = open_store(tmp_path, stale_s=600)
    assert sorted(reopened.swept) == sorted([old, legacy])
    assert fresh.is_dir() and busy.is_dir()


def test_an_upload_leaves_no_scratch_and_names_it_by_host_and_pid(tmp_path: Path) -> None:
    s = open_store(tmp_path)
    s.add_zip("one", make_zip({"a/x.png": png()}))
    s.delete("one")
    assert [p.name for p in s.root.iterdir()] == []
    assert store_mod._SCRATCH.match(store_mod._scratch_prefix("upload") + "xyz")
