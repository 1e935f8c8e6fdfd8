"""Dataset analyses: activation extraction throughput vs the model's own forward throughput,
in the same run, on the built-in digits-cnn over the built-in digits (1,797 images).

    .venv/bin/python bench/datasets.py [--repeats 3] [--chunk 256]

Measured, per repeat, on a fresh activation cache:
  forward      model.run over the preprocessed images (decode + preprocess excluded)
  decode       reading + decoding + resizing every image (what extraction adds first)
  extract      ActivationCache.ensure for conv1, conv2, conv3 and the logits (decode,
               probe forward, pooled stats, .npz shards written)
  cached       max_activating on conv3 once the cache is full (no forward pass)
  predictions  dataset_predictions from the cache
and the held-out accuracy of the model (from its training record).
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

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


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

    from api_schemas.objectives import ChannelObjective, ClassObjective
    from engine.datasets.activations import OUTPUT, ActivationCache, Target
    from engine.methods.base import no_progress
    from engine.methods.registry import get_method
    from engine.objectives import resolve_objective
    from jobs.runtime import Runtime
    from lantern.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="lantern-bench-ds-"))
    zoo = Path(os.environ.get("LANTERN_ZOO", root / "zoo"))
    rt = Runtime(Settings(data_dir=root / "data", zoo=zoo, builtin_models=["digits-cnn"],
                          dataset_chunk_images=args.chunk, ort_threads=1))
    t = time.perf_counter()
    rt.ensure_builtin()
    setup = time.perf_counter() - t
    model = rt.load("digits-cnn")
    reader = rt.datasets.reader("digits")
    n = len(reader)
    targets = [Target(OUTPUT), *(Target(f"conv{i}") for i in (1, 2, 3))]
    rows: dict[str, list[float]] = {k: [] for k in
                                    ("forward", "decode", "extract", "cached", "predictions")}
    spec_max = get_method("max_activating", "image")
    spec_pred = get_method("dataset_predictions", "image")
    channel = resolve_objective(ChannelObjective(kind="channel", layer="conv3", channel=3), model)
    cls = resolve_objective(ClassObjective(target=0), model)
    for rep in range(args.repeats):
        t = time.perf_counter()
        pixels = np.stack([model.codec.decode(reader.read(i)).pixels for i in range(n)])
        rows["decode"].append(time.perf_counter() - t)
        x = model.to_model_input(pixels.astype(np.float32))
        model.run(x[:16])  # warm
        t = time.perf_counter()
        model.run(x)
        rows["forward"].append(time.perf_counter() - t)
        reader.activations = ActivationCache(root / f"acts{rep}", args.chunk)
        t = time.perf_counter()
        passes = reader.activations.ensure(model, reader, targets)
        rows["extract"].append(time.perf_counter() - t)
        assert passes == n
        t = time.perf_counter()
        res = spec_max.fn(model, reader, channel, spec_max.parse_params({"k": 16}), no_progress)
        rows["cached"].append(time.perf_counter() - t)
        assert res.model_calls == 0
        t = time.perf_counter()
        pred = spec_pred.fn(model, reader, cls, spec_pred.parse_params({}), no_progress)
        rows["predictions"].append(time.perf_counter() - t)
    import json

    record = json.loads((zoo / "digits-cnn.json").read_text())
    med = {k: statistics.median(v) for k, v in rows.items()}
    print(f"host: {cpu()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}; "
          f"load average {os.getloadavg()[0]:.2f} {os.getloadavg()[1]:.2f} "
          f"{os.getloadavg()[2]:.2f}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"digits-cnn over digits: {n} images, chunk {args.chunk}, ORT 1 thread, "
          f"{args.repeats} repeats (median); setup (build/register) {setup:.1f} s")
    print("| step | median s | images/s | × forward |")
    print("|---|---|---|---|")
    for k in ("forward", "decode", "extract", "cached", "predictions"):
        print(f"| {k} | {med[k]:.3f} | {n / med[k]:.0f} | {med[k] / med['forward']:.1f} |")
    print(f"dataset accuracy (all 1,797, train included): {pred.extras['accuracy']:.4f}; "
          f"held-out accuracy (record): {record['held_out_accuracy']}; training "
          f"{record['train_seconds']} s, {record['epochs']} epochs, {record['steps']} steps")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
