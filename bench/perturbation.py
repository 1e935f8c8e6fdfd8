"""Perturbation methods end to end on chelsea with the built-in model (EfficientNet-Lite0).

    python bench/perturbation.py [--threads 0] [--runs 1] [--fractions 0.1,0.25,0.5]

LIME (1000 samples), RISE (2000 masks), KernelSHAP (1000 coalitions), exact occlusion
(window 16, stride 8; with incremental inference, the default, and with full passes) and
occlusion drill-down (coarse stride 16, fine stride 8) at a few fractions; every method
with its defaults otherwise (the model's measured best batch), the model's top class as
target. The model is built and registered as the workers do it. Printed: a markdown table
of seconds (median of ``--runs``), forward passes (as counted by the method, references
included) and, for drill-down, the SSIM of its map against the exact map
(``skimage.metrics.structural_similarity``, data range of the exact map). Also checked:
RISE evaluated in chunks of 300 masks gives the same map bit for bit.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from engine.artifacts import Result
from engine.methods.base import no_progress
from engine.methods.kernel_shap import KernelShapParams, kernel_shap
from engine.methods.lime import LimeParams, lime
from engine.methods.occlusion import OcclusionParams, occlusion
from engine.methods.perturbation import run_plan
from engine.methods.registry import get_method
from engine.methods.rise import RiseParams, rise
from engine.modalities.image import ImageInput, prepare_image
from engine.models.runtime import LoadedModel
from engine.models.zoo import BUILTIN_MODEL_ID
from engine.objectives import ClassScore
from jobs.runtime import Runtime
from lantern.settings import Settings

OUT = Path(__file__).resolve().parent / "out"


def load_model(data_dir: Path, threads: int) -> LoadedModel:
    settings = Settings(data_dir=data_dir, ort_threads=threads, max_batch=16, redis_url=None)
    rt = Runtime(settings)
    rt.ensure_builtin()
    return rt.load(BUILTIN_MODEL_ID)


def chelsea(model: LoadedModel) -> ImageInput:
    from skimage import data

    return prepare_image(Image.fromarray(data.chelsea()), model.manifest)


def timed(fn: Any, runs: int) -> tuple[list[float], Result]:
    times: list[float] = []
    out: Result | None = None
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    assert out is not None
    return times, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=0, help="ORT intra-op threads (0 = all)")
    ap.add_argument("--runs", type=int, default=1, help="timed runs per method")
    ap.add_argument("--fractions", default="0.1,0.25,0.5", help="drill-down fractions")
    ap.add_argument("--data-dir", type=Path, default=OUT / "data")
    ap.add_argument("--skip-chunk-check", action="store_true")
    args = ap.parse_args(argv)
    from skimage.metrics import structural_similarity

    model = load_model(args.data_dir, args.threads)
    image = chelsea(model)
    top = int(np.argmax(model.scores(image.pixels[None])[0]))
    target = ClassScore(top, "logit", model.labels[top])  # every case here scores logits
    # warm-up, as a worker is after its first job: the session, and the imports of
    # scikit-learn / scikit-image that the first LIME or KernelSHAP job pays for (~0.5 s)
    model.run(model.to_model_input(np.repeat(image.pixels[None], 16, axis=0)))
    lime(model, image, target, LimeParams(num_samples=2), no_progress)
    kernel_shap(model, image, target, KernelShapParams(num_samples=2), no_progress)
    print(
        f"# perturbation methods: {BUILTIN_MODEL_ID} on chelsea, target {top} "
        f"({model.labels[top]}); onnxruntime {ort.__version__}, threads "
        f"{args.threads or 'all'} ({os.cpu_count()} cores), load average before "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )
    cases: list[tuple[str, Any]] = [
        ("LIME, 1000 samples", lambda: lime(model, image, target, LimeParams(), no_progress)),
        ("RISE, 2000 masks", lambda: rise(model, image, target, RiseParams(), no_progress)),
        (
            "KernelSHAP, 1000 coalitions",
            lambda: kernel_shap(model, image, target, KernelShapParams(), no_progress),
        ),
        (
            "occlusion exact, w16 s8",
            lambda: occlusion(model, image, target, OcclusionParams(), no_progress),
        ),
        (
            "occlusion exact, w16 s8, full passes",
            lambda: occlusion(
                model, image, target, OcclusionParams(incremental=False), no_progress
            ),
        ),
    ]
    for f in (float(x) for x in args.fractions.split(",") if x.strip()):
        p = OcclusionParams(mode="drilldown", coarse_stride=16, fine_stride=8, fraction=f)
        cases.append(
            (
                f"occlusion drill-down, w16 s16→8, fraction {f:g}",
                lambda p=p: occlusion(model, image, target, p, no_progress),
            )
        )
    rows: list[tuple[str, float, int, str]] = []
    exact: np.ndarray[Any, Any] | None = None
    maps: dict[str, Result] = {}
    for name, fn in cases:
        times, attr = timed(fn, args.runs)
        maps[name] = attr
        ssim = ""
        if name == "occlusion exact, w16 s8":
            exact = attr.values
        elif name.startswith("occlusion exact") and exact is not None:
            diff = float(np.abs(attr.values - exact).max())
            ssim = "map identical" if diff == 0.0 else f"max |difference| {diff:.2e}"
        elif name.startswith("occlusion drill-down") and exact is not None:
            rng = float(exact.max() - exact.min())
            ssim = f"{structural_similarity(exact, attr.values, data_range=rng):.3f}"
            ssim += f" (saved {attr.extras['forward_passes_saved']} passes)"
        rows.append((name, statistics.median(times), attr.model_calls, ssim))
        print(f"  {name}: {', '.join(f'{t:.2f}' for t in times)} s", flush=True)

    print()
    print("| method | seconds | forward passes | SSIM vs exact |")
    print("|---|---:|---:|---|")
    for name, sec, calls, ssim in rows:
        print(f"| {name} | {sec:.2f} | {calls} | {ssim} |")
    lime_r2 = maps["LIME, 1000 samples"].extras["r2"]
    ks = maps["KernelSHAP, 1000 coalitions"].extras
    print(
        f"\nLIME surrogate R² {lime_r2:.3f}; KernelSHAP sum_check {ks['sum_check']:.2e} "
        f"over {ks['n_segments']} segments"
    )
    if not args.skip_chunk_check:
        plan = get_method("rise").plan
        assert plan is not None
        chunked = run_plan(plan, model, image, target, RiseParams(), no_progress, chunk=300)
        same = np.array_equal(chunked.values, maps["RISE, 2000 masks"].values)
        print(f"RISE in chunks of 300 == one chunk, bit for bit: {same}")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
