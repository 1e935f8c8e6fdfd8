"""A bounded loopback load test of the whole stack: a private redis-server, one `lantern worker`
(Celery) and `lantern serve` (uvicorn), all on 127.0.0.1, driven with httpx.AsyncClient.

    python bench/load.py [--requests 1000] [--concurrency 16] [--worker-concurrency 2]

Sends a fixed number of mixed requests with bounded concurrency:

* ``predict``   POST /v1/models/efficientnet-lite0/predict (JSON, base64 image)
* ``grad_cam``  POST /v1/explanations?wait=30 (synchronous Grad-CAM answered inline)
* ``occlusion`` POST /v1/explanations (window 56, stride 56: 16 windows) -> 202, then polled
  with GET /v1/jobs/{id} until it has succeeded; its latency is submit -> succeeded

With ``--sync-grad-cam``: sync Grad-CAM only, at each of ``--levels`` (default 1, 4, 16, 64)
concurrent clients, against two stacks up side by side — batching off
(``LANTERN_SYNC_BATCH_WINDOW_MS=0``) and on (``--batch-window-ms``) — the levels taking
turns between them (``--rounds`` times, the order rotated each round), after a warm-up of
each — and a third, "forced", batching up to ``--forced-batch`` whether the model gains from
batches or not; prints throughput and p50/p99 per level and setting (see :func:`sync_grad_cam`).

Every request carries a distinct (image, target) pair — the images are small random
perturbations of skimage's chelsea — so nothing is answered from the result store.

Prints a markdown table (per kind: count, ok, 4xx, 5xx, transport errors, lost, latency
p50/p95/p99, throughput) and exits non-zero if any request got a 5xx or any accepted job was
lost (never reached ``succeeded`` within ``--job-timeout``). Everything is bounded: the number
of requests, each request's timeout, each job's polling, and the whole run (``--deadline``);
the processes it started are stopped on the way out.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import contextlib
import io
import os
import shutil
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import numpy as np
from PIL import Image

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))  # lantern_testing (after the real packages)

from engine.models.zoo import BUILTIN_MODEL_ID, ensure_builtin  # noqa: E402
from lantern_testing.processes import (  # noqa: E402
    LANTERN,
    Proc,
    free_port,
    redis_server,
    wait_for,
)

MODEL = BUILTIN_MODEL_ID
KINDS = ("predict", "grad_cam", "occlusion")
TERMINAL = {"succeeded", "failed", "cancelled"}


@dataclass
class Stats:
    latencies: list[float] = field(default_factory=list)  # seconds, successful requests only
    ok: int = 0
    client_errors: int = 0  # 4xx
    server_errors: int = 0  # 5xx
    transport_errors: int = 0  # connection reset, timeout, ...
    lost: int = 0  # job accepted, never succeeded within the job timeout
    http_calls: int = 0  # including polls
    samples: list[str] = field(default_factory=list)  # first few error bodies

    def note(self, what: str) -> None:
        if len(self.samples) < 3:
            self.samples.append(what[:300])


def perturbed_images(count: int, seed: int = 0) -> list[str]:
    """``count`` distinct JPEGs (base64): chelsea with a few pixels nudged at random."""
    from skimage import data

    base = data.chelsea()
    rng = np.random.default_rng(seed)
    out: list[str] = []
    for _ in range(count):
        img = base.copy()
        ys = rng.integers(0, img.shape[0], 64)
        xs = rng.integers(0, img.shape[1], 64)
        img[ys, xs] = rng.integers(0, 255, (64, 3), dtype=np.uint8)
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=92)
        out.append(base64.b64encode(buf.getvalue()).decode())
    return out


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    return float(np.percentile(np.asarray(values), q))


async def timed(
    stats: Stats, call: Callable[[], Awaitable[httpx.Response]]
) -> httpx.Response | None:
    stats.http_calls += 1
    try:
        r = await call()
    except httpx.HTTPError as e:
        stats.transport_errors += 1
        stats.note(f"{type(e).__name__}: {e}")
        return None
    if r.status_code >= 500:
        stats.server_errors += 1
        stats.note(f"{r.status_code} {r.text}")
        return None
    if r.status_code >= 400:
        stats.client_errors += 1
        stats.note(f"{r.status_code} {r.text}")
        return None
    return r


async def do_predict(client: httpx.AsyncClient, stats: Stats, image: str, _: int) -> None:
    t0 = time.perf_counter()
    r = await timed(
        stats, lambda: client.post(f"/v1/models/{MODEL}/predict", json={"image": image, "top_k": 5})
    )
    if r is not None and r.status_code == 200 and r.json().get("predictions"):
        stats.ok += 1
        stats.latencies.append(time.perf_counter() - t0)


async def do_grad_cam(client: httpx.AsyncClient, stats: Stats, image: str, target: int) -> None:
    body = {"model": MODEL, "method": "grad_cam", "image": image, "target": target}
    t0 = time.perf_counter()
    r = await timed(stats, lambda: client.post("/v1/explanations?wait=30", json=body))
    if r is None:
        return
    if r.status_code == 200:
        stats.ok += 1
        stats.latencies.append(time.perf_counter() - t0)
    else:  # 202: not ready within 30 s; it is not lost yet, so follow it like a job
        await follow(client, stats, str(r.json()["id"]), t0, job_timeout=60.0)


async def do_occlusion(
    client: httpx.AsyncClient, stats: Stats, image: str, target: int, job_timeout: float
) -> None:
    body = {
        "model": MODEL,
        "method": "occlusion",
        "image": image,
        "target": target,
        "params": {"window": 56, "stride": 56},
    }
    t0 = time.perf_counter()
    r = await timed(stats, lambda: client.post("/v1/explanations", json=body))
    if r is None:
        return
    if r.status_code != 202:
        stats.client_errors += 1
        stats.note(f"expected 202, got {r.status_code} {r.text}")
        return
    await follow(client, stats, str(r.json()["id"]), t0, job_timeout)


async def follow(
    client: httpx.AsyncClient, stats: Stats, job: str, t0: float, job_timeout: float
) -> None:
    """Poll an accepted job until it succeeds; anything else within the timeout is lost."""
    deadline = time.monotonic() + job_timeout
    delay = 0.1
    while time.monotonic() < deadline:
        r = await timed(stats, lambda: client.get(f"/v1/jobs/{job}"))
        if r is not None:
            state = r.json()["state"]
            if state == "succeeded":
                stats.ok += 1
                stats.latencies.append(time.perf_counter() - t0)
                return
            if state in TERMINAL:
                stats.lost += 1
                stats.note(f"job {job} ended {state}: {r.json().get('error')}")
                return
        await asyncio.sleep(delay)
        delay = min(delay * 1.5, 1.0)
    stats.lost += 1
    stats.note(f"job {job} did not succeed within {job_timeout} s")


def plan(n: int, mix: tuple[float, float, float]) -> list[str]:
    """A deterministic interleaving of kinds in the given proportions."""
    counts = [round(n * m / sum(mix)) for m in mix]
    counts[0] += n - sum(counts)
    kinds = [k for k, c in zip(KINDS, counts, strict=True) for _ in range(c)]
    rng = np.random.default_rng(1)
    order = rng.permutation(len(kinds))
    return [kinds[i] for i in order]


async def drive(
    base: str, args: argparse.Namespace, images: list[str]
) -> tuple[dict[str, Stats], float]:
    stats = {k: Stats() for k in KINDS}
    kinds = plan(args.requests, (args.mix_predict, args.mix_grad_cam, args.mix_occlusion))
    sem = asyncio.Semaphore(args.concurrency)
    limits = httpx.Limits(max_connections=args.concurrency + 4)
    async with httpx.AsyncClient(base_url=base, timeout=args.request_timeout, limits=limits) as c:

        async def one(i: int, kind: str) -> None:
            async with sem:
                image = images[i % len(images)]
                target = (i * 7) % 1000  # (image, target) distinct for every request
                if kind == "predict":
                    await do_predict(c, stats[kind], image, target)
                elif kind == "grad_cam":
                    await do_grad_cam(c, stats[kind], image, target)
                else:
                    await do_occlusion(c, stats[kind], image, target, args.job_timeout)

        t0 = time.perf_counter()
        tasks = [asyncio.create_task(one(i, k)) for i, k in enumerate(kinds)]
        done, pending = await asyncio.wait(tasks, timeout=args.deadline)
        for t in pending:
            t.cancel()
        await asyncio.gather(*pending, return_exceptions=True)
        for t in done:
            if t.exception() is not None:
                raise t.exception()  # type: ignore[misc]
        wall = time.perf_counter() - t0
    if pending:
        print(f"deadline of {args.deadline} s reached: {len(pending)} requests not finished")
        # unfinished requests count as lost: they were sent (or due) and never completed
        for i, k in enumerate(kinds):
            if tasks[i] in pending:
                stats[k].lost += 1
    return stats, wall


def table(stats: dict[str, Stats], wall: float) -> str:
    lines = [
        "| kind | requests | ok | 4xx | 5xx | transport errors | lost | p50 ms | p95 ms | p99 ms "
        "| throughput req/s | HTTP calls |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    total = Stats()
    for kind, s in stats.items():
        n = s.ok + s.client_errors + s.server_errors + s.transport_errors + s.lost
        lines.append(row(kind, n, s, wall))
        total.latencies += s.latencies
        total.ok += s.ok
        total.client_errors += s.client_errors
        total.server_errors += s.server_errors
        total.transport_errors += s.transport_errors
        total.lost += s.lost
        total.http_calls += s.http_calls
    n = total.ok + total.client_errors + total.server_errors + total.transport_errors + total.lost
    lines.append(row("**all**", n, total, wall))
    return "\n".join(lines)


def row(kind: str, n: int, s: Stats, wall: float) -> str:
    ms = [x * 1000 for x in s.latencies]
    return (
        f"| {kind} | {n} | {s.ok} | {s.client_errors} | {s.server_errors} | "
        f"{s.transport_errors} | {s.lost} | {percentile(ms, 50):.0f} | {percentile(ms, 95):.0f} "
        f"| {percentile(ms, 99):.0f} | {s.ok / wall:.2f} | {s.http_calls} |"
    )


def prepare_data_dir(data: Path) -> None:
    """The built-in model in the data dir, from bench/out's cached build when there is one."""
    cached = ROOT / "bench" / "out" / "zoo" / f"{MODEL}.onnx"
    zoo = data / "zoo"
    zoo.mkdir(parents=True, exist_ok=True)
    if cached.is_file():
        shutil.copy(cached, zoo / cached.name)
    ensure_builtin(zoo)


