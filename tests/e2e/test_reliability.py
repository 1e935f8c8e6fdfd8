"""Nothing accepted is lost, with real processes: a real redis-server (append-only, fsync
always), two Celery workers and the API (whose reconciler repairs jobs), each test on a
fresh cluster.

* Redis restarted — cleanly and with kill -9 — while jobs run and others wait: every job
  completes, exactly once.
* A worker's whole process group SIGKILLed mid-job, and mid-chunk, with a second worker
  alive: the job completes within twice the lease.
* A worker SIGSTOPped past its lease and resumed writes nothing (its run was superseded).
* A long single-task job whose message Celery redelivers (a short visibility timeout) is
  never run twice at once.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from lantern_testing.cluster import Cluster
from lantern_testing.processes import wait_for

pytestmark = pytest.mark.e2e

LEASE_S = 4.0
PREFIX = "lantern"


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data dir (built-in model built once) for every cluster of this module."""
    return tmp_path_factory.mktemp("data")


@pytest.fixture
def cluster(tmp_path: Path, data: Path, request: pytest.FixtureRequest) -> Iterator[Cluster]:
    env = getattr(request, "param", {})
    c = Cluster(tmp_path, data, lease_s=LEASE_S, **env)
    try:
        yield c
    except Exception:
        print(c.logs())
        raise
    finally:
        c.stop()


def completions_are_one(c: Cluster, jobs: list[str]) -> None:
    for j in jobs:
        assert c.state(j) == "succeeded", (j, c.field(j, "error"))
        assert c.field(j, "completions") == 1, (j, c.field(j, "completions"))
        assert c.client.get(f"/v1/jobs/{j}/result?format=npy").status_code == 200
        assert c.r.sismember(f"{PREFIX}:active:jobs", j) == 0


@pytest.mark.parametrize("how", ["shutdown", "kill -9"])
def test_every_job_completes_once_through_a_redis_restart(cluster: Cluster, how: str) -> None:
    c = cluster
    jobs = [c.submit(t, window=32, stride=16) for t in range(6)]  # 2 run, 4 wait
    wait_for(lambda: sum(c.state(j) == "running" for j in jobs) == 2, 60, "two running")
    if how == "shutdown":
        c.redis.stop()
    else:
        c.redis.kill()
    time.sleep(1.0)
    c.redis.start()  # same port, same append-only file
    c.wait_done(jobs, 180)
    completions_are_one(c, jobs)


def test_a_lost_worker_host_costs_at_most_twice_the_lease(cluster: Cluster) -> None:
    c = cluster
    job = c.submit(285, window=32, stride=16)
    wait_for(lambda: c.r.exists(f"{PREFIX}:lease:{job}") == 1, 60, "the job's lease")
    lost = c.holder(f"{PREFIX}:lease:{job}")
    killed = time.time()
    c.workers[lost].signal_group(signal.SIGKILL)  # master and pool: a dead node
    c.wait_done([job], 2 * LEASE_S + 30)
    # the reconciler re-queued it once the lease lapsed; the other worker ran attempt 2
    assert c.field(job, "attempts") == 2
    restarted_after = float(c.field(job, "started_at")) - killed
    assert restarted_after <= 2 * LEASE_S, restarted_after
    completions_are_one(c, [job])


@pytest.mark.parametrize(
    "cluster", [{"LANTERN_SPLIT_MIN_SAMPLES": "100", "LANTERN_SPLIT_CHUNK_SAMPLES": "96"}],
    indirect=True,
)
def test_a_lost_worker_mid_chunk_costs_at_most_twice_the_lease(cluster: Cluster) -> None:
    c = cluster
    job = c.submit(285, window=16, stride=8)  # 729 windows: 8 chunks of 96
    wait_for(lambda: bool(c.r.keys(f"{PREFIX}:lease:{job}:c*")), 60, "a chunk's lease")
    lease = c.r.keys(f"{PREFIX}:lease:{job}:c*")[0].decode()
    lost = c.holder(lease)
    killed = time.monotonic()
    c.workers[lost].signal_group(signal.SIGKILL)
    c.wait_done([job], 2 * LEASE_S + 40)
    assert time.monotonic() - killed <= 2 * LEASE_S + 35
    completions_are_one(c, [job])
    assert c.field(job, "model_calls") == 2 + 729  # every window counted once


@pytest.mark.parametrize("cluster", [{"LANTERN_SPLIT_MIN_SAMPLES": "100000"}], indirect=True)
def test_a_paused_worker_writes_nothing_when_it_resumes(cluster: Cluster) -> None:
    c = cluster
    job = c.submit(285, window=16, stride=8)  # 729 windows: longer than the lease
    wait_for(lambda: c.r.exists(f"{PREFIX}:lease:{job}") == 1, 60, "the job's lease")
    paused = c.holder(f"{PREFIX}:lease:{job}")
    c.workers[paused].signal_group(signal.SIGSTOP)
    try:
        wait_for(lambda: c.field(job, "attempts") == 2 and c.r.exists(f"{PREFIX}:lease:{job}"),
                 3 * LEASE_S + 10, "the second attempt")
    finally:
        c.workers[paused].signal_group(signal.SIGCONT)
    seen: list[float] = []
    deadline = time.monotonic() + 180
    while c.state(job) != "succeeded" and time.monotonic() < deadline:
        seen.append(float(c.field(job, "progress")))
        time.sleep(0.05)
    assert seen == sorted(seen), "progress flipped between two runs"
    completions_are_one(c, [job])
    log = (c.root / f"{paused}.log").read_text(errors="replace")
    assert "lost" in log or "superseded" in log, log[-2000:]


@pytest.mark.parametrize(
    "cluster",
    [{"LANTERN_VISIBILITY_TIMEOUT_S": "2", "LANTERN_SPLIT_MIN_SAMPLES": "100000"}],
    indirect=True,
)
def test_a_long_job_is_never_run_twice_at_once(cluster: Cluster) -> None:
    c = cluster
    job = c.submit(285, window=16, stride=8)
    c.wait_done([job], 240)
    assert c.field(job, "attempts") == 1  # Celery redelivered it; the lease kept it single
    completions_are_one(c, [job])
    logs = "".join((c.root / f"{n}.log").read_text(errors="replace") for n in c.workers)
    assert "leased by another worker" in logs, logs[-3000:]
