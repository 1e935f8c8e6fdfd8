"""Sync explanations over HTTP against the method alone: the service's own overhead.

    python bench/sync_latency.py [--requests 40] [--threads 2]
                                 [--methods saliency,grad_cam,cam,gradient_x_input,activation_maps]
                                 [--data-dir bench/out/data] [--format jpeg]
                                 [--distinct-images] [--tree DIR [--tree DIR ...]]
                                 [--json FILE]

Starts ``lantern serve`` in embedded mode (no Redis: jobs and results in memory, the
API's own worker) on a free port, with ``LANTERN_DATA_DIR`` at ``--data-dir`` (an existing
data dir: the built-in EfficientNet-Lite0 and its gradient models are built once and
reused) and ``LANTERN_ORT_THREADS`` at ``--threads``. The same model is loaded in this
process too. Then, per method, ``--requests`` rounds of, interleaved (so that both sides see
the same load on a shared host; the order runs through the six permutations round by
round, and each measurement follows a 20 ms pause, so that no side runs while the other's
ONNX Runtime threads still spin):

* **engine**: ``spec.fn(model, item, objective, params, no_progress)`` in this process on the
  decoded chelsea (decoded once, as the worker does), default params, class objective
  ``t``;
* **http none**: ``POST /v1/explanations?wait=30`` (JSON, the image as base64) with target
  ``t`` and ``"outputs": []``: submit, decode, run, store, and a result without values;
* **http values**: the same with target ``t + 500`` and ``"outputs": ["values"]``: plus the
  224×224 float32 values serialised as JSON.

With ``--tree`` (repeatable: e.g. a ``git archive`` of the commit before a change, and one
after), one server per tree, all started before the first round, and each round times the
engine and every tree's two requests, the order rotating through the rotations of that list
and of its reverse (with one tree: the six permutations): an A/B interleaved in one run,
against the same engine timings. Default: one server, of the tree ``engine`` is imported from.

Targets are distinct per method and side (``t`` runs over 0..499; each server has its own
embedded store), so no request is answered from the result cache. One untimed warm-up round
per method first (its gradient models, the server's session), on targets 990..999. HTTP
time is from sending the request to having read the whole body (one keep-alive connection
per server, httpx); the body is parsed after the clock stops.
Printed per method: p50 / p99 of each, the server's ``compute_ms`` (median), and the HTTP
overhead = HTTP − engine (p50 − p50; and p99 − p99), with the target: overhead ≤ 10 ms.

The script runs against whichever Lantern tree ``engine`` is imported from: run it from an
older worktree (``cd /tmp/lantern-before && PYTHONPATH=$PWD python /path/to/sync_latency.py``)
to serve and time that tree's code (its method contract: an int target and an
``Attribution``, or an ``Objective`` and a ``Result``).
"""

from __future__ import annotations

import argparse
import base64
import io
import itertools
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

import engine

ROOT = Path(engine.__file__).resolve().parent.parent  # the tree under test
OUT = Path(__file__).resolve().parent / "out"
METHODS = ["saliency", "grad_cam", "cam", "gradient_x_input", "activation_maps"]
OVERHEAD_TARGET_MS = 10.0
VALUES_OFFSET = 500
WARMUP_TARGETS = range(990, 1000)
PAUSE_S = 0.02


# -- the tree's API (current, or the contract before objectives) ----------------------------


def _runtime_cls() -> Any:
    try:
        from jobs.runtime import Runtime
    except ImportError:  # before the job layer split
        from workers.runtime import Runtime  # type: ignore[no-redef]
    return Runtime


def _image_module() -> Any:
    try:
        import engine.modalities.image as image_mod
    except ImportError:  # before engine/modalities
        import engine.data.image as image_mod  # type: ignore[no-redef]
    return image_mod


def objective_for(model: Any, target: int, params: Any) -> Any:
    """What the tree's method functions take for a class: an Objective, or the int."""
    try:
        from engine.objectives import class_score
    except ImportError:
        return target
    return class_score(model, target, params)


# -- helpers --------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q)) if values else float("nan")


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return "unknown CPU"


