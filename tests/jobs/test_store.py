"""The job store on both backends: in-memory (embedded) and a real, private redis-server."""

from __future__ import annotations

import time
from collections.abc import Iterator

import numpy as np
import pytest
import redis

from engine.artifacts import AttributionMap, Curve, ImageArtifact, pack, unpack
from jobs.store import JobRecord, JobStore, MemoryKV, RedisKV


@pytest.fixture(params=["memory", "redis"])
def store(request: pytest.FixtureRequest) -> Iterator[JobStore]:
    if request.param == "memory":
        yield JobStore(MemoryKV(), ttl_s=60)
        return
    url = request.getfixturevalue("redis_url")
    client = redis.Redis.from_url(url)
    prefix = f"t{time.monotonic_ns()}"
    yield JobStore(RedisKV(client), ttl_s=60, prefix=prefix)


def record(job_id: str = "j1") -> JobRecord:
    return JobRecord(
        id=job_id,
        model="m",
        version="v",
        method="occlusion",
        params={"window": 4},
        objective={"kind": "class", "target": "top1"},
        input={"modality": "image", "key": "k"},
    )


def test_inputs_are_stored_by_content(store: JobStore) -> None:
    k1 = store.put_input(b"abc")
    assert store.put_input(b"abc") == k1
    assert store.get_input(k1) == b"abc"
    assert store.get_input("missing") is None


def test_create_is_idempotent_while_live(store: JobStore) -> None:
    _rec, created = store.create_job(record())
    assert created
    store.update_job("j1", state="running", progress=0.5)
    again, created = store.create_job(record())
    assert not created
    assert again.state == "running" and again.progress == 0.5
    assert again.params == {"window": 4} and again.objective["target"] == "top1"


@pytest.mark.parametrize("state", ["failed", "cancelled"])
def test_failed_or_cancelled_jobs_are_reset_on_resubmit(store: JobStore, state: str) -> None:
    store.create_job(record())
    store.update_job("j1", state=state, error={"code": "x"})
    rec, created = store.create_job(record())
    assert created and rec.state == "queued"
    got = store.get_job("j1")
    assert got is not None and got.state == "queued" and got.error is None


def test_results_round_trip_exactly(store: JobStore) -> None:
    values = np.random.default_rng(0).normal(size=(5, 7)).astype(np.float32)
    grid = np.arange(12, dtype=np.uint8).reshape(2, 2, 3)
    curve = Curve("deletion", np.linspace(0, 1, 4), np.array([1.0, 0.5, 0.25, 0.0]), auc=0.4)
    store.put_artifacts(
        "j1", pack([AttributionMap("attribution", values), ImageArtifact("grid", grid), curve],
                   {"png": "grid"})
    )
    raw = store.get_artifacts("j1")
    assert raw is not None and store.get_artifacts("nope") is None
    artifacts, views = unpack(raw)
    assert [a.name for a in artifacts] == ["attribution", "grid", "deletion"]
    assert views == {"png": "grid"}
    a, g, c = artifacts
    assert isinstance(a, AttributionMap) and a.values.dtype == np.float32
    np.testing.assert_array_equal(a.values, values)
    assert isinstance(g, ImageArtifact) and g.pixels.dtype == np.uint8
    np.testing.assert_array_equal(g.pixels, grid)
    assert isinstance(c, Curve) and c.auc == 0.4
    np.testing.assert_array_equal(c.y, curve.y)


def test_state_field(store: JobStore) -> None:
    store.create_job(record())
    assert store.get_state("j1") == "queued"
    assert store.get_state("nope") is None
    assert store.get_job("nope") is None


def test_ttl_counts_from_the_end_of_a_job(request: pytest.FixtureRequest) -> None:
    # a queued job behind long ones must not vanish: a live record has no expiry; once it
    # ends, it and its result expire after the TTL
    url = request.getfixturevalue("redis_url")
    for kv in (MemoryKV(), RedisKV(redis.Redis.from_url(url))):
        s = JobStore(kv, ttl_s=1, prefix=f"ttl{time.monotonic_ns()}")
        key = s.put_input(b"x")
        rec, _ = s.create_job(record())
        time.sleep(1.5)
        live = s.get_job("j1")
        assert live is not None and live.state == "queued"  # older than the TTL, still here
        assert "j1" in s.active_jobs()
        s.put_artifacts("j1", pack([AttributionMap("attribution", np.zeros((1, 2), np.float32))]))
        s.end_job(rec, state="cancelled")
        assert "j1" not in s.active_jobs()
        time.sleep(2.1)
        assert s.get_input(key) is None
        assert s.get_job("j1") is None
        assert s.get_artifacts("j1") is None


def test_fenced_writes_need_the_lease_and_the_current_attempt(store: JobStore) -> None:
    rec, _ = store.create_job(record())
    lease = store.lease_key("j1")
    assert store.acquire(lease, "a", 5.0)
    assert not store.acquire(lease, "b", 5.0)  # one holder at a time
    first = store.start_attempt("j1", "a")
    assert store.fenced_update("j1", "a", first, progress=0.5)
    assert not store.fenced_update("j1", "b", first, progress=0.9)  # not the holder
    store.release(lease, "a")
    assert not store.fenced_update("j1", "a", first, progress=0.9)  # lease gone
    assert store.acquire(lease, "b", 5.0)
    second = store.start_attempt("j1", "b")
    assert second == first + 1
    assert not store.fenced_end(rec, "a", first, state="succeeded")  # a stale attempt
    assert store.fenced_end(rec, "b", second, state="succeeded")
    got = store.get_job("j1")
    assert got is not None and got.state == "succeeded" and got.progress == 0.5
    assert got.completions == 1 and "j1" not in store.active_jobs()


def test_a_lease_lapses_and_renews(store: JobStore) -> None:
    lease = store.lease_key("j1", "c0")
    assert store.acquire(lease, "a", 0.3)
    assert store.renew(lease, "a", 0.3) and not store.renew(lease, "b", 0.3)
    time.sleep(0.5)
    assert not store.leased(lease) and not store.renew(lease, "a", 0.3)
    assert store.acquire(lease, "b", 0.3)


def test_the_embedded_store_is_bounded() -> None:
    kv = MemoryKV(max_bytes=10_000)
    s = JobStore(kv, ttl_s=3600)
    _rec, _ = s.create_job(record())  # live: never dropped
    for i in range(50):
        s.put_artifacts(f"r{i}", b"x" * 1000)
    assert s.get_artifacts("r0") is None and s.get_artifacts("r49") is not None
    assert s.get_job("j1") is not None
