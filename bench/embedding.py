"""The embedding analysis against its libraries' own time on the same array, in one run.

    .venv/bin/python bench/embedding.py [--points 10000] [--repeats 2] [--threads 0]
        [--only tsne|umap]

The dataset: the built-in digits (1,797 8x8 images) with a little noise, ``--points``
PNGs, on the built-in digits-cnn; the layer conv3 (32 channels, mean-pooled). Its
activations are extracted once first (reported, not compared: a second embedding of the
layer runs no forward pass), so each measured run is what a request for a new map costs:

  lantern   the embedding method over the cached activations with its stored map deleted
            first: the features read from the cache, the fit, the map pickled to disk, the
            artifact built (with the 2-D 5-NN figure)
  peer      the library alone on the same array (conv3's pooled means, float64 for
            openTSNE as Lantern passes it), the same params, seed and threads:
            openTSNE.TSNE(perplexity=30, 250 + 500 iterations, n_jobs).fit(X) and
            umap.UMAP(n_neighbors=15, min_dist=0.1, random_state=0).fit(X)

alternating which runs first, per repeat; ratio = lantern s / peer s (medians). "same map"
is the largest coordinate difference between the two (Lantern centres the t-SNE map the
way openTSNE's transform does; the peer's is centred alike before comparing). UMAP is
fitted once on 4,500 points first (pynndescent's path, as for 10,000), so neither side
pays numba's compilation. UMAP with a
seed runs on one thread (umap-learn), whatever --threads says.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> str:
    return " ".join(f"{v:.2f}" for v in os.getloadavg())


def digits_files(n: int) -> list[tuple[str, bytes]]:
    from PIL import Image
    from sklearn.datasets import load_digits

    d = load_digits()
    rng = np.random.default_rng(0)
    out = []
    for i in range(n):
        k = i % len(d.images)
        px = d.images[k] * 255.0 / 16.0 + rng.normal(0, 10, (8, 8))
        buf = io.BytesIO()
        Image.fromarray(np.clip(px, 0, 255).astype(np.uint8), "L").save(buf, format="PNG")
        out.append((f"{d.target[k]}/{i:05d}.png", buf.getvalue()))
    return out


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--points", type=int, default=10_000)
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--threads", type=int, default=0, help="0: every core")
    ap.add_argument("--only", choices=["tsne", "umap"], default=None)
    args = ap.parse_args()

    from api_schemas.objectives import LayerNormObjective
    from engine.datasets.maps import MapStore, threads
    from engine.methods.base import no_progress
    from engine.methods.dataset.embedding import map_key, targets
    from engine.methods.registry import get_method
    from engine.objectives import resolve_objective
    from jobs.runtime import Runtime
    from lantern.settings import Settings

    print(f"# bench/embedding.py  {datetime.now(UTC).isoformat(timespec='seconds')}")
    print(f"# host {platform.node()}  {cpu()}  {os.cpu_count()} cores  load {load()}")
    tmp = Path(tempfile.mkdtemp(prefix="lantern-bench-embedding-"))
    zoo = Path(os.environ.get("LANTERN_ZOO", tmp / "zoo"))
    rt = Runtime(Settings(data_dir=tmp / "data", zoo=zoo, builtin_models=["digits-cnn"],
                          ort_threads=args.threads, dataset_chunk_images=1024))
    rt.ensure_builtin()
    rt.datasets.add_files("digits-noised", digits_files(args.points), builtin=False)
    model = rt.load("digits-cnn")
    reader = rt.datasets.reader("digits-noised")
    spec = get_method("embedding", "image")
    obj = resolve_objective(LayerNormObjective(kind="layer_norm", layer="conv3"), model)
    cache = rt.datasets.activations
    t = time.perf_counter()
    passes = cache.ensure(model, reader, targets(model, obj, None))
    print(f"# activations: {passes} images through digits-cnn in {time.perf_counter() - t:.1f} s"
          " (once; not in the ratio)")
    x = np.asarray(cache.layer(model, reader, "conv3").mean, np.float32)
    n_jobs = threads(model.options.intra_op_threads)
    store = MapStore(cache.root)

    def lantern(params: dict[str, Any]) -> tuple[float, np.ndarray]:
        p = spec.parse_params(params)
        store.path(map_key(model, reader, obj, p)).unlink(missing_ok=True)
        t0 = time.perf_counter()
        r = spec.fn(model, reader, obj, p, no_progress)
        dt = time.perf_counter() - t0
        assert r.model_calls == 0 and r.extras["map"] == "fitted", r.extras
        return dt, np.asarray(r.artifacts[0].xy, np.float64)  # type: ignore[attr-defined]

    def peer_tsne() -> tuple[float, np.ndarray]:
        from openTSNE import TSNE

        t0 = time.perf_counter()
        emb = TSNE(perplexity=30, n_iter=500, early_exaggeration_iter=250, n_jobs=n_jobs,
                   random_state=0).fit(np.ascontiguousarray(x, np.float64))
        dt = time.perf_counter() - t0
        a = np.asarray(emb, np.float64)
        return dt, a - (a.max(axis=0) + a.min(axis=0)) / 2

    def peer_umap() -> tuple[float, np.ndarray]:
        import umap

        t0 = time.perf_counter()
        u = umap.UMAP(n_components=2, n_neighbors=15, min_dist=0.1, random_state=0, n_jobs=1)
        u.fit(np.ascontiguousarray(x, np.float32))
        return time.perf_counter() - t0, np.asarray(u.embedding_, np.float64)

    runs: list[tuple[str, Any, Any]] = []
    if args.only in (None, "tsne"):
        runs.append(("t-SNE (openTSNE)", lambda: lantern({"algorithm": "tsne"}), peer_tsne))
    if args.only in (None, "umap"):
        import umap

        # numba's compilation, for both: 4,500 points take the approximate-neighbour path
        # (pynndescent) that 10,000 do; fewer points would compile only the exact one
        umap.UMAP(random_state=0, n_jobs=1, n_epochs=20).fit(x[: min(len(x), 4500)])
        runs.append(("UMAP (umap-learn)", lambda: lantern({"algorithm": "umap"}), peer_umap))
    rows = []
    for name, ours, theirs in runs:
        ours_s: list[float] = []
        theirs_s: list[float] = []
        diff = 0.0
        for rep in range(args.repeats):
            order = [(ours, ours_s), (theirs, theirs_s)]
            if rep % 2:
                order.reverse()
            got = {}
            for fn, times in order:
                dt, xy = fn()
                times.append(dt)
                got[id(times)] = xy
            diff = max(diff, float(np.abs(got[id(ours_s)] - got[id(theirs_s)]).max()))
            print(f"#   {name} repeat {rep + 1}: lantern {ours_s[-1]:.2f} s, peer "
                  f"{theirs_s[-1]:.2f} s  (load {load()})", flush=True)
        lo, pe = statistics.median(ours_s), statistics.median(theirs_s)
        rows.append((name, lo, pe, lo / pe, diff))
    threads_umap = 1
    print()
    print("| map | points | threads | Lantern s | library s | ratio | same map (max abs diff) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for name, lo, pe, ratio, diff in rows:
        th = n_jobs if name.startswith("t-SNE") else threads_umap
        print(f"| {name} | {args.points} | {th} | {lo:.2f} | {pe:.2f} | {ratio:.3f} | {diff:.3g} |")
    print(f"\n# load after: {load()}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