@contextlib.contextmanager
def api_stack(
    root: Path, args: argparse.Namespace, extra_env: dict[str, str], worker: bool = True
) -> Iterator[str]:
    """A private redis-server, (a `lantern worker`) and `lantern serve` with ``extra_env``,
    in ``root``: yields the API's base URL; stops them on the way out."""
    prepare_data_dir(root / "data")
    grads = ROOT / "bench" / "out" / "data" / "gradients"
    if grads.is_dir():  # gradient models built already (keyed by the model's content)
        shutil.copytree(grads, root / "data" / "gradients", dirs_exist_ok=True)
    procs: dict[str, Proc] = {}
    with redis_server(root / "redis") as url:
        env = {
            **os.environ,
            "LANTERN_REDIS_URL": url,
            "LANTERN_DATA_DIR": str(root / "data"),
            "LANTERN_ORT_THREADS": str(args.ort_threads),
            **extra_env,
        }
        try:
            if worker:
                procs["worker"] = Proc(
                    [*LANTERN, "worker", "--concurrency", str(args.worker_concurrency)],
                    env,
                    root / "worker.log",
                )
            port = free_port()
            procs["api"] = Proc(
                [*LANTERN, "serve", "--host", "127.0.0.1", "--port", str(port),
                 "--log-level", "warning"],
                env,
                root / "api.log",
            )
            base = f"http://127.0.0.1:{port}"
            try:
                wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 180, "the API")
                if worker:
                    log = root / "worker.log"
                    wait_for(lambda: b" ready." in log.read_bytes(), 180, "worker")
            except TimeoutError:
                for name, p in procs.items():
                    print(f"--- {name} log ---\n{p.tail()}")
                raise
            yield base
        finally:
            for p in procs.values():
                p.stop()


