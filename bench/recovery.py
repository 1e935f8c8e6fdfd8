"""Recovery times: how long a fault costs an accepted job, with real processes.

A cluster of redis-server (append-only, fsync always), two Celery workers (one process,
one ORT thread each) and the API with its reconciler (tests/lantern_testing/cluster.py).
Each scenario runs occlusion jobs on the built-in model and prints, per fault:

* ``redis kill -9``: 2 jobs running and 2 waiting when Redis is killed and restarted
  (after 1 s); time from the restart until every job has succeeded, and the slowdown
  against the same 4 jobs with no fault;
* ``redis shutdown``: the same with a clean SHUTDOWN;
* ``host loss``: a worker's whole process group SIGKILLed mid-job; time until the job runs
  again on the other worker (its second attempt's start), as a multiple of the lease, and
  until it has succeeded.

    python bench/recovery.py [--lease 10] [--data DIR]
"""

from __future__ import annotations

import argparse
import os
import platform
import signal
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path[:0] = [str(REPO), str(REPO / "tests")]

from lantern_testing.cluster import PREFIX, Cluster  # noqa: E402
from lantern_testing.processes import wait_for  # noqa: E402

PARAMS = {"window": 32, "stride": 16}  # 169 windows + 2 passes


def jobs_of(c: Cluster, first: int, n: int) -> list[str]:
    return [c.submit(first + i, **PARAMS) for i in range(n)]


def redis_fault(root: Path, data: Path, lease: float, how: str) -> tuple[float, float, int]:
    c = Cluster(root, data, lease_s=lease, LANTERN_SPLIT_MIN_SAMPLES="100000")
    try:
        c.wait_done(jobs_of(c, 200, 2), 600)  # warm: both workers' sessions built
        t0 = time.monotonic()
        base = jobs_of(c, 0, 4)
        c.wait_done(base, 600)
        no_fault = time.monotonic() - t0
        t0 = time.monotonic()
        jobs = jobs_of(c, 100, 4)
        wait_for(lambda: sum(c.state(j) == "running" for j in jobs) == 2, 60, "two running")
        c.redis.kill() if how == "kill -9" else c.redis.stop()
        time.sleep(1.0)
        c.redis.start()
        restarted = time.monotonic()
        c.wait_done(jobs, 600)
        done = time.monotonic()
        once = sum(int(c.field(j, "completions") == 1) for j in jobs)
        return done - restarted, (done - t0) / no_fault, once
    finally:
        c.stop()


def host_loss(root: Path, data: Path, lease: float) -> tuple[float, float]:
    c = Cluster(root, data, lease_s=lease, LANTERN_SPLIT_MIN_SAMPLES="100000")
    try:
        job = c.submit(285, **PARAMS)
        wait_for(lambda: c.r.exists(f"{PREFIX}:lease:{job}") == 1, 60, "the job's lease")
        lost = c.holder(f"{PREFIX}:lease:{job}")
        killed = time.time()
        c.workers[lost].signal_group(signal.SIGKILL)
        c.wait_done([job], 600)
        restarted = float(c.field(job, "started_at")) - killed
        finished = float(c.field(job, "finished_at")) - killed
        return restarted, finished
    finally:
        c.stop()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--lease", type=float, default=10.0)
    ap.add_argument("--data", type=Path, default=None, help="a data dir with the model built")
    args = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="lantern-recovery-"))
    data = args.data or tmp / "data"
    print(f"host: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
          f"lease {args.lease:g} s, reconcile every 0.5 s")
    print("| fault | recovery | detail |")
    print("|---|---|---|")
    for how in ("kill -9", "shutdown"):
        took, slowdown, once = redis_fault(tmp / how.replace(" ", ""), data, args.lease, how)
        print(f"| redis {how} (2 running, 2 queued) | {took:.1f} s from restart to all done | "
              f"{slowdown:.2f}× the no-fault time; completed exactly once: {once}/4 |")
    restarted, finished = host_loss(tmp / "host", data, args.lease)
    print(f"| worker host lost mid-job | re-run after {restarted:.1f} s "
          f"({restarted / args.lease:.2f}× the lease) | succeeded {finished:.1f} s after the "
          "kill |")


if __name__ == "__main__":
    main()
