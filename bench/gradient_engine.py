"""Forward vs forward+backward (VJP) time of the built-in EfficientNet-Lite0.

    python bench/gradient_engine.py [--threads 1,2] [--batches 1,16] [--repeats 10]
                                    [--block 5] [--levels none,prune,full,before,fast]
                                    [--wrt input,head.act] [--profile]
                                    [--zoo /tmp/lantern-zoo]

For each batch size: the forward model, then the VJP model with respect to the input
built several ways (raw onnx-ad graph, dead nodes pruned, fully optimised), and the VJP
with respect to the last spatial layer ``head.act`` (the Grad-CAM case). Every session
runs with ``ORT_ENABLE_ALL`` and, in turn, each of ``--threads`` intra-op thread counts.
Variants are timed in turn, in blocks of ``--block`` consecutive runs (each block after
one unmeasured run), so load drift hits them alike while one session's spinning thread
pool does not slow the next; the table gives the median and the minimum, per batch and
per image, and the ratio of the median (and of the minimum) to the forward's. A final
summary gives forward vs the optimised VJP per thread count and batch, with node counts.

Variant "eqmask" is the optimised model with ``OptimizeOptions(conv_clip_masks=False)``
(Clip masks as ``Equal(x, Clip(x))`` in plain NCHW), "keepct" with
``zero_insertion=False`` (strided depthwise ConvTransposes kept), "before" with both (the
optimiser's output before those two rewrites). Variant "fast" is the optimised model with
``mask_from_output=True`` and ``conv_clip_masks=False`` (Clip masks from the Clip's
output: not equal to raw at exact bounds).
``--profile`` adds ORT's per-op kernel time for the optimised models.
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import onnx
import onnxruntime as ort

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from engine.gradients.builder import OptimizeLevel, build_vjp_model
from engine.gradients.optimize import OptimizeOptions
from engine.models.zoo import ensure_builtin


def options(threads: int, profile_prefix: str | None = None) -> ort.SessionOptions:
    opts = ort.SessionOptions()
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    opts.intra_op_num_threads = threads
    opts.log_severity_level = 3
    if profile_prefix:
        opts.enable_profiling = True
        opts.profile_file_prefix = profile_prefix
    return opts


def load() -> str:
    return "load average {:.2f} {:.2f} {:.2f}".format(*os.getloadavg())


def profile(model: onnx.ModelProto, feeds: dict[str, np.ndarray], threads: int,
            runs: int = 5) -> list[tuple[str, float, int]]:
    with tempfile.TemporaryDirectory() as tmp:
        session = ort.InferenceSession(model.SerializeToString(),
                                       options(threads, os.path.join(tmp, "prof")))
        for _ in range(runs + 1):
            session.run(None, feeds)
        events = json.loads(Path(session.end_profiling()).read_text())
    total: collections.Counter[str] = collections.Counter()
    count: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            op = event["args"]["op_name"]
            total[op] += event["dur"]
            count[op] += 1
    return [(op, us / 1000 / (runs + 1), count[op] // (runs + 1))
            for op, us in total.most_common(12)]


#: level name -> (builder level, optimiser options at level "full")
VARIANTS: dict[str, tuple[OptimizeLevel, OptimizeOptions]] = {
    "none": ("none", OptimizeOptions()),
    "prune": ("prune", OptimizeOptions()),
    "full": ("full", OptimizeOptions()),
    "eqmask": ("full", OptimizeOptions(conv_clip_masks=False)),
    "keepct": ("full", OptimizeOptions(zero_insertion=False)),
    "before": ("full", OptimizeOptions(conv_clip_masks=False, zero_insertion=False)),
    "fast": ("full", OptimizeOptions(mask_from_output=True, conv_clip_masks=False)),
}


def build(model: onnx.ModelProto, wrt: str, batch: int, variant: str) -> onnx.ModelProto:
    level, options = VARIANTS[variant]
    return build_vjp_model(model, output="logits", wrt=wrt, batch=batch, level=level,
                           options=options).model


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", default="1,2",
                        help="intra-op thread counts, comma-separated")
    parser.add_argument("--batches", default="1,16")
    parser.add_argument("--repeats", type=int, default=10)
    parser.add_argument("--raw-repeats", type=int, default=3)
    parser.add_argument("--block", type=int, default=5,
                        help="consecutive timed runs of one variant before the next")
    parser.add_argument("--levels", default="none,prune,full,before,fast",
                        help="VJP variants to time (none = raw onnx-ad graph; "
                             f"any of {','.join(VARIANTS)})")
    parser.add_argument("--wrt", default="input,head.act",
                        help="tensors to differentiate against, comma-separated")
    parser.add_argument("--profile", action="store_true")
    parser.add_argument("--zoo", type=Path, default=Path("/tmp/lantern-zoo"))
    args = parser.parse_args()
    threads_list = [int(t) for t in str(args.threads).split(",")]
    levels = args.levels.split(",")
    for level in levels:
        if level not in VARIANTS:
            parser.error(f"unknown level {level!r}")
    print(load())
    path = ensure_builtin(args.zoo)
    model = onnx.load(str(path))
    print(f"model {path}: {len(model.graph.node)} nodes; ORT {ort.__version__}, "
          f"intra-op threads {threads_list}")
    rows = []
    counts = []
    summary = []
    for batch in [int(b) for b in args.batches.split(",")]:
        rng = np.random.default_rng(0)
        x = rng.standard_normal((batch, 3, 224, 224)).astype(np.float32)
        seed = rng.standard_normal((batch, 1000)).astype(np.float32)
        models: dict[str, onnx.ModelProto] = {}
        for wrt in args.wrt.split(","):
            for level in levels:
                name = f"vjp {wrt} {level}"
                started = time.perf_counter()
                models[name] = build(model, wrt, batch, level)
                counts.append((batch, name, len(models[name].graph.node),
                               time.perf_counter() - started))
        for threads in threads_list:
            variants: dict[str, tuple[ort.InferenceSession, dict[str, np.ndarray], int]] = {}
            variants["forward"] = (ort.InferenceSession(model.SerializeToString(),
                                                        options(threads)),
                                   {"input": x}, args.repeats)
            for name, vjp_model in models.items():
                repeats = args.raw_repeats if name == "vjp input none" else args.repeats
                variants[name] = (ort.InferenceSession(vjp_model.SerializeToString(),
                                                       options(threads)),
                                  {"input": x, "seed": seed}, repeats)
            times: dict[str, list[float]] = {name: [] for name in variants}
            for session, feeds, _ in variants.values():   # warm-up
                session.run(None, feeds)
                session.run(None, feeds)
            # blocks of consecutive runs, variants in turn: with several sessions, the
            # spinning pool threads of the one that just ran steal a core from the next
            # (single runs round-robin measured the 2-thread forward at ~3x its time)
            rounds = max(-(-r // args.block) for _, _, r in variants.values())
            for round_ in range(rounds):
                for name, (session, feeds, repeats) in variants.items():
                    todo = min(args.block, repeats - round_ * args.block)
                    if todo <= 0:
                        continue
                    time.sleep(0.02)
                    session.run(None, feeds)  # unmeasured: lets the others' pools park
                    for _ in range(todo):
                        started = time.perf_counter()
                        session.run(None, feeds)
                        times[name].append(time.perf_counter() - started)
            forward = statistics.median(times["forward"])
            forward_min = min(times["forward"])
            for name, values in times.items():
                median = statistics.median(values)
                rows.append((threads, batch, name, 1000 * median, 1000 * min(values),
                             1000 * median / batch, median / forward,
                             min(values) / forward_min))
            for name in [n for n in ("vjp input full", "vjp input before") if n in times]:
                values = times[name]
                summary.append((threads, batch, name, 1000 * forward / batch,
                                1000 * forward_min / batch,
                                1000 * statistics.median(values) / batch,
                                1000 * min(values) / batch,
                                statistics.median(values) / forward,
                                min(values) / forward_min, len(models[name].graph.node)))
            if args.profile:
                for name in [n for n in ("vjp input full", "vjp head.act full") if n in models]:
                    print(f"\nprofile, {threads} threads, batch {batch}, {name} "
                          "(ms per run, kernel time):")
                    for op, ms, n in profile(models[name], variants[name][1], threads):
                        print(f"  {op:<22} {ms:8.2f}  n={n}")
            print(f"done: {threads} threads, batch {batch}; {load()}", flush=True)
    print(f"\n{'thr':>3} {'batch':>5}  {'variant':<22} {'median ms':>10} {'min ms':>9} "
          f"{'ms/image':>9} {'x fwd':>6} {'x fwd(min)':>10}")
    for threads, batch, name, median, minimum, per_image, ratio, ratio_min in rows:
        print(f"{threads:>3} {batch:>5}  {name:<22} {median:>10.1f} {minimum:>9.1f} "
              f"{per_image:>9.2f} {ratio:>6.2f} {ratio_min:>10.2f}")
    print(f"\n{'batch':>5}  {'variant':<22} {'nodes':>6} {'build s':>8}")
    for batch, name, nodes, built in counts:
        print(f"{batch:>5}  {name:<22} {nodes:>6} {built:>8.1f}")
    print("\nsummary: per image, ms (median / min); ratio = VJP / forward (median / min)")
    print(f"{'thr':>3} {'batch':>5}  {'variant':<18} {'forward':>13} {'vjp':>15} "
          f"{'ratio':>11} {'<=3x':>5} {'nodes':>6}")
    for (threads, batch, name, fwd, fwd_min, vjp_, vjp_min, ratio, ratio_min,
         nodes) in summary:
        verdict = "yes" if ratio <= 3.0 else "no"
        print(f"{threads:>3} {batch:>5}  {name:<18} {fwd:>6.2f}/{fwd_min:<6.2f} "
              f"{vjp_:>7.2f}/{vjp_min:<7.2f} {ratio:>5.2f}/{ratio_min:<5.2f} {verdict:>5} "
              f"{nodes:>6}")
    print(load())


if __name__ == "__main__":
    main()
