"""Dataset analyses: activation extraction against the model's own forward throughput, in
the same run, and one extraction shared by two Celery worker processes against one.

    .venv/bin/python bench/datasets.py [--images 10000] [--photos 2000] [--repeats 2]
        [--chunk 256] [--skip-celery] [--skip-inprocess] [--only digits|photos]

Two datasets, each registered as a directory under a dataset root:
  digits   the built-in digits (1,797 8x8 PNGs) repeated to ``--images`` files, on the
           built-in digits-cnn (layer conv3; "another layer": conv2)
  photos   ``--photos`` synthetic 224x224 JPEG photos (smooth colour fields, edges and
           noise, quality 90) generated into a temp directory, on the built-in
           efficientnet-lite0 (layer head.act; "another layer": blocks.15.project)

Part 1, in this process, ORT 1 thread, per repeat (alternating), on a fresh cache:
  forward        model.run over pre-decoded, pre-converted batches of max_batch images
                 (the model's own forward throughput; decoding and conversion excluded)
  decode         decoding every image at the model's size alone (pixels.decode_one: the
                 codec's pixels; tiny PNGs such as the digits by the tiny-PNG reader)
  serial         extraction the former way: a shard's images decoded with
                 model.codec.decode (Pillow), then its batches run
  overlapped     ActivationCache.ensure as shipped, decoded pixels not kept (pixel_ratio
                 0): the next images decoded in a background thread while ORT runs the
                 current ones — or in the caller's thread once the process measured
                 decoding at more than 4x the model's time (the digits)
  kept, first    ensure with the decoded-pixels cache on: decoding + writing the pixels
  kept, again    ensure for another layer once the pixels are kept: nothing decoded
each the targets max_activating asks for (the layer's pooled stats and the logits), shards
written; ratio = forward s / step s (1.0: as fast as the bare forward pass). The steps run
shard by shard in rotating order, so the shared host's moving load weighs on all alike.

Then, on the built-in digits, max_activating and dataset_predictions from a full cache
(no forward pass) and the model's accuracy, as the former version of this benchmark had.

Part 2, real processes: redis-server, `lantern serve` and 1 or 2 `lantern worker`
(concurrency 1, ORT 1 thread, split chunk = dataset chunk); one max_activating job over
the dataset from submit to succeeded, on an emptied activation cache each time (a new
channel each time, so no cached result); efficiency = t(1 worker) / (2 x t(2 workers));
the workers' peak RSS (VmHWM of each worker's processes, the largest).
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
sys.path.append(str(ROOT / "tests"))  # lantern_testing (after the real packages)


def cpu() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def load() -> str:
    a, b, c = os.getloadavg()
    return f"{a:.2f} {b:.2f} {c:.2f}"


# -- datasets ---------------------------------------------------------------------------


def digits_dir(src: Any, dest: Path, n: int) -> None:
    """The digits' files repeated to ``n`` (a folder per class)."""
    for k in range(n):
        i = k % len(src)
        p = dest / str(src.index[i]["label"]) / f"{k:05d}.png"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(src.read(i))


