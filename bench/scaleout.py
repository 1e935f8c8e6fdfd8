"""One occlusion job (729 windows) on 1 worker process × 2 ONNX Runtime threads against
2 worker processes × 1 thread sharing it in chunks. Real redis-server and Celery workers.

    python bench/scaleout.py [--runs 2] [--chunk 64] [--window 16 --stride 8]

Prints a markdown table: wall time from submit to succeeded, and the efficiency of the split
configuration relative to the single process (time(1 × 2 threads) / time(2 × 1 thread)).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))  # lantern_testing (after the real packages)

from jobs.runtime import Runtime  # noqa: E402
from jobs.store import JobRecord  # noqa: E402
from lantern.settings import Settings  # noqa: E402
from lantern_testing.images import chelsea_png  # noqa: E402
from lantern_testing.processes import LANTERN, Proc, redis_server, wait_for  # noqa: E402
from workers.dispatch import CeleryDispatcher  # noqa: E402


def one_config(
    workers: int,
    threads: int,
    split: bool,
    chunk: int,
    runs: int,
    root: Path,
    window: int = 16,
    stride: int = 8,
) -> list[float]:
    with redis_server(root / f"redis-{workers}-{threads}-{split}") as url:
        env = {
            **os.environ,
            "LANTERN_REDIS_URL": url,
            "LANTERN_DATA_DIR": str(root / "data"),
            "LANTERN_ORT_THREADS": str(threads),
            "LANTERN_SPLIT_MIN_SAMPLES": "1" if split else "1000000",
            "LANTERN_SPLIT_CHUNK_SAMPLES": str(chunk),
        }
        procs = [
            Proc([*LANTERN, "worker", "--hostname", f"b{i}@%h"], env, root / f"b{i}.log")
            for i in range(workers)
        ]
        try:
            for i in range(workers):
                wait_for(lambda i=i: b" ready." in (root / f"b{i}.log").read_bytes(), 120, "worker")
            settings = Settings(redis_url=url, data_dir=root / "data")
            rt = Runtime(settings)
            rt.ensure_builtin()
            info = rt.models.get("efficientnet-lite0")
            dispatcher = CeleryDispatcher(rt)
            key = rt.jobs.put_input(chelsea_png())
            times = []
            for r in range(runs + 1):  # the first run warms the workers up
                job = f"bench-{workers}-{threads}-{split}-{r}"
                rt.jobs.create_job(JobRecord(
                    id=job, model=info.name, version=info.version, method="occlusion",
                    params={"window": window, "stride": stride},
                    objective={"kind": "class", "target": 285},
                    input={"modality": "image", "key": key}))
                t0 = time.perf_counter()
                dispatcher.submit(job, 900.0)
                wait_for(lambda job=job: rt.jobs.get_state(job) == "succeeded", 600, job, 0.02)
                if r:
                    times.append(time.perf_counter() - t0)
            dispatcher.close()
            return times
        finally:
            for p in procs:
                p.stop()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--runs", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=64)
    ap.add_argument("--window", type=int, default=16, help="occlusion window (16: 729 windows)")
    ap.add_argument("--stride", type=int, default=8)
    args = ap.parse_args(argv)
    print(f"load average before: {os.getloadavg()}")
    root = Path(tempfile.mkdtemp(prefix="lantern-scaleout-"))
    rows = []
    for workers, threads, split in ((1, 2, False), (1, 2, True), (2, 1, True)):
        t = one_config(
            workers, threads, split, args.chunk, args.runs, root, args.window, args.stride
        )
        rows.append((workers, threads, split, statistics.median(t), min(t)))
        print(f"  {workers} x {threads} threads split={split}: {[round(x, 2) for x in t]}")
    base = rows[0][3]
    print(f"\nload average after: {os.getloadavg()}\n")
    print("| worker processes | ORT threads each | split into chunks | median s | min s "
          "| efficiency vs 1 × 2 |")
    print("|---:|---:|---|---:|---:|---:|")
    for workers, threads, split, med, mn in rows:
        print(f"| {workers} | {threads} | {'yes, ' + str(args.chunk) if split else 'no'} "
              f"| {med:.2f} | {mn:.2f} | {base / med:.2f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
