"""The VJP batch: time per image of EfficientNet-Lite0's input gradient at batch 1, 8 and 16,
what ``LoadedModel.preferred_vjp_batch()`` measures and picks, and integrated gradients (50
steps) at the measured default against explicit batches, in one process, interleaved.

    python bench/vjp_batch.py [--threads 2] [--rounds 6] [--runs 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import numpy as np
from PIL import Image
from skimage import data

from engine.methods.base import no_progress
from engine.methods.registry import get_method
from engine.modalities.image import prepare_image
from engine.models.zoo import BUILTIN_MODEL_ID
from engine.objectives import class_score
from jobs.runtime import Runtime
from lantern.settings import Settings

OUT = Path(__file__).resolve().parent / "out"
BATCHES = (1, 8, 16)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    rt = Runtime(Settings(data_dir=OUT / "data", ort_threads=args.threads, redis_url=None))
    rt.ensure_builtin()
    model = rt.load(BUILTIN_MODEL_ID)
    image = prepare_image(Image.fromarray(data.chelsea()), model.manifest)
    x = model.to_model_input(image.pixels[None])
    seed = np.zeros_like(model.run(x))
    seed[:, 285] = 1.0
    print(f"# vjp_batch: threads {args.threads}, load before "
          f"{' '.join(f'{v:.2f}' for v in os.getloadavg())}, "
          f"GLIBC_TUNABLES={os.environ.get('GLIBC_TUNABLES') or '<unset>'}")

    for b in BATCHES:  # warm-up: sessions built
        model.vjp(np.repeat(x, b, 0), np.repeat(seed, b, 0))
    per: dict[int, list[float]] = {b: [] for b in BATCHES}
    for _ in range(args.rounds):
        for b in BATCHES:
            t0 = time.perf_counter()
            for _ in range(16 // b):
                model.vjp(np.repeat(x, b, 0), np.repeat(seed, b, 0))
            per[b].append((time.perf_counter() - t0) / 16 * 1000)
    chosen = model.preferred_vjp_batch()
    print("| VJP w.r.t. the input | " + " | ".join(f"batch {b}" for b in BATCHES) + " |")
    print("|---|" + "---:|" * len(BATCHES))
    print("| ms per image, median (min) | " + " | ".join(
        f"{statistics.median(per[b]):.2f} ({min(per[b]):.2f})" for b in BATCHES) + " |")
    print("| preferred_vjp_batch() timings | " + " | ".join(
        f"{model.vjp_batch_timings.get(b, float('nan')) * 1000:.2f}" for b in BATCHES) + " |")
    print(f"chosen: {chosen}")

    spec = get_method("integrated_gradients")
    runs: dict[str, tuple[object, object, list[float]]] = {}
    for label, b in (("default", None), ("16", 16), ("1", 1)):
        params = spec.parse_params({"steps": 50, "method": "gausslegendre",
                                    "internal_batch_size": b})
        objective = class_score(model, 285, params)
        spec.fn(model, image, objective, params, no_progress)
        runs[label] = (params, objective, [])
    for _ in range(args.runs):
        for params, objective, times in runs.values():
            t0 = time.perf_counter()
            spec.fn(model, image, objective, params, no_progress)  # type: ignore[arg-type]
            times.append(time.perf_counter() - t0)
    for label, (_, _, times) in runs.items():
        print(f"integrated_gradients 50, internal_batch_size {label}: median "
              f"{statistics.median(times) * 1000:.0f} ms (min {min(times) * 1000:.0f})")
    print(f"load after {' '.join(f'{v:.2f}' for v in os.getloadavg())}")


if __name__ == "__main__":
    main()