def photos_dir(dest: Path, n: int, size: int = 224, seed: int = 0) -> None:
    """``n`` synthetic photos: smooth colour fields, a few hard-edged shapes and sensor-like
    noise, as JPEG (quality 90; about 20 KB each at 224x224)."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)
    for k in range(n):
        r = rng.uniform(0, 1, 10)
        img = np.stack([
            127 + 100 * np.sin(xx / (10 + 30 * r[0]) + 6 * r[1]),
            127 + 100 * np.cos(yy / (10 + 30 * r[2]) + 6 * r[3]),
            127 + 100 * np.sin((xx + yy) / (15 + 30 * r[4])),
        ], -1)
        cy, cx, rad = r[5] * size, r[6] * size, 10 + r[7] * size / 3
        disc = (yy - cy) ** 2 + (xx - cx) ** 2 < rad**2
        img[disc] = 255 * r[8:10].mean()
        img += rng.normal(0, 12, img.shape)
        buf = io.BytesIO()
        Image.fromarray(np.clip(img, 0, 255).astype(np.uint8)).save(buf, "JPEG", quality=90)
        p = dest / f"c{k % 10}" / f"{k:05d}.jpg"
        p.parent.mkdir(parents=True, exist_ok=True)
        p.write_bytes(buf.getvalue())


# -- part 1: in this process -------------------------------------------------------------


def serial_extract(model: Any, reader: Any, targets: list[Any], shard: tuple[int, int],
                   out: Path) -> int:
    """The former ActivationCache._extract: decode a shard, then run its batches."""
    from engine.datasets.activations import OUTPUT, _atomic_npz, _keep

    layers = sorted({t.layer for t in targets if t.layer != OUTPUT})
    step = model.options.max_batch
    a, b = shard
    pixels = np.stack([model.codec.decode(reader.read(i)).pixels for i in range(a, b)])
    x = model.to_model_input(pixels.astype(np.float32))
    del pixels
    parts = [model.probe(x[i : i + step], layers) for i in range(0, b - a, step)]
    values = {name: np.concatenate([p[j] for p in parts])
              for j, name in enumerate([*layers, OUTPUT])}
    values[OUTPUT] = values[OUTPUT].reshape(b - a, -1)
    for t in targets:
        _atomic_npz(out / t.key / f"{a}-{b}.npz", _keep(values[t.layer], t, False))
    return b - a


STEPS = ("forward", "decode", "serial", "overlapped", "kept, first", "kept, again")


def part1(rt: Any, model_name: str, dataset: str, layer: str, other: str, repeats: int,
          chunk: int, root: Path) -> None:
    """Every step shard by shard, the steps of a shard in rotating order: the host's load
    (shared, it moves by the second) weighs on every step alike."""
    from engine.datasets.activations import OUTPUT, ActivationCache, Target
    from engine.datasets.pixels import decode_one

    model = rt.load(model_name)
    reader = rt.datasets.reader(dataset)
    n = len(reader)
    targets = [Target(OUTPUT), Target(layer)]
    step = model.options.max_batch
    zeros = model.to_model_input(np.zeros((step, *model.input_hw, 3), np.float32))
    model.run(zeros)
    model.probe(zeros, [layer])
    model.probe(zeros, [other])
    rows: dict[str, list[float]] = {k: [] for k in STEPS}
    loads: list[str] = []
    for rep in range(repeats):
        loads.append(load())
        took = dict.fromkeys(STEPS, 0.0)
        d = root / f"acts-{model_name}-{rep}"
        overlapped = ActivationCache(d / "overlapped", chunk, pixel_ratio=0)
        kept = ActivationCache(d / "kept", chunk, pixel_ratio=1e9)  # kept whatever the size
        again = [Target(OUTPUT), Target(other)]
        for k, (a, b) in enumerate(overlapped.shards(n)):
            names = ["forward", "serial", "overlapped", "kept"]
            r = (k + rep) % len(names)
            for what in names[r:] + names[:r]:
                t = time.perf_counter()
                if what == "forward":
                    px = np.stack([decode_one(model, reader.read(i)) for i in range(a, b)])
                    took["decode"] += time.perf_counter() - t
                    x = model.to_model_input(px.astype(np.float32))
                    t = time.perf_counter()
                    model.run(x)
                    took["forward"] += time.perf_counter() - t
                    del x, px
                elif what == "serial":
                    serial_extract(model, reader, targets, (a, b), d / "serial")
                    took["serial"] += time.perf_counter() - t
                elif what == "overlapped":
                    assert overlapped.ensure(model, reader, targets, a, a + 1) == b - a
                    took["overlapped"] += time.perf_counter() - t
                else:
                    assert kept.ensure(model, reader, targets, a, a + 1) == b - a
                    took["kept, first"] += time.perf_counter() - t
                    t = time.perf_counter()
                    assert kept.ensure(model, reader, again, a, a + 1) == b - a
                    took["kept, again"] += time.perf_counter() - t
                    assert kept.last_decoded == 0 and kept.last_mapped == b - a
        for key in STEPS:
            rows[key].append(took[key])
        shutil.rmtree(d, ignore_errors=True)
    loads.append(load())
    med = {k: statistics.median(v) for k, v in rows.items()}
    ratios = {k: statistics.median(f / v for f, v in zip(rows["forward"], rows[k], strict=True))
              for k in STEPS}
    print(f"\n{model_name} over {dataset}: {n} images, layer {layer} (again: {other}), chunk "
          f"{chunk}, batch {step}, ORT 1 thread, {repeats} repeats; load averages during: "
          f"{' | '.join(loads)}")
    print("| step | median s | images/s | forward s / step s (median of repeats) |")
    print("|---|---:|---:|---:|")
    for k, v in med.items():
        print(f"| {k} | {v:.3f} | {n / v:.0f} | {ratios[k]:.2f} |")
    print(f"  per repeat, forward s / overlapped s: "
          f"{[round(f / v, 2) for f, v in zip(rows['forward'], rows['overlapped'], strict=True)]}"
          f"; / kept-again s: "
          f"{[round(f / v, 2) for f, v in zip(rows['forward'], rows['kept, again'], strict=True)]}")


def cached_analyses(rt: Any, zoo: Path, repeats: int, chunk: int, root: Path) -> None:
    """The former table's last rows, on the built-in digits (1,797): max_activating on conv3
    once the cache is full (no forward pass), dataset_predictions from the cache, and the
    model's accuracy."""
    from api_schemas.objectives import ChannelObjective, ClassObjective
    from engine.datasets.activations import OUTPUT, ActivationCache, Target
    from engine.methods.base import no_progress
    from engine.methods.registry import get_method
    from engine.objectives import resolve_objective

    model = rt.load("digits-cnn")
    reader = rt.datasets.reader("digits")
    reader.activations = ActivationCache(root / "acts-cached", chunk)
    reader.activations.ensure(model, reader, [Target(OUTPUT), Target("conv3")])
    spec_max = get_method("max_activating", "image")
    spec_pred = get_method("dataset_predictions", "image")
    channel = resolve_objective(ChannelObjective(kind="channel", layer="conv3", channel=3), model)
    cls = resolve_objective(ClassObjective(target=0), model)
    took: dict[str, list[float]] = {"cached max_activating": [], "cached predictions": []}
    for _ in range(repeats):
        t = time.perf_counter()
        res = spec_max.fn(model, reader, channel, spec_max.parse_params({"k": 16}), no_progress)
        took["cached max_activating"].append(time.perf_counter() - t)
        assert res.model_calls == 0
        t = time.perf_counter()
        pred = spec_pred.fn(model, reader, cls, spec_pred.parse_params({}), no_progress)
        took["cached predictions"].append(time.perf_counter() - t)
    record = json.loads((zoo / "digits-cnn.json").read_text())
    print(f"\ndigits-cnn over the built-in digits ({len(reader)}), from a full cache; load "
          f"{load()}")
    print("| step | median s |")
    print("|---|---:|")
    for k, v in took.items():
        print(f"| {k} | {statistics.median(v):.4f} |")
    print(f"dataset accuracy (all 1,797, train included): {pred.extras['accuracy']:.4f}; "
          f"held-out accuracy (record): {record.get('held_out_accuracy')}")


