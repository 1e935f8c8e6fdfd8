"""Explanation quality: deletion/insertion AUC on natural images, and localisation.

    python bench/quality.py [--threads 2] [--images chelsea,astronaut,coffee,rocket]
                            [--methods grad_cam,saliency,...] [--pixels-per-step 224]
                            [--synthetic 50] [--skip-faithfulness] [--skip-localisation]

1. **Faithfulness** (Petsiuk et al., 2018): :func:`engine.quality.evaluate.evaluate_folder`
   on a few ``skimage.data`` images (written as PNGs to ``bench/out/quality/images``) with
   the built-in EfficientNet-Lite0, target top-1: grad_cam, saliency,
   integrated_gradients, occlusion (window 32, stride 16 to keep it short), lime, rise,
   with the methods' defaults otherwise. Deletion (zero substrate, lower is better) and
   insertion (from the σ = 5 blur, higher is better) at 224 pixels per step: 225 forward
   passes per curve.
2. **Localisation** (pointing game): :func:`engine.quality.evaluate.evaluate_pointing` on
   ``--synthetic`` images of :mod:`engine.quality.synthetic` (a red object on a textured
   background, 64×64) with the synthetic redness model, target "present", tolerance 0,
   every tied maximum inside the box. Three tables: params scaled to the 64-px images
   (occlusion window 8 stride 4; LIME / KernelSHAP on Felzenszwalb superpixels, as the
   tests use), then every method's defaults at tolerance 0 and at 4 px (Zhang et al.'s
   15 px on 224 px, scaled to 64).

Tables (markdown) and JSON go to ``bench/out/quality.md`` / ``bench/out/quality.json``.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
from PIL import Image

from api_schemas.models import ModelManifest
from engine.gradients import GradientCache
from engine.methods.registry import all_methods
from engine.models.runtime import LoadedModel, RuntimeOptions
from engine.quality.evaluate import (
    evaluate_folder,
    evaluate_pointing,
    format_pointing_table,
    format_table,
)
from engine.quality.metrics import DeletionParams, InsertionParams
from engine.quality.synthetic import PRESENT, synthetic_dataset, synthetic_model
from jobs.runtime import Runtime
from lantern.settings import Settings

OUT = Path(__file__).resolve().parent / "out"

IMAGE_METHODS = ["grad_cam", "saliency", "integrated_gradients", "occlusion", "lime", "rise"]
IMAGE_PARAMS: dict[str, dict[str, Any]] = {"occlusion": {"window": 32, "stride": 16}}
POINTING_METHODS = [
    "grad_cam",
    "occlusion",
    "lime",
    "rise",
    "integrated_gradients",
    "kernel_shap",
]
FELZENSZWALB = {"algorithm": "felzenszwalb", "scale": 100, "sigma": 0.5, "min_size": 20}
SCALED_PARAMS: dict[str, dict[str, Any]] = {
    "occlusion": {"window": 8, "stride": 4},
    "lime": {"segmentation": FELZENSZWALB},
    "kernel_shap": {"segmentation": FELZENSZWALB},
}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def builtin_model(data_dir: Path, threads: int) -> LoadedModel:
    rt = Runtime(Settings(data_dir=data_dir, ort_threads=threads, redis_url=None))
    rt.ensure_builtin()
    return rt.load("efficientnet-lite0")


def synthetic_loaded(directory: Path, threads: int) -> LoadedModel:
    proto, manifest = synthetic_model()
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "synthetic.onnx"
    import onnx

    onnx.save(proto, str(path))
    options = RuntimeOptions(intra_op_threads=threads)
    cache = GradientCache(directory / "gradients", intra_op_num_threads=threads)
    return LoadedModel(
        "synthetic-redness",
        "bench",
        path,
        ModelManifest.model_validate(manifest),
        options,
        cache,
    )


def write_images(names: list[str], folder: Path) -> None:
    from skimage import data

    folder.mkdir(parents=True, exist_ok=True)
    for old in folder.glob("*.png"):
        old.unlink()
    for name in names:
        img = np.asarray(getattr(data, name)())
        if img.ndim == 2:
            img = np.stack([img] * 3, axis=-1)
        Image.fromarray(img[..., :3].astype(np.uint8)).convert("RGB").save(folder / f"{name}.png")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads (default 2)")
    ap.add_argument("--images", default="chelsea,astronaut,coffee,rocket")
    ap.add_argument("--methods", default=",".join(IMAGE_METHODS))
    ap.add_argument("--pixels-per-step", type=int, default=224)
    ap.add_argument("--synthetic", type=int, default=50, help="synthetic images (pointing)")
    ap.add_argument("--pointing-methods", default=",".join(POINTING_METHODS))
    ap.add_argument("--skip-faithfulness", action="store_true")
    ap.add_argument("--skip-localisation", action="store_true")
    ap.add_argument("--data-dir", type=Path, default=OUT / "data")
    args = ap.parse_args(argv)

    registered = {s.name for s in all_methods()}
    report: dict[str, Any] = {"threads": args.threads, "load_before": load()}
    md: list[str] = []
    print(f"load average before: {load()}; threads {args.threads}, nproc {os.cpu_count()}")

    if not args.skip_faithfulness:
        model = builtin_model(args.data_dir, args.threads)
        folder = OUT / "quality" / "images"
        names = [n for n in args.images.split(",") if n]
        write_images(names, folder)
        methods = [m for m in args.methods.split(",") if m in registered]
        t0 = time.perf_counter()
        rows = evaluate_folder(
            model,
            folder,
            methods,
            IMAGE_PARAMS,
            "top1",
            deletion_params=DeletionParams(pixels_per_step=args.pixels_per_step),
            insertion_params=InsertionParams(pixels_per_step=args.pixels_per_step),
            log=lambda s: print("  " + s, file=sys.stderr, flush=True),
        )
        took = time.perf_counter() - t0
        title = (
            f"Faithfulness: EfficientNet-Lite0, {len(names)} images ({', '.join(names)}), "
            f"target top-1, {args.pixels_per_step} px per step; occlusion window 32 stride 16"
            f" ({took:.0f} s in all)"
        )
        table = format_table(rows)
        print(f"\n{title}\n\n{table}\n")
        md += [f"## {title}", "", table, ""]
        report["faithfulness"] = [r.to_dict() for r in rows]

    if not args.skip_localisation:
        with tempfile.TemporaryDirectory(prefix="lantern-quality-") as tmp:
            model = synthetic_loaded(Path(tmp), args.threads)
            samples = synthetic_dataset(args.synthetic, seed=0)
            methods = [m for m in args.pointing_methods.split(",") if m in registered]
            runs = [
                ("params scaled to 64 px", SCALED_PARAMS, 0.0),
                ("method defaults", {}, 0.0),
                ("method defaults", {}, 4.0),
            ]
            report["localisation"] = {}
            for label, params, tol in runs:
                rows_p = evaluate_pointing(
                    model, samples, methods, params, target=PRESENT, tolerance=tol
                )
                title = (
                    f"Pointing game: {len(samples)} synthetic 64×64 images, {label}, "
                    f"tolerance {tol:g} px"
                )
                table = format_pointing_table(rows_p)
                print(f"\n{title}\n\n{table}\n")
                md += [f"## {title}", "", table, ""]
                report["localisation"][label] = [r.to_dict() for r in rows_p]

    report["load_after"] = load()
    print(f"load average after: {load()}")
    OUT.mkdir(parents=True, exist_ok=True)
    (OUT / "quality.md").write_text("\n".join(md))
    (OUT / "quality.json").write_text(json.dumps(report, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
