"""concept_graph (Summit) against its extraction's forward time, in the same run, on the
built-in digits-cnn over the built-in digits (1,797 images; conv1 → conv2 → conv3).

    .venv/bin/python bench/concept_graph.py [--repeats 3] [--chunk 256] [--digit 3]

Measured, per repeat, on a fresh cache:
  forward     model.run over the preprocessed images (decode + preprocess excluded): the
              floor of any analysis that sees every image once
  probe       the forward pass that exposes the convolutions' inputs (conv1, conv2)
  numpy       the partial convolutions and per-image top influences of both layer pairs
              over the probed inputs by numpy (im2col + one batched matmul per image: the
              path of layer pairs too large for ONNX Runtime)
  ort         the same maxima by ONNX Runtime (the model with a depthwise Conv and a
              ReduceMax per pair: one forward pass from the input) and the top influences:
              the path the analysis takes here
  stats       the activation cache's pass on an empty cache (decode, probe forward,
              pooled stats of conv1..conv3 and the logits, shards written)
  influence   then the influence shards (pixels mapped from that pass, probe forward,
              partial convolutions, top influences, shards written)
  cold        the whole analysis on another empty cache: stats + influence + assembly
  warm        another digit once every shard is there (no forward pass: aggregation,
              patches, the graph)
  render      the graph's SVG and PNG
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
    ap.add_argument("--digit", type=int, default=3)
    args = ap.parse_args()
    import onnxruntime as ort

    from api_schemas.objectives import ClassObjective
    from engine.datasets.activations import OUTPUT, ActivationCache, Target
    from engine.datasets.influence import (
        InfluenceStore,
        ort_partial_max,
        ort_plan,
        partial_conv_top,
        resolve_layers,
        top_influences,
    )
    from engine.methods.base import no_progress
    from engine.methods.registry import get_method
    from engine.objectives import resolve_objective
    from engine.render.registry import render
    from jobs.runtime import Runtime
    from lantern.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="lantern-bench-cg-"))
    zoo = Path(os.environ.get("LANTERN_ZOO", root / "zoo"))
    rt = Runtime(Settings(data_dir=root / "data", zoo=zoo, builtin_models=["digits-cnn"],
                          dataset_chunk_images=args.chunk, ort_threads=1))
    t = time.perf_counter()
    rt.ensure_builtin()
    setup = time.perf_counter() - t
    model = rt.load("digits-cnn")
    reader = rt.datasets.reader("digits")
    n = len(reader)
    spec = get_method("concept_graph", "image")
    params = spec.parse_params({})
    links = resolve_layers(model, None)
    inputs = sorted({ln.input for ln in links})
    first = resolve_objective(ClassObjective(target=args.digit), model)
    other = resolve_objective(ClassObjective(target=(args.digit + 1) % 10), model)
    steps = ("forward", "probe", "numpy", "ort", "stats", "influence", "cold", "warm",
             "render")
    by_ort, by_numpy, ort_batch = ort_plan(model, links)
    assert len(by_ort) == len(links) and not by_numpy
    targets = [Target(OUTPUT), *(Target(name) for name in
                                 [links[0].lower, *[ln.upper for ln in links]])]
    rows: dict[str, list[float]] = {k: [] for k in steps}
    result = None
    for rep in range(args.repeats):
        pixels = np.stack([model.codec.decode(reader.read(i)).pixels for i in range(n)])
        x = model.to_model_input(pixels.astype(np.float32))
        model.run(x[:16])  # warm
        t = time.perf_counter()
        model.run(x)
        rows["forward"].append(time.perf_counter() - t)
        model.probe(x[:16], inputs)  # the probe session, built
        t = time.perf_counter()
        probed = dict(zip(inputs, model.probe(x, inputs), strict=False))
        rows["probe"].append(time.perf_counter() - t)
        t = time.perf_counter()
        for ln in links:
            partial_conv_top(probed[ln.input], ln, params.top_influences)
        rows["numpy"].append(time.perf_counter() - t)
        ort_partial_max(model, x[:16], links, ort_batch)  # the session, built
        t = time.perf_counter()
        for m in ort_partial_max(model, x, links, ort_batch):
            top_influences(m, params.top_influences)
        rows["ort"].append(time.perf_counter() - t)
        cache = ActivationCache(root / f"parts{rep}", args.chunk)
        t = time.perf_counter()
        assert cache.ensure(model, reader, targets) == n
        rows["stats"].append(time.perf_counter() - t)
        t = time.perf_counter()
        assert InfluenceStore.beside(cache).ensure(model, reader, links,
                                                   params.top_influences) == n
        rows["influence"].append(time.perf_counter() - t)
        reader.activations = ActivationCache(root / f"acts{rep}", args.chunk)
        t = time.perf_counter()
        cold = spec.fn(model, reader, first, params, no_progress)
        rows["cold"].append(time.perf_counter() - t)
        assert cold.model_calls == 2 * n
        t = time.perf_counter()
        result = spec.fn(model, reader, other, params, no_progress)
        rows["warm"].append(time.perf_counter() - t)
        assert result.model_calls == 0
        t = time.perf_counter()
        render(result.artifacts[0], "svg")
        render(result.artifacts[0], "png")
        rows["render"].append(time.perf_counter() - t)
    assert result is not None
    med = {k: statistics.median(v) for k, v in rows.items()}
    la = os.getloadavg()
    print(f"host: {cpu()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}; "
          f"numpy {np.__version__}; load average {la[0]:.2f} {la[1]:.2f} {la[2]:.2f}; "
          f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    print(f"concept_graph, digits-cnn over digits: {n} images, layers "
          f"{' → '.join([links[0].lower, *[ln.upper for ln in links]])}, chunk {args.chunk}, "
          f"ORT 1 thread, {args.repeats} repeats (median); setup {setup:.1f} s; graph "
          f"{result.extras['nodes']} nodes, {result.extras['edges']} edges")
    print("| step | median s | images/s | × forward |")
    print("|---|---|---|---|")
    for k in steps:
        print(f"| {k} | {med[k]:.3f} | {n / med[k]:.0f} | {med[k] / med['forward']:.1f} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
