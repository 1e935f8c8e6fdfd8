"""A dataset analysis shared by two Celery worker processes (the activation extraction as a
chunked map), the same ranking as one process computes, and a second analysis of the layer
with no forward pass; the decoded pixels kept and reused, and the cache's size limit across
processes. Real processes: redis-server, two `lantern worker`, `lantern serve`."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from lantern_testing.processes import LANTERN, Proc, free_port, redis_server, wait_for

pytestmark = pytest.mark.e2e


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("dsscale")
    with redis_server(root / "redis") as url:
        env = {
            **os.environ,
            "LANTERN_REDIS_URL": url,
            "LANTERN_DATA_DIR": str(root / "data"),
            "LANTERN_ORT_THREADS": "1",
            "LANTERN_BUILTIN_MODELS": '["digits-cnn"]',
            "LANTERN_SPLIT_MIN_SAMPLES": "100",
            "LANTERN_SPLIT_CHUNK_SAMPLES": "300",
            "LANTERN_DATASET_CHUNK_IMAGES": "150",
            "LANTERN_ACTIVATION_CACHE_BYTES": "1",  # every write evicts the other entries
        }
        procs = {
            "w1": Proc([*LANTERN, "worker", "--hostname", "w1@%h"], env, root / "w1.log"),
            "w2": Proc([*LANTERN, "worker", "--hostname", "w2@%h"], env, root / "w2.log"),
        }
        port = free_port()
        procs["api"] = Proc([*LANTERN, "serve", "--port", str(port)], env, root / "api.log")
        base = f"http://127.0.0.1:{port}"
        try:
            wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 180, "the API")
            for name in ("w1", "w2"):
                wait_for(lambda n=name: b" ready." in (root / f"{n}.log").read_bytes(), 180, name)
            yield {"base": base, "root": root}
        except Exception:
            for name, p in procs.items():
                print(f"--- {name} ---\n{p.tail()}")
            raise
        finally:
            for p in procs.values():
                p.stop()


def run(client: httpx.Client, body: dict[str, Any], timeout: float = 240) -> dict[str, Any]:
    r = client.post("/v1/explanations", json=body)
    assert r.status_code in (200, 202), r.text
    job = r.json()["id"] if r.status_code == 202 else r.json()["job"]  # 200: cached result
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        st: dict[str, Any] = client.get(f"/v1/jobs/{job}").json()
        if st["state"] in ("succeeded", "failed", "cancelled"):
            return st
        time.sleep(0.2)
    raise AssertionError("job did not finish")


def chunk_count(log: Path) -> int:
    return log.read_text(errors="replace").count("Task lantern.chunk[")


def test_dataset_job_shared_by_two_workers(cluster: dict[str, Any], tmp_path: Path) -> None:
    root: Path = cluster["root"]
    objective = {"kind": "channel", "layer": "conv3", "channel": 3}
    body = {"model": "digits-cnn", "method": "max_activating", "dataset": "digits",
            "objective": objective, "params": {"k": 12}}
    with httpx.Client(base_url=cluster["base"], timeout=60) as client:
        st = run(client, body)
        assert st["state"] == "succeeded", st
        assert st["model_calls"] == 1797
        rows = client.get(f"/v1/jobs/{st['id']}/artifacts/ranking?format=json").json()
        again = run(client, {**body, "method": "min_activating"})
        assert again["state"] == "succeeded" and again["model_calls"] == 0
    assert chunk_count(root / "w1.log") >= 1 and chunk_count(root / "w2.log") >= 1
    # the ranking one process computes, on its own cache
    from engine.methods.base import no_progress
    from engine.methods.registry import get_method
    from engine.objectives import Channel
    from jobs.runtime import Runtime
    from lantern.settings import Settings

    rt = Runtime(Settings(data_dir=tmp_path, builtin_models=["digits-cnn"], ort_threads=1))
    rt.ensure_builtin()
    model = rt.load("digits-cnn")
    spec = get_method("max_activating", "image")
    local = spec.fn(model, rt.datasets.reader("digits"), Channel("conv3", 1, 3),
                    spec.parse_params({"k": 12}), no_progress)
    table = next(a for a in local.artifacts if a.name == "ranking")
    got = rows.get("data", rows)["rows"] if isinstance(rows, dict) else rows
    assert [r[2] for r in got] == [r[2] for r in table.rows]
    assert [r[4] for r in got] == pytest.approx([r[4] for r in table.rows], rel=1e-5)


def zipped_digits(n: int) -> bytes:
    import io
    import zipfile

    import numpy as np
    from PIL import Image

    rng = np.random.default_rng(5)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for i in range(n):
            img = io.BytesIO()
            Image.fromarray(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)).save(img, "PNG")
            zf.writestr(f"{i % 10}/{i:04d}.png", img.getvalue())
    return buf.getvalue()


def test_pixels_kept_and_the_cache_limit_across_processes(cluster: dict[str, Any]) -> None:
    """The workers keep the digits' decoded pixels (12 shards of 150 images) and read them
    back for another layer; with a cache limit of one byte, an analysis of another dataset
    evicts the digits' entries (after its write), and a later digits analysis computes them
    again, in chunks on both workers, with the same answer."""
    root: Path = cluster["root"]
    acts = root / "data" / "activations"
    objective = {"kind": "channel", "layer": "conv3", "channel": 3}
    body = {"model": "digits-cnn", "method": "max_activating", "dataset": "digits",
            "objective": objective, "params": {"k": 12}}
    with httpx.Client(base_url=cluster["base"], timeout=60) as client:
        first = run(client, body)  # the result of the first test, or computed now
        assert first["state"] == "succeeded", first
        ranking = client.get(f"/v1/jobs/{first['id']}/artifacts/ranking?format=json").json()
        version = client.get("/v1/datasets/digits").json()["version"]
        kept = sorted((acts / "@pixels" / version / "8x8-bilinear").glob("*.npy"))
        assert [p.name for p in kept][:2] == ["0-150.npy", "1050-1200.npy"] and len(kept) == 12
        written = [p.stat().st_mtime_ns for p in kept]
        other = run(client, {**body, "objective": {"kind": "channel", "layer": "conv2",
                                                   "channel": 1}})
        assert other["state"] == "succeeded" and other["model_calls"] == 1797
        assert [p.stat().st_mtime_ns for p in kept] == written  # read back, not decoded
        r = client.post("/v1/datasets", files={"file": ("d.zip", zipped_digits(200))},
                        data={"name": "noise"})
        assert r.status_code in (200, 201), r.text
        noise = run(client, {**body, "dataset": "noise"})
        assert noise["state"] == "succeeded" and noise["model_calls"] == 200
        assert not (acts / "@pixels" / version).exists()  # evicted by the noise's write
        assert not any(acts.glob(f"*/{version}"))
        before = chunk_count(root / "w1.log") + chunk_count(root / "w2.log")
        again = run(client, {**body, "params": {"k": 11}})
        assert again["state"] == "succeeded" and again["model_calls"] == 1797
        assert chunk_count(root / "w1.log") + chunk_count(root / "w2.log") > before
        rows = client.get(f"/v1/jobs/{again['id']}/artifacts/ranking?format=json").json()
    got = rows.get("data", rows)["rows"] if isinstance(rows, dict) else rows
    want = ranking.get("data", ranking)["rows"] if isinstance(ranking, dict) else ranking
    assert [r[2] for r in got] == [r[2] for r in want][:11]