# -- part 2: Celery workers ----------------------------------------------------------------


def vm_hwm_kib(pgid: int) -> int:
    """The largest VmHWM (peak RSS) of the processes of a process group, KiB."""
    best = 0
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
            fields = stat[stat.rindex(")") + 2 :].split()
            if int(fields[2]) != pgid:  # pgrp
                continue
            for line in (d / "status").read_text().splitlines():
                if line.startswith("VmHWM:"):
                    best = max(best, int(line.split()[1]))
        except (OSError, ValueError, IndexError):
            continue
    return best


def part2(datasets: list[tuple[str, str, str, Path, int]], repeats: int, chunk: int,
          root: Path) -> None:
    import httpx

    from lantern_testing.processes import LANTERN, Proc, free_port, redis_server, wait_for

    with redis_server(root / "redis") as url:
        env = {
            **os.environ,
            "LANTERN_REDIS_URL": url,
            "LANTERN_DATA_DIR": str(root / "cluster"),
            "LANTERN_ORT_THREADS": "1",
            "LANTERN_BUILTIN_MODELS": json.dumps(sorted({d[1] for d in datasets})),
            "LANTERN_SPLIT_MIN_SAMPLES": "100",
            "LANTERN_SPLIT_CHUNK_SAMPLES": str(chunk),
            "LANTERN_DATASET_CHUNK_IMAGES": str(chunk),
            "LANTERN_DATASET_ROOTS": json.dumps([str(root / "roots")]),
            "LANTERN_LOG_FORMAT": "text",
        }
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        procs: dict[str, Proc] = {}

        def start(name: str) -> None:
            log = root / f"{name}.log"
            procs[name] = Proc([*LANTERN, "worker", "--hostname", f"{name}@%h"], env, log)
            wait_for(lambda: b" ready." in log.read_bytes(), 300, name)

        procs["api"] = Proc([*LANTERN, "serve", "--port", str(port)], env, root / "api.log")
        channel = [0]
        results: list[tuple[str, int, list[float], list[int], list[int]]] = []
        try:
            wait_for(lambda: httpx.get(f"{base}/readyz").status_code == 200, 300, "the API")
            client = httpx.Client(base_url=base, timeout=120)
            for name, _model, _layer, path, _n in datasets:
                # a small twin (its first 300 files): the warm-up job before each timed one
                warm = root / "roots" / f"warm-{name}"
                files = sorted(p for p in path.rglob("*") if p.is_file())[:300]
                for f in files:
                    dest = warm / f.relative_to(path)
                    dest.parent.mkdir(parents=True, exist_ok=True)
                    shutil.copyfile(f, dest)
                for nm, pth in ((name, path), (f"warm-{name}", warm)):
                    r = client.post("/v1/datasets", json={"name": nm, "path": str(pth)})
                    assert r.status_code in (200, 201), r.text

            def job(name: str, model: str, layer: str) -> float:
                shutil.rmtree(root / "cluster" / "activations", ignore_errors=True)
                channel[0] += 1
                body = {"model": model, "method": "max_activating", "dataset": name,
                        "objective": {"kind": "channel", "layer": layer,
                                      "channel": channel[0] % 30},
                        "params": {"k": 8 + channel[0]}}
                t0 = time.perf_counter()
                r = client.post("/v1/explanations", json=body)
                assert r.status_code == 202, r.text
                jid = r.json()["id"]
                while True:
                    st = client.get(f"/v1/jobs/{jid}").json()
                    if st["state"] in ("succeeded", "failed", "cancelled"):
                        break
                    time.sleep(0.05)
                dt = time.perf_counter() - t0
                assert st["state"] == "succeeded", st
                return dt

            start("w1")
            times: dict[tuple[str, int], list[float]] = {}
            rss: dict[tuple[str, int], list[int]] = {}
            warm_rss: dict[tuple[str, int], list[int]] = {}
            for rep in range(repeats):
                for workers in ((1, 2) if rep % 2 == 0 else (2, 1)):
                    if workers == 2:
                        start("w2")
                    for name, model, layer, _path, _n in datasets:
                        job(f"warm-{name}", model, layer)  # models loaded, probes built
                        warm_rss.setdefault((name, workers), []).append(max(
                            vm_hwm_kib(p.p.pid) for k, p in procs.items() if k != "api"))
                        times.setdefault((name, workers), []).append(job(name, model, layer))
                        rss.setdefault((name, workers), []).append(max(
                            vm_hwm_kib(p.p.pid) for k, p in procs.items() if k != "api"))
                    if workers == 2:
                        procs.pop("w2").stop()
                    print(f"  repeat {rep}, {workers} worker(s): load {load()}", flush=True)
            for name, _model, _layer, _path, _n in datasets:
                for w in (1, 2):
                    results.append((name, w, times[(name, w)], rss[(name, w)],
                                    warm_rss[(name, w)]))
        finally:
            for p in procs.values():
                p.stop()
    print("\n| dataset | images | worker processes | median s | images/s | efficiency "
          "| peak RSS of a worker, MiB (after the 300-image warm-up) |")
    print("|---|---:|---:|---:|---:|---:|---:|")
    by = {(r[0], r[1]): r for r in results}
    for name, _model, _layer, _path, n in datasets:
        t1 = statistics.median(by[(name, 1)][2])
        for w in (1, 2):
            t = statistics.median(by[(name, w)][2])
            eff = "" if w == 1 else f"{t1 / (2 * t):.2f}"
            print(f"| {name} | {n} | {w} | {t:.2f} | {n / t:.0f} | {eff} "
                  f"| {max(by[(name, w)][3]) / 1024:.0f} ({max(by[(name, w)][4]) / 1024:.0f}) |")
        print(f"|   {name} runs (s) | | | 1: {[round(x, 2) for x in by[(name, 1)][2]]} "
              f"2: {[round(x, 2) for x in by[(name, 2)][2]]} | | | |")


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("--images", type=int, default=10_000, help="digits repeated to this many")
    ap.add_argument("--photos", type=int, default=2_000, help="synthetic 224x224 JPEGs")
    ap.add_argument("--repeats", type=int, default=2)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--skip-celery", action="store_true")
    ap.add_argument("--skip-inprocess", action="store_true")
    ap.add_argument("--only", choices=("digits", "photos"), default=None)
    args = ap.parse_args()
    import onnxruntime as ort

    from jobs.runtime import Runtime
    from lantern.settings import Settings

    root = Path(tempfile.mkdtemp(prefix="lantern-bench-ds-"))
    zoo = Path(os.environ.get("LANTERN_ZOO", root / "zoo"))
    os.environ["LANTERN_ZOO"] = str(zoo)
    models = {"digits": "digits-cnn", "photos": "efficientnet-lite0"}
    wanted = [k for k in ("digits", "photos") if args.only in (None, k)]
    print(f"host: {cpu()}, {os.cpu_count()} cores; onnxruntime {ort.__version__}; "
          f"load average {load()}; {datetime.now(UTC):%Y-%m-%d %H:%M} UTC")
    rt = Runtime(Settings(data_dir=root / "data", zoo=zoo,
                          builtin_models=[models[k] for k in wanted] + ["digits-cnn"],
                          dataset_chunk_images=args.chunk, ort_threads=1,
                          dataset_roots=[root / "roots"]))
    t = time.perf_counter()
    rt.ensure_builtin()
    print(f"setup (build/register the built-ins): {time.perf_counter() - t:.1f} s")
    sets: list[tuple[str, str, str, Path, int]] = []
    t = time.perf_counter()
    if "digits" in wanted:
        path = root / "roots" / "digits10k"
        digits_dir(rt.datasets.reader("digits"), path, args.images)
        sets.append(("digits10k", "digits-cnn", "conv3", path, args.images))
    if "photos" in wanted:
        path = root / "roots" / "photos"
        photos_dir(path, args.photos)
        sets.append(("photos", "efficientnet-lite0", "head.act", path, args.photos))
    for name, _m, _l, path, _n in sets:
        info = rt.datasets.add_directory(name, str(path))
        print(f"dataset {name}: {info.count} images, {info.bytes / info.count:.0f} bytes "
              "each on average")
    print(f"datasets written and registered in {time.perf_counter() - t:.1f} s")
    others = {"digits-cnn": "conv2", "efficientnet-lite0": "blocks.15.project"}
    for name, model, layer, _path, _n in sets:
        if not args.skip_inprocess:
            part1(rt, model, name, layer, others[model], args.repeats, args.chunk, root)
    if "digits" in wanted and not args.skip_inprocess:
        cached_analyses(rt, zoo, args.repeats, args.chunk, root)
    if not args.skip_celery:
        part2(sets, args.repeats, args.chunk, root)
    print(f"\nload average at the end: {load()}")
    shutil.rmtree(root, ignore_errors=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