async def grad_cam_level(
    base: str, images: list[str], start: int, n: int, concurrency: int, timeout: float
) -> tuple[Stats, float]:
    """``n`` sync Grad-CAM requests (request numbers ``start`` .. ``start + n``: distinct
    (image, target) pairs) at ``concurrency`` clients; (stats, wall seconds)."""
    stats = Stats()
    sem = asyncio.Semaphore(concurrency)
    limits = httpx.Limits(max_connections=concurrency + 4)
    async with httpx.AsyncClient(base_url=base, timeout=timeout, limits=limits) as c:

        async def one(i: int) -> None:
            async with sem:
                await do_grad_cam(c, stats, images[i % len(images)], (i * 7) % 1000)

        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(start, start + n)))
        wall = time.perf_counter() - t0
    return stats, wall


def host_line() -> str:
    model = "unknown CPU"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model}, nproc {os.cpu_count()}"


def sync_grad_cam(args: argparse.Namespace) -> int:
    """Sync Grad-CAM throughput and latency with and without batching across requests."""
    levels = [int(x) for x in args.levels.split(",") if x.strip()]
    root = Path(tempfile.mkdtemp(prefix="lantern-load-sync-"))
    images = perturbed_images(args.images)
    when = time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
    print(f"{when}; {host_line()}; load average before: {os.getloadavg()}; work dir {root}")
    window = {"LANTERN_SYNC_BATCH_WINDOW_MS": str(args.batch_window_ms)}
    settings: dict[str, dict[str, str]] = {"off": {"LANTERN_SYNC_BATCH_WINDOW_MS": "0"},
                                           "on": window}
    if args.forced_batch:  # batches of this many whether the runtime gains from them or not
        settings["forced"] = {**window, "LANTERN_FORWARD_BATCH": str(args.forced_batch)}
    results: dict[tuple[int, str], list[tuple[Stats, float]]] = {}
    next_request = {name: 0 for name in settings}
    bad = False
    with contextlib.ExitStack() as stack:
        bases = {
            name: stack.enter_context(
                api_stack(root / name, args, {**env, "LANTERN_BUILTIN_MODELS": f'["{MODEL}"]'},
                          worker=False)
            )
            for name, env in settings.items()
        }
        print(f"stacks up: {bases}; load average {os.getloadavg()}")
        for name, base in bases.items():  # warm-up: sessions, the best batch, buckets
            for c in (1, max(levels)):
                n = max(2 * c, 8)
                stats, _ = asyncio.run(
                    grad_cam_level(base, images, next_request[name], n, c, args.request_timeout)
                )
                next_request[name] += n
                print(f"warm-up {name} x{c}: {stats.ok}/{n} ok")
            log = root / name / "api.log"
            for line in log.read_text(errors="replace").splitlines():
                if "sync batching of" in line:  # the batch the API measured (best_batch)
                    print(f"{name}: {line[-220:]}")
        order = list(settings)
        for round_ in range(args.rounds):
            for c in levels:
                n = max(args.per_level, 4 * c)
                turn = (round_ + c) % len(order)  # each setting first, last, in between
                for name in order[turn:] + order[:turn]:
                    stats, wall = asyncio.run(
                        grad_cam_level(bases[name], images, next_request[name], n, c,
                                       args.request_timeout)
                    )
                    next_request[name] += n
                    results.setdefault((c, name), []).append((stats, wall))
                    ms = [x * 1000 for x in stats.latencies]
                    print(
                        f"round {round_ + 1} clients {c:>3} batching {name:>6}: "
                        f"{stats.ok}/{n} ok, {stats.ok / wall:6.2f} req/s, p50 "
                        f"{percentile(ms, 50):6.1f} ms, p99 {percentile(ms, 99):6.1f} ms; "
                        f"load {os.getloadavg()[0]:.2f}",
                        flush=True,
                    )
                    bad |= stats.server_errors > 0 or stats.lost > 0 or stats.ok < n
    print(f"\nload average after: {os.getloadavg()}; "
          f"{time.strftime('%Y-%m-%d %H:%M:%S UTC', time.gmtime())}\n")
    print(sync_table(results, levels, list(settings)))
    if bad:
        print("\nFAIL: errors, lost or unanswered requests")
        return 1
    shutil.rmtree(root, ignore_errors=True)
    return 0


