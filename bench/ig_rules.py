"""Integrated gradients, error per pass: each quadrature rule at each point count against the
converged integral, on the bundled photos with the built-in model.

    python bench/ig_rules.py [--images chelsea,astronaut,...] [--steps 16,24,32,40,50,64]
        [--rules gausslegendre,riemann_middle,riemann_trapezoid] [--reference 1024]

For every photo (target: its top class, black baseline, channels summed) the reference is
the midpoint rule at ``--reference`` points; every (rule, points) map is scored by its
Pearson r with that reference and by its relative completeness error
``|Σ attribution − (f(x) − f(x′))| / |f(x) − f(x′)|``. Prints one row per photo and then,
per (rule, points), the median / mean / max error and the median / min r over the photos,
so that "fewer points for the same answer" is read off one table. Passes are deterministic
(one VJP per point), so the table needs no timing; seconds per photo are printed for
orientation only.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from time_to_quality import pearson, photo

OUT = Path(__file__).resolve().parent / "out"
IMAGES = ("chelsea,astronaut,coffee,rocket,camera,retina,immunohistochemistry,colorwheel,"
          "coins,hubble_deep_field")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--images", default=IMAGES)
    ap.add_argument("--steps", default="16,24,32,40,50,64")
    ap.add_argument("--rules", default="gausslegendre,riemann_middle,riemann_trapezoid")
    ap.add_argument("--reference", type=int, default=1024)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=OUT / "data")
    ap.add_argument("--json", type=Path, default=OUT / "ig_rules.json")
    args = ap.parse_args(argv)

    from PIL import Image

    from engine.methods.base import no_progress
    from engine.methods.registry import get_method
    from engine.modalities.image import prepare_image
    from engine.models.zoo import BUILTIN_MODEL_ID
    from engine.objectives import ClassScore
    from jobs.runtime import Runtime
    from lantern.settings import Settings

    rt = Runtime(Settings(data_dir=args.data_dir, ort_threads=args.threads, redis_url=None))
    rt.ensure_builtin()
    model = rt.load(BUILTIN_MODEL_ID)
    spec = get_method("integrated_gradients", "image")
    steps = [int(v) for v in args.steps.split(",")]
    rules = args.rules.split(",")
    print(f"# ig_rules: reference {args.reference}-point midpoint, threads {args.threads}",
          flush=True)
    rows: list[dict[str, Any]] = []
    for name in args.images.split(","):
        image = prepare_image(Image.fromarray(photo(name)), model.manifest)
        target = int(np.argmax(model.scores(image.pixels[None])[0]))
        objective = ClassScore(target, "logit", model.labels[target])

        def run(rule: str, n: int, image: Any = image, objective: Any = objective) -> Any:
            params = spec.parse_params({"steps": n, "method": rule, "baseline": "zero",
                                        "reduce": "signed"})
            return spec.fn(model, image, objective, params, no_progress)

        t0 = time.perf_counter()
        ref = run("riemann_middle", args.reference)
        row: dict[str, Any] = {"photo": name, "target": target,
                               "reference_error": ref.extras["completeness_error"]}
        for rule in rules:
            for n in steps:
                res = run(rule, n)
                row[f"{rule}:{n}"] = [res.extras["completeness_error"],
                                      pearson(res.values, ref.values)]
        rows.append(row)
        print(f"{json.dumps(row)}  # {time.perf_counter() - t0:.0f} s", flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))
    summarise(rows, rules, steps)
    return 0


def summarise(rows: list[dict[str, Any]], rules: list[str], steps: list[int]) -> None:
    print(f"\n{len(rows)} photos; error = relative completeness error, r = Pearson with the "
          "reference map")
    print("| rule | points | median error % | mean error % | max error % | median r | min r |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    for rule in rules:
        for n in steps:
            err = [100 * row[f"{rule}:{n}"][0] for row in rows]
            r = [row[f"{rule}:{n}"][1] for row in rows]
            print(f"| {rule} | {n} | {statistics.median(err):.2f} | {statistics.fmean(err):.2f} "
                  f"| {max(err):.1f} | {statistics.median(r):.5f} | {min(r):.5f} |")


if __name__ == "__main__":
    sys.exit(main())
