"""Interleaved A/B of activation_maps: this tree's method against another commit's (default
23b5ac4, before the channel table was built from numpy columns and dropped from extras),
both in this process on the same loaded built-in model, on chelsea.

    python bench/ab_activation_maps.py [--rev 23b5ac4] [--rounds 8] [--calls 30]

The other commit's module is read with ``git show`` and executed without registering. Each
round times blocks of calls — forward, A, forward, B, forward (then B first next round) —
in **process CPU time** per call (1 ORT thread: ORT runs on the calling thread; wall time
swings with a shared host's load), for the method alone (``fn``) and for what a job does
with its answer too (``fn`` + ``pack`` of the artifacts + the extras as JSON, which the
store keeps in the job's summary). Ratios are to the median forward pass of the round;
"paired" is the median over rounds of B's ratio / A's.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time
import types
from pathlib import Path
from typing import Any

from PIL import Image

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from engine.artifacts import pack  # noqa: E402
from engine.methods.base import no_progress  # noqa: E402
from engine.methods.registry import get_method  # noqa: E402
from engine.modalities.image import prepare_image  # noqa: E402
from engine.objectives import ClassScore  # noqa: E402
from jobs.runtime import Runtime  # noqa: E402
from lantern.settings import Settings  # noqa: E402


def old_method(rev: str) -> Any:
    src = subprocess.run(["git", "show", f"{rev}:engine/methods/activation_maps.py"],
                         cwd=REPO, capture_output=True, text=True, check=True).stdout
    src = src.replace("SPEC = register(", "SPEC = (")
    module = types.ModuleType("activation_maps_old")
    sys.modules[module.__name__] = module
    exec(compile(src, f"{rev}:activation_maps.py", "exec"), module.__dict__)
    return module.activation_maps, module.ActivationMapsParams()


def cpu_ms(fn: Any, calls: int) -> float:
    times = []
    for _ in range(calls):
        t = time.process_time()
        fn()
        times.append((time.process_time() - t) * 1e3)
    return statistics.median(times)


def main() -> None:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--rev", default="23b5ac4")
    ap.add_argument("--rounds", type=int, default=8)
    ap.add_argument("--calls", type=int, default=30)
    ap.add_argument("--data-dir", type=Path, default=REPO / "bench" / "out" / "data")
    args = ap.parse_args()
    rt = Runtime(Settings(data_dir=args.data_dir, ort_threads=1))
    rt.ensure_builtin()
    model = rt.load("efficientnet-lite0")
    from skimage import data

    image = prepare_image(Image.fromarray(data.chelsea()), model.manifest)
    x = model.to_model_input(image.pixels[None])
    objective = ClassScore(285)
    spec = get_method("activation_maps")
    new_fn, new_params = spec.fn, spec.params_model()
    old_fn, old_params = old_method(args.rev)

    def job(fn: Any, params: Any) -> Any:
        def go() -> None:
            res = fn(model, image, objective, params, no_progress)
            pack(res.artifacts, res.views)
            json.dumps(res.extras)
        return go

    cases = {
        "A fn": lambda: old_fn(model, image, objective, old_params, no_progress),
        "B fn": lambda: new_fn(model, image, objective, new_params, no_progress),
        "A job": job(old_fn, old_params),
        "B job": job(new_fn, new_params),
    }
    forward = lambda: model.run(x)  # noqa: E731
    for f in [forward, *cases.values()]:
        for _ in range(3):
            f()  # warm-up: sessions, probe models, caches
    ratios: dict[str, list[float]] = {k: [] for k in cases}
    ms: dict[str, list[float]] = {k: [] for k in cases}
    fwd: list[float] = []
    for r in range(args.rounds):
        for kind in ("fn", "job"):
            order = ["A", "B"] if r % 2 == 0 else ["B", "A"]
            f0 = cpu_ms(forward, args.calls)
            got = {}
            for side in order:
                got[side] = cpu_ms(cases[f"{side} {kind}"], args.calls)
                f0 = (f0 + cpu_ms(forward, args.calls)) / 2 if side == order[0] else f0
            f1 = cpu_ms(forward, args.calls)
            f_med = statistics.median([f0, f1])
            fwd.append(f_med)
            for side in order:
                ms[f"{side} {kind}"].append(got[side])
                ratios[f"{side} {kind}"].append(got[side] / f_med)
    print(f"forward pass: {statistics.median(fwd):.2f} ms CPU (median of rounds)")
    print("| row | A ms | A × fwd | B ms | B × fwd | Δ ratio | paired Δ [min … max] |")
    for kind in ("fn", "job"):
        a, b = ratios[f"A {kind}"], ratios[f"B {kind}"]
        paired = [(y / x - 1) * 100 for x, y in zip(a, b, strict=True)]
        print(f"| activation_maps {kind} | {statistics.median(ms[f'A {kind}']):.2f} | "
              f"{statistics.median(a):.2f} | {statistics.median(ms[f'B {kind}']):.2f} | "
              f"{statistics.median(b):.2f} | "
              f"{(statistics.median(b) / statistics.median(a) - 1) * 100:+.1f} % | "
              f"{statistics.median(paired):+.1f} % [{min(paired):+.0f} … {max(paired):+.0f}] |")


if __name__ == "__main__":
    main()