def commit_of(tree: Path) -> str:
    out = subprocess.run(
        ["git", "-C", str(tree), "log", "-1", "--format=%h %s"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()[:60]
    return out or tree.name


def orders_for(kinds: list[str]) -> list[tuple[str, ...]]:
    """The round orders: every permutation for up to three kinds; else the rotations of
    the list and of its reverse (each kind in each place, and after each other, alike)."""
    if len(kinds) <= 3:
        return list(itertools.permutations(kinds))
    out: list[tuple[str, ...]] = []
    for seq in (kinds, kinds[::-1]):
        out += [tuple(seq[i:] + seq[:i]) for i in range(len(seq))]
    return out


def chelsea_bytes(fmt: str, nudge: int | None = None) -> bytes:
    """chelsea encoded as ``fmt``; with ``nudge``, one pixel (chosen by it) changed."""
    from PIL import Image
    from skimage import data

    buf = io.BytesIO()
    pixels = data.chelsea().copy()
    if nudge is not None:
        h, w = pixels.shape[:2]
        pixels[nudge % h, (nudge // h) % w] ^= 0x55
    img = Image.fromarray(pixels)
    if fmt == "jpeg":
        img.save(buf, format="JPEG", quality=92)
    else:
        img.save(buf, format="PNG")
    return buf.getvalue()


class Server:
    """``lantern serve`` (embedded mode) of the tree under test, on a free port."""

    def __init__(self, data_dir: Path, threads: int, log: Path, tree: Path = ROOT) -> None:
        env = {
            **os.environ,
            "LANTERN_DATA_DIR": str(data_dir.resolve()),
            "LANTERN_ORT_THREADS": str(threads),
            "PYTHONPATH": str(tree),
        }
        env.pop("LANTERN_REDIS_URL", None)
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log
        self._fh = log.open("wb")
        self.proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "lantern.cli",
                "serve",
                "--port",
                str(self.port),
                "--log-level",
                "warning",
            ],
            cwd=tree,
            env=env,
            stdout=self._fh,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )

    def wait_ready(self, timeout: float = 180.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"the server exited:\n{self.log.read_text()[-3000:]}")
            try:
                if httpx.get(f"{self.base}/readyz", timeout=2).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.2)
        raise SystemExit(f"the server was not ready in {timeout:.0f} s")

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self._fh.close()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--requests", type=int, default=40, help="timed rounds per method (≤ 490)")
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads, both sides")
    ap.add_argument("--methods", default=",".join(METHODS))
    ap.add_argument("--data-dir", type=Path, default=OUT / "data")
    ap.add_argument("--format", choices=["jpeg", "png"], default="jpeg", help="image sent")
    ap.add_argument(
        "--distinct-images",
        action="store_true",
        help="a different image per request (chelsea with one pixel changed): the server "
        "then decodes each one in the job too (default: the same bytes, decoded once per "
        "process by the runner's item cache)",
    )
    ap.add_argument(
        "--tree",
        type=Path,
        action="append",
        default=None,
        help="serve this Lantern tree (repeat for an interleaved A/B; default: this tree)",
    )
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    if not 1 <= args.requests <= VALUES_OFFSET - len(WARMUP_TARGETS):
        ap.error("--requests must be 1..490")
    methods = [m.strip() for m in args.methods.split(",") if m.strip()]

    import httpx
    import onnxruntime as ort

    from engine.methods.base import no_progress
    from engine.methods.registry import get_method
    from engine.models.zoo import BUILTIN_MODEL_ID
    from lantern.settings import Settings

    image_mod = _image_module()
    settings = Settings(data_dir=args.data_dir, ort_threads=args.threads, redis_url=None)
    rt = _runtime_cls()(settings)
    rt.ensure_builtin()  # before the server starts: it finds the model built
    model = rt.load(BUILTIN_MODEL_ID)
    data = chelsea_bytes(args.format)
    item = image_mod.prepare_image(
        image_mod.decode_image(data, settings.max_pixels), model.manifest
    )
    encoded = base64.b64encode(data).decode()
    trees: list[Path] = [t.resolve() for t in (args.tree or [ROOT])]
    names = [f"t{j}" for j in range(len(trees))] if len(trees) > 1 else [""]
    per_method = len(trees) * (len(WARMUP_TARGETS) + 2 * args.requests)
    n_images = len(methods) * per_method if args.distinct_images else 0
    distinct = [base64.b64encode(chelsea_bytes(args.format, k)).decode() for k in range(n_images)]
    used = [0]

    def image_for_request() -> str:
        if not args.distinct_images:
            return encoded
        used[0] += 1
        return distinct[used[0] - 1]

    commits = [commit_of(t) for t in trees]
    print(
        f"# sync latency, {time.strftime('%Y-%m-%d %H:%M UTC', time.gmtime())}: "
        f"{cpu_model()}, nproc {os.cpu_count()}; onnxruntime {ort.__version__}, ORT threads "
        f"{args.threads} (servers and engine); engine from {ROOT}; chelsea as "
        f"{args.format} ({len(data)} bytes, "
        f"{'a distinct image per request' if args.distinct_images else 'the same bytes'}); "
        f"{args.requests} rounds per method; load average before {load()}",
        flush=True,
    )
    for name, tree, commit in zip(names, trees, commits, strict=True):
        print(f"#   server {name or '-'}: {tree} ({commit})", flush=True)

    tmp = Path(tempfile.mkdtemp(prefix="lantern-sync-latency-"))
    servers: list[Server] = []
    rows: list[dict[str, Any]] = []
    clients: list[Any] = []
    try:
        for j, tree in enumerate(trees):
            servers.append(Server(args.data_dir, args.threads, tmp / f"api{j}.log", tree))
        for server in servers:
            server.wait_ready()
        clients = [httpx.Client(base_url=srv.base, timeout=60.0) for srv in servers]

        def http(
            j: int, method: str, target: int, outputs: list[str]
        ) -> tuple[float, dict[str, Any]]:
            body = {
                "model": BUILTIN_MODEL_ID,
                "method": method,
                "image": image_for_request(),
                "target": target,
                "outputs": outputs,
            }
            t0 = time.perf_counter()
            r = clients[j].post("/v1/explanations", params={"wait": 30}, json=body)
            content = r.content
            dt = time.perf_counter() - t0
            if r.status_code != 200:
                raise SystemExit(
                    f"{names[j]} {method} target {target}: {r.status_code} {r.text[:500]}"
                )
            doc = json.loads(content)
            doc["_bytes"] = len(content)
            return dt, doc

        kinds = ["engine"] + [f"{k}:{j}" for j in range(len(trees)) for k in ("none", "values")]
        orders = orders_for(kinds)
        for method in methods:
            spec = get_method(method)
            params = spec.parse_params({})
            spec.check(params, model)

            def engine_call(target: int, spec: Any = spec, params: Any = params) -> float:
                objective = objective_for(model, target, params)
                t0 = time.perf_counter()
                spec.fn(model, item, objective, params, no_progress)
                return time.perf_counter() - t0

            for t in WARMUP_TARGETS:  # gradient models, sessions, first-call costs
                engine_call(t)
                for j in range(len(trees)):
                    http(j, method, t, [])
            eng: list[float] = []
            none: list[list[float]] = [[] for _ in trees]
            vals: list[list[float]] = [[] for _ in trees]
            compute: list[list[float]] = [[] for _ in trees]
            sizes: list[dict[str, Any]] = [{} for _ in trees]
            for i in range(args.requests):
                # in a rotating order, each after a pause: ONNX Runtime's threads spin for
                # a while after a run, in this process or a server
                for kind in orders[i % len(orders)]:
                    time.sleep(PAUSE_S)
                    if kind == "engine":
                        eng.append(engine_call(i))
                        continue
                    what, jj = kind.split(":")
                    j = int(jj)
                    if what == "none":
                        dt, doc = http(j, method, i, [])
                        none[j].append(dt)
                        timings = doc.get("timings", {})
                        compute[j].append(float(timings.get("compute_ms", float("nan"))))
                        sizes[j]["none"] = doc["_bytes"]
                    else:
                        dt, doc = http(j, method, i + VALUES_OFFSET, ["values"])
                        vals[j].append(dt)
                        sizes[j]["values"] = doc["_bytes"]
                        v = (doc.get("attribution") or {}).get("values")
                        sizes[j]["values_shape"] = (
                            list(np.asarray(v).shape) if v is not None else None
                        )
            for j in range(len(trees)):
                row: dict[str, Any] = {
                    "tree": names[j] or None,
                    "commit": commits[j],
                    "method": method,
                    "requests": args.requests,
                    "engine_p50_ms": pct(eng, 50) * 1e3,
                    "engine_p99_ms": pct(eng, 99) * 1e3,
                    "http_none_p50_ms": pct(none[j], 50) * 1e3,
                    "http_none_p99_ms": pct(none[j], 99) * 1e3,
                    "http_values_p50_ms": pct(vals[j], 50) * 1e3,
                    "http_values_p99_ms": pct(vals[j], 99) * 1e3,
                    "server_compute_p50_ms": statistics.median(compute[j]),
                    "bytes_none": sizes[j].get("none"),
                    "bytes_values": sizes[j].get("values"),
                    "values_shape": sizes[j].get("values_shape"),
                }
                for side in ("none", "values"):
                    for q in ("p50", "p99"):
                        row[f"overhead_{side}_{q}_ms"] = (
                            row[f"http_{side}_{q}_ms"] - row[f"engine_{q}_ms"]
                        )
                rows.append(row)
                print(
                    f"  {method}{' ' + names[j] if names[j] else ''}: engine "
                    f"{row['engine_p50_ms']:.1f}/{row['engine_p99_ms']:.1f} ms, http none "
                    f"{row['http_none_p50_ms']:.1f}/{row['http_none_p99_ms']:.1f}, http values "
                    f"{row['http_values_p50_ms']:.1f}/{row['http_values_p99_ms']:.1f} "
                    f"(p50/p99); server compute_ms {row['server_compute_p50_ms']:.1f}; values "
                    f"shape {row['values_shape']}, {row['bytes_values']} bytes; load {load()}",
                    flush=True,
                )
    finally:
        for c in clients:
            c.close()
        for server in servers:
            server.stop()

    def ok(overhead: float) -> str:
        return "ok" if overhead <= OVERHEAD_TARGET_MS else "over"

    print()
    print(
        f"ORT threads {args.threads}; {args.requests} rounds per method; load average after "
        f"{load()}; UTC {time.strftime('%H:%M', time.gmtime())}"
    )
    for name, commit in zip(names, commits, strict=True):
        if name:
            print(f"  {name}: {commit}")
    print(
        "| tree | method | engine p50 / p99 ms | HTTP, no outputs p50 / p99 ms | HTTP, values "
        "p50 / p99 ms | server compute_ms p50 | overhead, no outputs p50 / p99 ms | overhead, "
        "values p50 / p99 ms | ≤ 10 ms (p50) |"
    )
    print("|---|---|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        print(
            f"| {r['tree'] or '-'} | {r['method']} "
            f"| {r['engine_p50_ms']:.1f} / {r['engine_p99_ms']:.1f} "
            f"| {r['http_none_p50_ms']:.1f} / {r['http_none_p99_ms']:.1f} "
            f"| {r['http_values_p50_ms']:.1f} / {r['http_values_p99_ms']:.1f} "
            f"| {r['server_compute_p50_ms']:.1f} "
            f"| {r['overhead_none_p50_ms']:.1f} / {r['overhead_none_p99_ms']:.1f} "
            f"| {r['overhead_values_p50_ms']:.1f} / {r['overhead_values_p99_ms']:.1f} "
            f"| {ok(r['overhead_none_p50_ms'])} / {ok(r['overhead_values_p50_ms'])} |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "engine_tree": str(ROOT),
                    "trees": [str(t) for t in trees],
                    "commits": commits,
                    "threads": args.threads,
                    "cpu": cpu_model(),
                    "onnxruntime": ort.__version__,
                    "load_after": os.getloadavg(),
                    "rows": rows,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
