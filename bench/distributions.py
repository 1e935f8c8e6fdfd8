"""activation_distributions: the analysis's time over the built-in digits (1,797 images,
digits-cnn) against the model's own forward time, with a cold and a warm activation cache,
in the same run.

    .venv/bin/python bench/distributions.py [--repeats 3] [--chunk 256]

Measured, per repeat, on a fresh activation cache:
  forward        model.run over the preprocessed images (decode + preprocess excluded)
  cold conv3     the analysis of conv3 (correct vs incorrect) on an empty cache: the
                 extraction (decode, forward, pooled stats, shards) and the assembly
  warm conv3     the same request again: read from the cache (no forward pass)
  warm 3 vs 8    label 3 vs label 8 (max per image, 64 bins): another request, same cache
  cold 3 layers  conv1 + conv2 + conv3 (80 channels), by label (10 sets), on a cache that
                 holds conv3 only (conv1, conv2 extracted)
  warm 3 layers  the same again
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

STEPS = ("forward", "cold conv3", "warm conv3", "warm 3 vs 8", "cold 3 layers",
         "warm 3 layers")


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--chunk", type=int, default=256)
    args = ap.parse_args()
    import onnxruntime as ort

    from api_schemas.objectives import ClassObjective
    from engine.datasets.activations import ActivationCache
    from engine.methods.base import no_progress
    from engine.methods.registry import get_method
    from engine.objectives import resolve_objective
    from jobs.runtime import Runtime
    from lantern.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="lantern-bench-dist-"))
    zoo = Path(os.environ.get("LANTERN_ZOO", root / "zoo"))
    rt = Runtime(Settings(data_dir=root / "data", zoo=zoo, builtin_models=["digits-cnn"],
                          dataset_chunk_images=args.chunk, ort_threads=1))
    t = time.perf_counter()
    rt.ensure_builtin()
    setup = time.perf_counter() - t
    model = rt.load("digits-cnn")
    reader = rt.datasets.reader("digits")
    n = len(reader)
    spec = get_method("activation_distributions", "image")
    cls = resolve_objective(ClassObjective(target=0), model)
    requests: dict[str, dict[str, Any]] = {
        "conv3": {"layers": "conv3", "sets": [{"by": "correct"}, {"by": "incorrect"}]},
        "3 vs 8": {"layers": "conv3", "statistic": "max", "bins": 64,
                   "sets": [{"by": "label", "value": "3"}, {"by": "label", "value": "8"}]},
        "3 layers": {"layers": ["conv1", "conv2", "conv3"], "sets": "by_label"},
    }
    rows: dict[str, list[float]] = {k: [] for k in STEPS}
    calls: dict[str, int] = {}

    def timed(step: str, request: str) -> Any:
        t = time.perf_counter()
        res = spec.fn(model, reader, cls, spec.parse_params(requests[request]), no_progress)
        rows[step].append(time.perf_counter() - t)
        calls[step] = res.model_calls
        return res

    for rep in range(args.repeats):
        pixels = np.stack([model.codec.decode(reader.read(i)).pixels for i in range(n)])
        x = model.to_model_input(pixels.astype(np.float32))
        model.run(x[:16])  # warm
        t = time.perf_counter()
        model.run(x)
        rows["forward"].append(time.perf_counter() - t)
        reader.activations = ActivationCache(root / f"acts{rep}", args.chunk)
        timed("cold conv3", "conv3")
        res = timed("warm conv3", "conv3")
        timed("warm 3 vs 8", "3 vs 8")
        timed("cold 3 layers", "3 layers")
        timed("warm 3 layers", "3 layers")
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"host: {cpu()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}; "
          f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"activation_distributions, digits-cnn over digits: {n} images, chunk {args.chunk}, "
          f"ORT 1 thread, {args.repeats} repeats (median); setup (build/register) "
          f"{setup:.1f} s")
    print("| step | median s | × forward | forward passes |")
    print("|---|---|---|---|")
    for k in STEPS:
        passes = n if k == "forward" else calls[k]
        print(f"| {k} | {med[k]:.3f} | {med[k] / med['forward']:.2f} | {passes} |")
    top = res.extras["top_channel"]
    sizes = {s["name"]: s["size"] for s in res.extras["sets"]}
    print(f"correct vs incorrect ({sizes['correct']} / {sizes['incorrect']}): top channel "
          f"conv3 #{top['channel']}, AUROC {top['auroc']:.3f}, q {top['q_value']:.2g}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
