"""Forward throughput of the built-in model (EfficientNet-Lite0) through ``LoadedModel``.

    python bench/forward.py [--threads 2] [--batches 1,16,64] [--seconds 3]

The model is built once with ``ensure_builtin`` into ``bench/out/zoo`` (reused after).
Each batch size gets warm-up calls, then timed calls of ``LoadedModel.run`` on a
model-space batch (one ONNX Runtime call per batch: ``max_batch`` is set to the batch
size); the table gives the median.
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

from api_schemas.models import ModelManifest
from engine.models.runtime import LoadedModel, RuntimeOptions
from engine.models.zoo import BUILTIN_MODEL_ID, builtin_manifest, ensure_builtin

OUT = Path(__file__).resolve().parent / "out"


def load_model(cache_dir: Path, threads: int, max_batch: int) -> LoadedModel:
    path = ensure_builtin(cache_dir / "zoo")
    manifest = ModelManifest.model_validate(builtin_manifest())
    options = RuntimeOptions(intra_op_threads=threads, max_batch=max_batch)
    return LoadedModel(BUILTIN_MODEL_ID, "bench", path, manifest, options)


def sample_pixels(n: int, seed: int = 0) -> NDArray[np.float32]:
    """n images of 224×224 RGB pixels (content does not change a CNN's cost)."""
    rng = np.random.default_rng(seed)
    return rng.uniform(0, 255, size=(n, 224, 224, 3)).astype(np.float32)


def time_calls(
    fn: Callable[[], object], *, warmup: int, min_repeats: int, min_seconds: float
) -> list[float]:
    """Seconds per call: ``warmup`` untimed calls, then at least ``min_repeats`` timed calls
    and at least ``min_seconds`` of them."""
    for _ in range(warmup):
        fn()
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_repeats or time.perf_counter() - started < min_seconds:
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads (default 2)")
    ap.add_argument("--batches", default="1,16,64", help="comma-separated batch sizes")
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=5, help="at least this many timed calls")
    ap.add_argument("--seconds", type=float, default=3.0, help="and at least this long")
    ap.add_argument("--cache-dir", type=Path, default=OUT)
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    batches = [int(b) for b in args.batches.split(",") if b.strip()]

    model = load_model(args.cache_dir, args.threads, max(batches))
    print(
        f"# forward: {BUILTIN_MODEL_ID}, onnxruntime {ort.__version__}, "
        f"intra-op threads {args.threads}, nproc {os.cpu_count()}, "
        f"load average before {' '.join(f'{x:.2f}' for x in load_average())}",
        flush=True,
    )
    rows: list[dict[str, float]] = []
    for b in batches:
        x = model.to_model_input(sample_pixels(b))
        times = time_calls(
            lambda x=x: model.run(x),
            warmup=args.warmup,
            min_repeats=args.repeats,
            min_seconds=args.seconds,
        )
        med = statistics.median(times)
        rows.append(
            {
                "batch": b,
                "runs": len(times),
                "ms_per_batch": med * 1e3,
                "ms_per_image": med * 1e3 / b,
                "images_per_s": b / med,
                "min_ms_per_batch": min(times) * 1e3,
            }
        )
    print()
    print("| batch | runs | ms/batch (median) | ms/batch (min) | ms/image | images/s |")
    print("|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        print(
            f"| {r['batch']:.0f} | {r['runs']:.0f} | {r['ms_per_batch']:.1f} | "
            f"{r['min_ms_per_batch']:.1f} | {r['ms_per_image']:.2f} | {r['images_per_s']:.1f} |"
        )
    print(f"\nload average after: {' '.join(f'{x:.2f}' for x in load_average())}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"threads": args.threads, "rows": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
