"""Every registered method end to end on chelsea with the built-in model (EfficientNet-Lite0).

    python bench/methods.py [--threads 2] [--runs 5] [--methods saliency,grad_cam,...]

Each method of ``engine.methods.registry.all_methods()`` is called as the workers call it:
``spec.check(params, model)``, one untimed warm-up call (it builds and caches the gradient
models, opens the probe sessions, imports scikit-learn / scikit-image), then timed calls of
``spec.fn(model, image, objective, params, no_progress)`` with the class objective of 285
(``engine.objectives.class_score``: scored as the method's ``score`` param says): at least
``--runs`` and, for the fast ones, at least ``--seconds`` of them (at most ``--max-runs``);
median and minimum.
Parameters are the method's defaults except: integrated_gradients steps 50, smoothgrad
samples 25, lime num_samples 1000, rise num_masks 2000, kernel_shap num_samples 1000,
occlusion window 16 stride 8, plus rows for occlusion with full passes and in drill-down
mode (coarse stride 16, fine stride 8), integrated gradients refined to a completeness
tolerance of 1 % from 64 points, and SmoothGrad averaging |gradient|. Also timed: one
forward pass of one image (``LoadedModel.run``), and each method's time as a multiple of it.
``model_calls`` is what the method reports (images through the network, forward or
forward+backward). For the perturbation methods the
"forward floor" is model_calls × the per-image time of one forward batch of 16 (their
``batch_size``): what the forward passes alone cost, so median − floor is the method's own
overhead. The target column holds the stated time targets for 2 cores; ok / over compares
the median with it.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort
from PIL import Image

from engine.artifacts import Result
from engine.methods.base import MethodSpec, no_progress
from engine.methods.registry import all_methods
from engine.modalities.image import ImageInput, prepare_image
from engine.models.runtime import LoadedModel
from engine.models.zoo import BUILTIN_MODEL_ID
from engine.objectives import class_score
from jobs.runtime import Runtime
from lantern.settings import Settings

OUT = Path(__file__).resolve().parent / "out"
TARGET_CLASS = 285  # "Egyptian cat", chelsea's top class


@dataclass(frozen=True)
class Case:
    label: str
    method: str
    params: dict[str, Any] = field(default_factory=dict)
    target_s: float | None = None


#: Parameters (besides the defaults) and time targets (2 cores) by method. A method of the
#: registry that is not here runs with its defaults and no target.
CONFIGS: dict[str, list[Case]] = {
    "saliency": [Case("saliency", "saliency", {}, 0.020)],
    "grad_cam": [Case("grad_cam", "grad_cam", {}, 0.012)],
    "integrated_gradients": [
        Case("integrated_gradients", "integrated_gradients", {"steps": 50}, 1.0),
        Case(
            "integrated_gradients (tolerance)",
            "integrated_gradients",
            {"steps": 64, "tolerance": 0.01},
        ),
    ],
    "smoothgrad": [
        Case("smoothgrad", "smoothgrad", {"samples": 25}, 0.5),
        Case("smoothgrad (average abs)", "smoothgrad", {"samples": 25, "average": "abs"}),
    ],
    "lime": [Case("lime", "lime", {"num_samples": 1000}, 3.6)],
    "rise": [Case("rise", "rise", {"num_masks": 2000}, 7.0)],
    "kernel_shap": [Case("kernel_shap", "kernel_shap", {"num_samples": 1000})],
    "occlusion": [
        Case("occlusion", "occlusion", {"window": 16, "stride": 8}, 4.4),
        Case(
            "occlusion (full passes)",
            "occlusion",
            {"window": 16, "stride": 8, "incremental": False},
            4.4,
        ),
        Case(
            "occlusion (drilldown)",
            "occlusion",
            {"window": 16, "mode": "drilldown", "coarse_stride": 16, "fine_stride": 8},
            1.5,
        ),
    ],
}


def load_model(data_dir: Path, threads: int) -> LoadedModel:
    settings = Settings(data_dir=data_dir, ort_threads=threads, redis_url=None)
    rt = Runtime(settings)
    rt.ensure_builtin()
    return rt.load(BUILTIN_MODEL_ID)


def chelsea(model: LoadedModel) -> ImageInput:
    from skimage import data

    return prepare_image(Image.fromarray(data.chelsea()), model.manifest)


def time_calls(
    fn: Callable[[], object], *, min_runs: int, min_seconds: float, max_runs: int
) -> list[float]:
    """Seconds per call: at least ``min_runs`` calls and at least ``min_seconds`` of them,
    but no more than ``max_runs`` (never fewer than ``min_runs``)."""
    times: list[float] = []
    started = time.perf_counter()
    while len(times) < min_runs or (
        time.perf_counter() - started < min_seconds and len(times) < max_runs
    ):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return times


def cases_for(specs: list[MethodSpec[Any]], wanted: set[str] | None) -> list[Case]:
    out: list[Case] = []
    for spec in specs:
        for case in CONFIGS.get(spec.name, [Case(spec.name, spec.name)]):
            if wanted is None or case.method in wanted or case.label in wanted:
                out.append(case)
    return out


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def uptime() -> str:
    try:
        res = subprocess.run(["uptime"], capture_output=True, text=True, check=False)
        return res.stdout.strip() or f"load average: {load()}"
    except OSError:
        return f"load average: {load()}"


def fmt_time(seconds: float) -> str:
    return f"{seconds * 1e3:.1f} ms" if seconds < 1.0 else f"{seconds:.2f} s"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--threads", type=int, default=2, help="ORT intra-op threads (default 2)")
    ap.add_argument("--runs", type=int, default=5, help="at least this many timed runs")
    ap.add_argument(
        "--seconds", type=float, default=1.0, help="and, for fast methods, at least this long"
    )
    ap.add_argument("--max-runs", type=int, default=100, help="at most this many timed runs")
    ap.add_argument(
        "--methods",
        default="",
        help="comma-separated method names (or row labels) to run; default: all",
    )
    ap.add_argument("--target", type=int, default=TARGET_CLASS, help="class to explain")
    ap.add_argument("--data-dir", type=Path, default=OUT / "data")
    ap.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = ap.parse_args(argv)
    wanted = {m.strip() for m in args.methods.split(",") if m.strip()} or None

    print(f"uptime before: {uptime()}", flush=True)
    specs = all_methods()
    by_name = {s.name: s for s in specs}
    if wanted is not None:
        known = set(by_name) | {c.label for cs in CONFIGS.values() for c in cs}
        unknown = sorted(wanted - known)
        if unknown:
            ap.error(f"unknown method(s) {unknown}; registered: {', '.join(sorted(by_name))}")
    cases = cases_for(specs, wanted)

    model = load_model(args.data_dir, args.threads)
    image = chelsea(model)
    x1 = model.to_model_input(image.pixels[None])
    logits = model.run(x1)[0]
    target = args.target
    print(
        f"# methods: {BUILTIN_MODEL_ID} on chelsea, target {target} ({model.labels[target]}; "
        f"top class {int(np.argmax(logits))}); onnxruntime {ort.__version__}, intra-op "
        f"threads {args.threads}, nproc {os.cpu_count()}; timed runs: at least {args.runs} "
        f"(and {args.seconds:g} s, at most {args.max_runs}) after 1 warm-up",
        flush=True,
    )

    for _ in range(5):
        model.run(x1)
    fwd_times = time_calls(lambda: model.run(x1), min_runs=20, min_seconds=2.0, max_runs=1000)
    fwd = statistics.median(fwd_times)
    x16 = np.repeat(x1, 16, axis=0)
    model.run(x16)
    fwd16_times = time_calls(lambda: model.run(x16), min_runs=5, min_seconds=2.0, max_runs=100)
    fwd16 = statistics.median(fwd16_times) / 16
    print(
        f"forward, batch 1: median {fwd * 1e3:.2f} ms, min {min(fwd_times) * 1e3:.2f} ms "
        f"({len(fwd_times)} runs); batch 16: median {fwd16 * 1e3:.2f} ms/image "
        f"({len(fwd16_times)} runs)",
        flush=True,
    )

    rows: list[dict[str, Any]] = []
    for case in cases:
        spec = by_name[case.method]
        params = spec.parse_params(case.params)
        spec.check(params, model)
        objective = class_score(model, target, params)
        out: list[Result] = []

        def call(
            spec: MethodSpec[Any] = spec,
            params: Any = params,
            objective: Any = objective,
            out: list[Result] = out,
        ) -> None:
            item = None if spec.inputs == "none" else image  # as the runner passes it
            out[:] = [spec.fn(model, item, objective, params, no_progress)]

        t0 = time.perf_counter()
        call()  # warm-up: gradient models, probe sessions, lazy imports
        warm = time.perf_counter() - t0
        times = time_calls(
            call, min_runs=args.runs, min_seconds=args.seconds, max_runs=args.max_runs
        )
        med = statistics.median(times)
        attr = out[-1]
        status = "" if case.target_s is None else ("ok" if med <= case.target_s else "over")
        shown = ", ".join(f"{k}={v}" for k, v in case.params.items())
        rows.append(
            {
                "label": case.label,
                "method": case.method,
                "params": case.params,
                "kind": spec.kind,
                "runs": len(times),
                "warmup_s": warm,
                "median_s": med,
                "min_s": min(times),
                "x_forward": med / fwd,
                "forward_floor_s": (
                    attr.model_calls * fwd16 if spec.kind == "perturbation" else None
                ),
                "model_calls": attr.model_calls,
                "backward_passes": attr.extras.get("backward_passes"),
                "target_s": case.target_s,
                "status": status,
            }
        )
        print(
            f"  {case.label}{f' ({shown})' if shown else ''}: warm-up {fmt_time(warm)}, "
            f"median {fmt_time(med)}, min {fmt_time(min(times))} over {len(times)} runs; "
            f"{med / fwd:.1f}× forward; model_calls {attr.model_calls}"
            + (f"; target {fmt_time(case.target_s)} {status}" if case.target_s else ""),
            flush=True,
        )

    print()
    print(
        f"forward pass (batch 1): {fwd * 1e3:.2f} ms median; batch 16: {fwd16 * 1e3:.2f} "
        f"ms/image; threads {args.threads}; "
        f"target class {target}"
    )
    if model.batch_timings:
        timed = ", ".join(f"{b}: {t * 1e3:.2f}" for b, t in sorted(model.batch_timings.items()))
        print(
            f"perturbation batch (measured, LANTERN_FORWARD_BATCH=0): "
            f"{model.preferred_batch()} (ms/image by batch: {timed})"
        )
    print()
    print(
        "| method | params | kind | runs | median | min | × forward | model_calls "
        "| forward floor | target | |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|---:|---|")
    for r in rows:
        shown = ", ".join(f"{k} {v}" for k, v in r["params"].items()) or "defaults"
        tgt = fmt_time(r["target_s"]) if r["target_s"] is not None else "—"
        fl = r["forward_floor_s"]
        floor = fmt_time(fl) if fl is not None else "—"
        print(
            f"| {r['label']} | {shown} | {r['kind']} | {r['runs']} | {fmt_time(r['median_s'])} "
            f"| {fmt_time(r['min_s'])} | {r['x_forward']:.1f} | {r['model_calls']} | {floor} "
            f"| {tgt} "
            f"| {r['status']} |"
        )
    over = [r["label"] for r in rows if r["status"] == "over"]
    print(f"\nover target: {', '.join(over) if over else 'none'}")
    print(f"uptime after: {uptime()}")
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(
            json.dumps(
                {
                    "threads": args.threads,
                    "target": target,
                    "forward_ms": fwd * 1e3,
                    "forward_min_ms": min(fwd_times) * 1e3,
                    "forward_batch16_ms_per_image": fwd16 * 1e3,
                    "rows": rows,
                },
                indent=2,
            )
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
