"""Occlusion end to end on chelsea: ``engine.methods.occlusion.occlusion`` across batch sizes,
with incremental inference (the default) and with full passes.

    python bench/occlusion.py [--threads 2] [--batch-sizes 8,16,32] [--runs 3]

Window 16, stride 8 on 224×224 = 27×27 = 729 windows, baseline "zero" (black pixels), the
model's top class as target.  The model is built and registered as the workers do it
(``Runtime(Settings(data_dir=...)).ensure_builtin()`` then ``.load("efficientnet-lite0")``)
with ``max_batch`` raised to the largest batch size, so that each occlusion chunk is one
ONNX Runtime call.  Also printed: the full-pass lower bound 729 × (per-image forward time at
the best batch), measured on the same session; incremental inference runs below it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray
from PIL import Image

from engine.methods.base import no_progress
from engine.methods.occlusion import OcclusionParams, occlusion, window_positions
from engine.modalities.image import ImageInput, prepare_image
from engine.models.runtime import LoadedModel
from engine.models.zoo import BUILTIN_MODEL_ID
from engine.objectives import ClassScore
from jobs.runtime import Runtime
from lantern.settings import Settings

OUT = Path(__file__).resolve().parent / "out"


def load_model(data_dir: Path, threads: int, max_batch: int) -> LoadedModel:
    settings = Settings(data_dir=data_dir, ort_threads=threads, max_batch=max_batch, redis_url=None)
    rt = Runtime(settings)
    rt.ensure_builtin()
    return rt.load(BUILTIN_MODEL_ID)


def chelsea(model: LoadedModel) -> ImageInput:
    from skimage import data

    return prepare_image(Image.fromarray(data.chelsea()), model.manifest)


def median_seconds(fn: Callable[[], object], runs: int, warmup: int = 1) -> list[float]:
    for _ in range(warmup):
        fn()
    times: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def forward_ms_per_image(model: LoadedModel, image: ImageInput, batch: int) -> float:
    """Median ms per image of one ONNX Runtime call on a batch of ``batch`` images."""
    x = model.to_model_input(np.repeat(image.pixels[None], batch, axis=0))
    reps = max(5, 256 // batch)
    times = median_seconds(lambda: model.run(x), runs=reps, warmup=2)
    return statistics.median(times) * 1e3 / batch


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads (default 2)")
    ap.add_argument("--batch-sizes", default="8,16,32")
    ap.add_argument("--runs", type=int, default=3, help="timed runs per batch size")
    ap.add_argument("--window", type=int, default=16)
    ap.add_argument("--stride", type=int, default=8)
    ap.add_argument("--data-dir", type=Path, default=OUT / "data")
    ap.add_argument("--save-map", type=Path, default=None, help="save our map (.npy) here")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]

    model = load_model(args.data_dir, args.threads, max(sizes))
    image = chelsea(model)
    logits = model.scores(image.pixels[None])[0]
    target = int(np.argmax(logits))
    objective = ClassScore(target, "logit", model.labels[target])
    n_windows = len(window_positions(image.height, args.window, args.stride)) * len(
        window_positions(image.width, args.window, args.stride)
    )
    print(
        f"# occlusion: {BUILTIN_MODEL_ID} on chelsea, target {target} "
        f"({model.labels[target]}), window {args.window}, stride {args.stride}, "
        f"{n_windows} windows, baseline zero; onnxruntime {ort.__version__}, "
        f"intra-op threads {args.threads}, load average before "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )

    rows: list[dict[str, float]] = []
    maps: dict[tuple[int, bool], NDArray[np.float32]] = {}
    for b in sizes:
        times: dict[bool, list[float]] = {}
        for incremental in (True, False):
            params = OcclusionParams(
                window=args.window,
                stride=args.stride,
                baseline="zero",
                batch_size=b,
                incremental=incremental,
            )

            def run(
                params: OcclusionParams = params, key: tuple[int, bool] = (b, incremental)
            ) -> None:
                maps[key] = occlusion(model, image, objective, params, no_progress).values

            times[incremental] = median_seconds(run, runs=args.runs, warmup=1)
        fwd = forward_ms_per_image(model, image, b)
        rows.append(
            {
                "batch_size": b,
                "runs": len(times[True]),
                "median_s": statistics.median(times[True]),
                "min_s": min(times[True]),
                "full_median_s": statistics.median(times[False]),
                "full_min_s": min(times[False]),
                "forward_ms_per_image": fwd,
                "forwards_s": (n_windows + 1) * fwd / 1e3,
            }
        )
        print(
            f"  batch_size {b}: incremental {', '.join(f'{t:.2f}' for t in times[True])} s; "
            f"full passes {', '.join(f'{t:.2f}' for t in times[False])} s",
            flush=True,
        )

    best = min(rows, key=lambda r: r["forward_ms_per_image"])
    bound = n_windows * best["forward_ms_per_image"] / 1e3
    print()
    print(
        "| batch_size | runs | incremental, median (s) | min (s) | full passes, median (s) "
        "| min (s) | speed-up | forward ms/image at this batch | (windows+1) forwards (s) "
        "| full-pass overhead (s) |"
    )
    print("|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['batch_size']:.0f} | {r['runs']:.0f} | {r['median_s']:.2f} | "
            f"{r['min_s']:.2f} | {r['full_median_s']:.2f} | {r['full_min_s']:.2f} | "
            f"{r['full_median_s'] / r['median_s']:.2f}× | {r['forward_ms_per_image']:.2f} | "
            f"{r['forwards_s']:.2f} | {r['full_median_s'] - r['forwards_s']:.2f} |"
        )
    print(
        f"\nFull-pass lower bound: {n_windows} × {best['forward_ms_per_image']:.2f} ms "
        f"(forward per image at batch {best['batch_size']:.0f}) = {bound:.2f} s"
    )
    first = maps[(sizes[0], False)]
    agree = max(float(np.abs(m - first).max()) for m in maps.values())
    print(f"maps agree (batch sizes, incremental or not): max |difference| = {agree:.2e}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    if args.save_map:
        args.save_map.parent.mkdir(parents=True, exist_ok=True)
        np.save(args.save_map, first)
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps({"threads": args.threads, "lower_bound_s": bound, "rows": rows}, indent=2)
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
