"""Series methods on the built-in gunpoint-cnn: each method's time per call and its ratio
to the model's forward pass (one series through ``model.run``), in one run, with the
methods' default parameters (and LIME at 1000 samples). The gradient models are built
before timing (one warm-up call per method); the median of ``--runs`` calls is reported.

    python bench/time_series.py [--threads 1] [--runs 5]

Prints a Markdown table and writes bench/out/time_series.json.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import onnxruntime as ort

from api_schemas.modalities.time_series import TimeSeriesManifest
from engine.gradients import GradientCache
from engine.methods.base import no_progress
from engine.methods.registry import get_method
from engine.modalities.time_series import SeriesInput
from engine.models.runtime import LoadedModel, RuntimeOptions
from engine.models.zoo import gunpoint_cnn
from engine.objectives import ClassScore

OUT = Path(__file__).resolve().parent / "out"
METHODS: list[tuple[str, dict[str, Any]]] = [
    ("saliency", {}),
    ("grad_cam", {}),
    ("integrated_gradients", {}),
    ("occlusion", {}),
    ("occlusion", {"window": 8, "stride": 1}),
    ("lime", {}),
]


def median_time(fn: Any, runs: int) -> float:
    times = []
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=5)
    args = ap.parse_args()
    work = Path(tempfile.mkdtemp(prefix="lantern-bench-ts-"))
    path, record = gunpoint_cnn.ensure(work / "zoo")
    manifest = TimeSeriesManifest.model_validate(gunpoint_cnn.manifest())
    model = LoadedModel(
        "gunpoint-cnn", "bench", path, manifest,
        RuntimeOptions(intra_op_threads=args.threads), GradientCache(work / "grad"),
    )
    _, _, xte, _ = gunpoint_cnn.gunpoint()
    item = SeriesInput(xte[0])
    x = model.codec.item_input(item)
    model.run(x)
    forward = median_time(lambda: model.run(x), max(args.runs, 50))
    rows = []
    for name, params in METHODS:
        spec = get_method(name, "time_series")
        p = spec.parse_params(params)
        spec.check(p, model)

        def call(spec: Any = spec, p: Any = p) -> Any:
            return spec.fn(model, item, ClassScore(0), p, no_progress)

        res = call()  # warm-up: gradient models built, sessions created
        t = median_time(call, args.runs)
        rows.append({
            "method": name,
            "params": params or "defaults",
            "seconds": t,
            "ratio": t / forward,
            "model_calls": res.model_calls,
        })
    load = os.getloadavg()
    info = {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "threads": args.threads,
        "load_average": [round(v, 2) for v in load],
        "utc": datetime.now(UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "forward_seconds": forward,
        "held_out_accuracy": record["held_out_accuracy"],
        "train_seconds": record["train_seconds"],
        "rows": rows,
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "time_series.json").write_text(json.dumps(info, indent=1, default=str))
    print(f"Host: {info['cpu']}, {info['cores']} cores; onnxruntime {info['onnxruntime']}; "
          f"ORT threads {args.threads}; load average {' '.join(map(str, info['load_average']))}; "
          f"{info['utc']}. gunpoint-cnn (1 × 150), forward pass {1e3 * forward:.3f} ms "
          f"(median of {max(args.runs, 50)}); methods: median of {args.runs} calls.\n")
    print("| method | params | ms per call | × forward | model calls |")
    print("|---|---|---|---|---|")
    for r in rows:
        params = r["params"] if isinstance(r["params"], str) else json.dumps(r["params"])
        print(f"| {r['method']} | {params} | {1e3 * r['seconds']:.2f} | {r['ratio']:.1f} | "
              f"{r['model_calls']} |")


if __name__ == "__main__":
    main()