def sync_table(
    results: dict[tuple[int, str], list[tuple[Stats, float]]], levels: list[int], names: list[str]
) -> str:
    """Per level and setting, all rounds pooled: requests, throughput, p50/p99; and each
    setting's throughput and p99 over off's."""
    lines = [
        "| clients | batching | requests | ok | throughput req/s | p50 ms | p99 ms "
        "| throughput ÷ off | p99 ÷ off |",
        "|---:|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for c in levels:
        pooled: dict[str, tuple[float, float, float, int, int]] = {}
        for name in names:
            runs = results.get((c, name), [])
            ms = [x * 1000 for s, _ in runs for x in s.latencies]
            ok = sum(s.ok for s, _ in runs)
            n = sum(s.ok + s.client_errors + s.server_errors + s.transport_errors + s.lost
                    for s, _ in runs)
            wall = sum(w for _, w in runs)
            pooled[name] = (ok / wall if wall else float("nan"), percentile(ms, 50),
                            percentile(ms, 99), n, ok)
        for name in names:
            tput, p50, p99, n, ok = pooled[name]
            ratio = (f"{tput / pooled['off'][0]:.2f}×", f"{p99 / pooled['off'][2]:.2f}×") \
                if name != "off" else ("", "")
            lines.append(f"| {c} | {name} | {n} | {ok} | {tput:.2f} | {p50:.0f} | {p99:.0f} "
                         f"| {ratio[0]} | {ratio[1]} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--requests", type=int, default=1000)
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--worker-concurrency", type=int, default=2)
    ap.add_argument("--ort-threads", type=int, default=1)
    ap.add_argument("--mix-predict", type=float, default=0.5)
    ap.add_argument("--mix-grad-cam", type=float, default=0.3)
    ap.add_argument("--mix-occlusion", type=float, default=0.2)
    ap.add_argument("--images", type=int, default=64, help="distinct perturbed images")
    ap.add_argument("--request-timeout", type=float, default=60.0)
    ap.add_argument("--job-timeout", type=float, default=300.0)
    ap.add_argument("--deadline", type=float, default=900.0, help="bound on the whole run, s")
    ap.add_argument("--sync-grad-cam", action="store_true",
                    help="sync Grad-CAM only, batching across requests off and on")
    ap.add_argument("--levels", default="1,4,16,64", help="concurrent clients (--sync-grad-cam)")
    ap.add_argument("--per-level", type=int, default=120,
                    help="requests per level, setting and round (at least 4 x clients)")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--batch-window-ms", type=float, default=2.0,
                    help="LANTERN_SYNC_BATCH_WINDOW_MS of the batching stack")
    ap.add_argument("--forced-batch", type=int, default=8,
                    help="a third stack batching up to this many whatever the measured gain "
                    "(LANTERN_FORWARD_BATCH); 0 = none")
    args = ap.parse_args(argv)
    if args.sync_grad_cam:
        return sync_grad_cam(args)
    if not 1 <= args.requests <= 100_000 or not 1 <= args.concurrency <= 256:
        ap.error("--requests must be 1..100000 and --concurrency 1..256")

    root = Path(tempfile.mkdtemp(prefix="lantern-load-"))
    print(f"load average before: {os.getloadavg()}; work dir {root}")
    prepare_data_dir(root / "data")
    images = perturbed_images(args.images)
    procs: dict[str, Proc] = {}
    try:
        with redis_server(root / "redis") as url:
            env = {
                **os.environ,
                "LANTERN_REDIS_URL": url,
                "LANTERN_DATA_DIR": str(root / "data"),
                "LANTERN_ORT_THREADS": str(args.ort_threads),
            }
            procs["worker"] = Proc(
                [*LANTERN, "worker", "--concurrency", str(args.worker_concurrency)],
                env,
                root / "worker.log",
            )
            port = free_port()
            procs["api"] = Proc(
                [
                    *LANTERN,
                    "serve",
                    "--host",
                    "127.0.0.1",
                    "--port",
                    str(port),
                    "--log-level",
                    "warning",
                ],
                env,
                root / "api.log",
            )
            base = f"http://127.0.0.1:{port}"
            try:
                wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 180, "the API")
                wait_for(lambda: b" ready." in (root / "worker.log").read_bytes(), 180, "worker")
            except TimeoutError:
                for name, p in procs.items():
                    print(f"--- {name} log ---\n{p.tail()}")
                raise
            print(
                f"stack up: redis {url}, api {base}, worker x{args.worker_concurrency}; "
                f"{args.requests} requests, concurrency {args.concurrency}"
            )
            stats, wall = asyncio.run(drive(base, args, images))
    finally:
        for p in procs.values():
            p.stop()
    print(
        f"\nload average after: {os.getloadavg()}; wall {wall:.1f} s; "
        f"{sum(s.ok for s in stats.values()) / wall:.2f} successful requests/s\n"
    )
    print(table(stats, wall))
    bad = False
    for kind, s in stats.items():
        if s.samples:
            print(f"\n{kind}: first errors:\n  " + "\n  ".join(s.samples))
        bad |= s.server_errors > 0 or s.lost > 0
    if bad:
        print("\nFAIL: server errors or lost jobs")
        return 1
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
