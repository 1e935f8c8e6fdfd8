"""Time to quality: passes and seconds until a map correlates >= 0.95 with a reference map.

    python bench/time_to_quality.py [--images chelsea,astronaut,coffee,rocket,camera,retina]
        [--methods lime,kernel_shap,rise] [--reference 10000] [--quality 0.95]
        [--ladder 250,500,1000,2000,4000] [--samplers iid,sobol]
        [--peer-python /tmp/peers-venv/bin/python] [--peer-images 6] [--threads 2]
    python bench/time_to_quality.py --merge a.json,b.json   # summarise runs done in parts

On each photo (``skimage.data``; ``camera`` as grey RGB) with the built-in EfficientNet-Lite0
and the photo's top class as target, per method:

* the reference: Lantern's map with ``--reference`` samples (seed 1; the rows use seed 0;
  RISE's with the control variate that "auto" uses, see :func:`rise_reference`);
* ``lantern auto (<sampler>)``: ``num_samples: "auto"`` (agreement 0.95) once per sampler
  (``AUTO_SAMPLER`` of the method's module; KernelSHAP always pairs its coalitions, drawn
  by leverage score);
* ``lantern fixed``: fixed counts up the ladder until the map reaches the quality (the
  ladder holds the default, 1000 samples / 2000 RISE masks, whose row is printed too);
* peers (LIME, KernelSHAP): Captum's ``Lime`` (Ridge α = 1, Lantern's kernel on the
  interpretable vector) and ``KernelShap``, and the ``lime`` package's
  ``LimeImageExplainer``, on the same superpixels and hide image, up the same ladder. They
  run in a child process of ``--peer-python`` (a venv with torch, captum, lime, onnx,
  onnxruntime: never Lantern's), the Captum ones on the torch re-run of the same ONNX graph
  (``peers_common.onnx_to_torch``), the lime package on the same ONNX Runtime session
  options (``classifier_fn`` = ORT, batch 16).

Quality is the Pearson r of the map with the reference, over pixels (segment methods: the
maps as Lantern paints them, LIME coefficients per superpixel, KernelSHAP φ / area). A
row's "to quality" passes and seconds are those of the first ladder step that reaches it
(``-`` when none does). Printed: one markdown row per (photo, method, run) as it finishes,
then the medians over photos; ``bench/out/time_to_quality.json`` keeps every row.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
OUT = HERE / "out"
DEFAULTS = {"lime": 1000, "kernel_shap": 1000, "rise": 2000}
COUNT_KEY = {"lime": "num_samples", "kernel_shap": "num_samples", "rise": "num_masks"}


def load() -> str:
    return " ".join(f"{x:.2f}" for x in os.getloadavg())


def pearson(a: Any, b: Any) -> float:
    return float(np.corrcoef(np.ravel(a).astype(np.float64), np.ravel(b).astype(np.float64))[0, 1])


def photo(name: str) -> Any:
    from skimage import data

    img = getattr(data, name)()
    if img.ndim == 2:
        img = np.stack([img] * 3, axis=-1)
    return img[..., :3]


# -- the peer child (runs in the peers' venv: numpy, torch, captum, lime, onnxruntime) ----


def peer_main(task_path: str) -> int:
    """Run every peer of one task up the ladder; print one JSON line per run."""
    import torch

    sys.path.insert(0, str(HERE))
    from peers_common import onnx_to_torch

    task = dict(np.load(task_path, allow_pickle=False))
    meta = json.loads(bytes(task["meta"]).decode())
    threads = int(meta["threads"])
    torch.set_num_threads(threads)
    segments = task["segments"].astype(np.int64)
    m = int(segments.max()) + 1
    first = np.array([np.flatnonzero(segments.ravel() == k)[0] for k in range(m)])
    target = int(meta["target"])
    x = torch.from_numpy(task["x"])
    xb = torch.from_numpy(task["xb"])
    net = onnx_to_torch(Path(meta["onnx"]))
    net.eval()
    fmask = torch.from_numpy(segments)[None, None]

    def fwd(inp: Any) -> Any:
        with torch.no_grad():
            return net(inp)

    def captum_lime(n: int) -> Any:
        from captum._utils.models.linear_model import SkLearnRidge
        from captum.attr import Lime

        def similarity(orig: Any, pert: Any, interp: Any, **kw: Any) -> Any:
            on = float(interp.float().sum())
            d = 1.0 - (on / m) ** 0.5
            return float(np.exp(-(d**2) / (2 * 0.25**2)))

        lime_ = Lime(fwd, interpretable_model=SkLearnRidge(alpha=1.0), similarity_func=similarity)
        a = lime_.attribute(x, baselines=xb, target=target, feature_mask=fmask,
                            n_samples=n, perturbations_per_eval=16)
        return a[0, 0].numpy().ravel()[first]

    def captum_kernel_shap(n: int) -> Any:
        from captum.attr import KernelShap

        ks = KernelShap(fwd)
        a = ks.attribute(x, baselines=xb, target=target, feature_mask=fmask, n_samples=n,
                         perturbations_per_eval=16)
        return a[0, 0].numpy().ravel()[first]

    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(meta["onnx"], so, providers=["CPUExecutionProvider"])
    name = sess.get_inputs()[0].name

    def classifier(images: Any) -> Any:  # Lantern's affine preprocessing (NCHW)
        inp = np.transpose(images.astype(np.float32), (0, 3, 1, 2)) * task["a"] + task["b"]
        out = []
        for i in range(0, len(inp), 16):
            out.append(sess.run(None, {name: np.ascontiguousarray(inp[i : i + 16])})[0])
        return np.concatenate(out)

    def lime_package(n: int) -> Any:
        from lime import lime_image

        explainer = lime_image.LimeImageExplainer(kernel_width=0.25, verbose=False,
                                                  random_state=0)
        exp = explainer.explain_instance(
            task["pixels"].astype(np.float64), classifier, labels=(target,), top_labels=None,
            hide_color=tuple(float(v) for v in task["hide_rgb"]), num_features=m,
            num_samples=n, batch_size=16, segmentation_fn=lambda img: segments,
        )
        v = np.zeros(m)
        for k, w in exp.local_exp[target]:
            v[k] = w
        return v

    runners = {"captum_lime": captum_lime, "captum_kernel_shap": captum_kernel_shap,
               "lime_package": lime_package}
    classifier(task["pixels"][None])  # warm-up
    fwd(x)
    for peer in meta["peers"]:
        for n in meta["ladder"]:
            t0 = time.perf_counter()
            v = runners[peer](int(n))
            dt = time.perf_counter() - t0
            np.save(f"{task_path}.{peer}.{n}.npy", np.asarray(v, np.float64))
            print(json.dumps({"peer": peer, "n": int(n), "seconds": dt}), flush=True)
            # the parent answers whether this reached the quality (one line on stdin)
            if sys.stdin.readline().strip() == "stop":
                break
    return 0


# -- the parent (Lantern's venv) --------------------------------------------------------


def main(argv: list[str] | None = None) -> int:
    if argv is None and len(sys.argv) > 2 and sys.argv[1] == "--peer-task":
        return peer_main(sys.argv[2])
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--images", default="chelsea,astronaut,coffee,rocket,camera,retina")
    ap.add_argument("--methods", default="lime,kernel_shap,rise")
    ap.add_argument("--reference", type=int, default=10_000)
    ap.add_argument("--quality", type=float, default=0.95)
    ap.add_argument("--ladder", default="250,500,1000,2000,4000")
    ap.add_argument("--samplers", default="iid,sobol")
    ap.add_argument("--peer-python", default="")
    ap.add_argument("--peer-images", type=int, default=6, help="peers on the first N photos")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--data-dir", type=Path, default=OUT / "data")
    ap.add_argument("--json", type=Path, default=OUT / "time_to_quality.json")
    ap.add_argument("--merge", default="", help="only summarise these JSON files (comma-separated)")
    args = ap.parse_args(argv)
    if args.merge:
        merged = [r for f in args.merge.split(",") for r in json.loads(Path(f).read_text())]
        summarise(merged)
        compare(merged)
        return 0

    import importlib

    import onnxruntime as ort
    from PIL import Image

    from engine.methods.base import no_progress
    from engine.methods.registry import get_method
    from engine.modalities.image import prepare_image
    from engine.models.zoo import BUILTIN_MODEL_ID
    from engine.objectives import ClassScore
    from jobs.runtime import Runtime
    from lantern.settings import Settings

    settings = Settings(data_dir=args.data_dir, ort_threads=args.threads, max_batch=16,
                        redis_url=None)
    rt = Runtime(settings)
    rt.ensure_builtin()
    model = rt.load(BUILTIN_MODEL_ID)
    onnx_path = settings.zoo_dir / f"{BUILTIN_MODEL_ID}.onnx"
    ladder = [int(v) for v in args.ladder.split(",")]
    methods = args.methods.split(",")
    samplers = args.samplers.split(",")
    print(f"# time to quality: host {os.uname().nodename}, onnxruntime {ort.__version__}, "
          f"threads {args.threads}, reference {args.reference}, quality {args.quality}, "
          f"load {load()}", flush=True)
    print("| photo | method | run | passes | seconds | r vs reference | to quality: passes "
          "| seconds | extras | load |")
    print("|---|---|---|---:|---:|---:|---:|---:|---|---|")
    rows: list[dict[str, Any]] = []

    def emit(row: dict[str, Any]) -> None:
        rows.append(row)
        tq = row.get("tq_passes")
        to_q = "- | -" if tq is None else f"{tq} | {row['tq_seconds']:.2f}"
        print(f"| {row['photo']} | {row['method']} | {row['run']} | {row['passes']} | "
              f"{row['seconds']:.2f} | {row['r']:.4f} | {to_q} | {row.get('extras', '')} | "
              f"{load()} |", flush=True)
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps(rows, indent=1))

    for pi, name in enumerate(args.images.split(",")):
        image = prepare_image(Image.fromarray(photo(name)), model.manifest)
        logits = model.scores(image.pixels[None])[0]
        target = int(np.argmax(logits))
        objective = ClassScore(target, "logit", model.labels[target])
        for method in methods:
            spec = get_method(method, "image")
            key = COUNT_KEY[method]

            def run(
                raw: dict[str, Any], spec: Any = spec, image: Any = image,
                objective: Any = objective,
            ) -> tuple[Any, float]:
                params = spec.parse_params(raw)
                spec.check(params, model)
                t0 = time.perf_counter()
                res = spec.fn(model, image, objective, params, no_progress)
                return res, time.perf_counter() - t0

            if method == "rise":
                ref, ref_s = rise_reference(spec, model, image, objective, args.reference)
            else:
                ref, ref_s = run({key: args.reference, "seed": 1})
            print(f"# {name} (target {target} {model.labels[target]}): {method} reference "
                  f"{ref.model_calls} passes, {ref_s:.1f} s, load {load()}", flush=True)
            mod = importlib.import_module(f"engine.methods.{method}")
            for sampler in samplers:
                if method == "kernel_shap" and sampler != samplers[0]:
                    continue  # paired coalitions only
                if hasattr(mod, "AUTO_SAMPLER"):
                    mod.AUTO_SAMPLER = sampler
                res, dt = run({key: "auto"})
                r = pearson(res.values, ref.values)
                e = res.extras
                label = "paired, leverage" if method == "kernel_shap" else sampler
                emit({"photo": name, "method": method, "run": f"lantern auto ({label})",
                      "passes": res.model_calls, "seconds": dt, "r": r,
                      "tq_passes": res.model_calls if r >= args.quality else None,
                      "tq_seconds": dt, "extras": f"agreement {e['agreement']:.3f}, "
                      f"rounds {e['rounds']}, samples {e['samples_used']}"})
            if hasattr(mod, "AUTO_SAMPLER"):
                mod.AUTO_SAMPLER = "iid"
            steps = sorted({*ladder, DEFAULTS[method]})
            reached = fixed_ladder(args, spec, method, key, steps, model, image, objective,
                                   ref.values, name, emit, run)
            emit({"photo": name, "method": method, "run": "lantern fixed, ladder",
                  "passes": reached[0] if reached else -1,
                  "seconds": reached[1] if reached else 0.0, "r": float("nan"),
                  "tq_passes": reached[0] if reached else None,
                  "tq_seconds": reached[1] if reached else 0.0})
            if args.peer_python and method in ("lime", "kernel_shap") and pi < args.peer_images:
                peers = (["captum_lime", "lime_package"] if method == "lime"
                         else ["captum_kernel_shap"])
                plan = spec.plan.build_plan(model, image, objective, spec.parse_params({}))
                hide = spec.plan.hide_pixels(image, spec.parse_params({}), plan)
                segments = plan.segments
                area = np.bincount(segments.ravel()).astype(np.float64)
                run_peers(args, method, name, peers, ladder, segments, area, image, hide,
                          model, onnx_path, target, ref.values, emit)
    summarise(rows)
    print(f"# load at the end {load()}")
    return 0


def rise_reference(spec: Any, model: Any, image: Any, objective: Any, n: int) -> Any:
    """RISE's reference: ``n`` i.i.d. masks (seed 1) assembled as "auto" assembles them,
    with the control variate (same expectation as the plain sum, far less noise)."""
    from dataclasses import replace

    from engine.methods.base import no_progress

    builder = spec.plan
    params = spec.parse_params({"num_masks": "auto", "max_samples": n, "seed": 1})
    plan = replace(builder.build_plan(model, image, objective, params), n_samples=n,
                   sampler="iid")
    t0 = time.perf_counter()
    refs = builder.references(model, image, objective, params, plan)
    scores = builder.evaluate(model, image, objective, params, plan, 0, n, no_progress)
    res = builder.assemble(model, image, objective, params, plan, scores, refs)
    return res, time.perf_counter() - t0


def fixed_ladder(args: Any, spec: Any, method: str, key: str, steps: list[int], model: Any,
                 image: Any, objective: Any, ref_map: Any, name: str, emit: Any,
                 run: Any) -> tuple[int, float] | None:
    """Fixed counts up the ladder until the quality is reached (and the default is done).

    LIME's and RISE's sample ``i`` depends on (seed, i) only, so a fixed count's samples are
    a prefix of a larger one's: their scores are evaluated once, step by step, and each
    step assembled from its prefix; its seconds are the evaluation's share (passes so far)
    plus its own assembly. KernelSHAP's coalitions depend on the count: one run per step."""
    from dataclasses import replace

    from engine.methods.base import no_progress
    from engine.methods.perturbation import EvalStats

    reached: tuple[int, float] | None = None
    nested = method in ("lime", "rise")
    if nested:
        builder = spec.plan
        params = spec.parse_params({key: steps[-1]})
        plan = builder.build_plan(model, image, objective, params)
        t0 = time.perf_counter()
        refs = builder.references(model, image, objective, params, plan)
        eval_s = time.perf_counter() - t0
        parts: list[Any] = []
        done = 0
    for n in steps:
        if nested:
            t0 = time.perf_counter()
            parts.append(builder.evaluate(model, image, objective, params, plan, done, n,
                                          no_progress, EvalStats()))
            eval_s += time.perf_counter() - t0
            done = n
            t0 = time.perf_counter()
            res = builder.assemble(model, image, objective, params, replace(plan, n_samples=n),
                                   np.concatenate(parts), refs)
            dt = eval_s + time.perf_counter() - t0
        else:
            res, dt = run({key: n})
        r = pearson(res.values, ref_map)
        if r >= args.quality and reached is None:
            reached = (res.model_calls, dt)
        if n == DEFAULTS[method]:
            emit({"photo": name, "method": method, "run": f"lantern fixed {n}",
                  "passes": res.model_calls, "seconds": dt, "r": r,
                  "tq_passes": res.model_calls if r >= args.quality else None,
                  "tq_seconds": dt})
        if reached is not None and n >= DEFAULTS[method]:
            break
    return reached


def run_peers(args: Any, method: str, name: str, peers: list[str], ladder: list[int],
              segments: Any, area: Any, image: Any, hide: Any, model: Any, onnx_path: Path,
              target: int, ref_map: Any, emit: Any) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        task = Path(tmp) / "task.npz"
        meta = {"threads": args.threads, "target": target, "onnx": str(onnx_path),
                "peers": peers, "ladder": ladder}
        b = model.to_model_input(np.zeros((1, 1, 1, 3), np.float32))
        a = model.to_model_input(np.ones((1, 1, 1, 3), np.float32)) - b
        np.savez(task, meta=np.frombuffer(json.dumps(meta).encode(), np.uint8),
                 segments=segments.astype(np.int32), pixels=image.pixels,
                 x=model.to_model_input(image.pixels[None]),
                 xb=model.to_model_input(hide[None]),
                 hide_rgb=hide.reshape(-1, 3).mean(axis=0), a=a, b=b)
        proc = subprocess.Popen([args.peer_python, __file__, "--peer-task", str(task)],
                                stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
                                cwd=str(HERE.parent), env={**os.environ, "TQDM_DISABLE": "1"})
        assert proc.stdin is not None and proc.stdout is not None
        done: dict[str, tuple[int, float] | None] = {}
        last: dict[str, tuple[int, float, float]] = {}
        for line in proc.stdout:
            if not line.startswith("{"):
                continue
            msg = json.loads(line)
            v = np.load(f"{task}.{msg['peer']}.{msg['n']}.npy")
            pmap = (v / area if method == "kernel_shap" else v)[segments]
            r = pearson(pmap, ref_map)
            last[msg["peer"]] = (msg["n"], msg["seconds"], r)
            ok = r >= args.quality
            if ok:
                done[msg["peer"]] = (msg["n"], msg["seconds"])
            stop = ok or msg["n"] == ladder[-1]
            if stop:
                n, s, r_last = last[msg["peer"]]
                emit({"photo": name, "method": method, "run": msg["peer"], "passes": n,
                      "seconds": s, "r": r_last, "tq_passes": n if ok else None,
                      "tq_seconds": s if ok else 0.0})
            proc.stdin.write("stop\n" if stop else "go\n")
            proc.stdin.flush()
        proc.wait()


def summarise(rows: list[dict[str, Any]]) -> None:
    print("\n| method | run | photos | reached | median passes to quality | median seconds "
          "to quality | median r |")
    print("|---|---|---:|---:|---:|---:|---:|")
    keys = sorted({(r["method"], r["run"]) for r in rows})
    for method, run in keys:
        sel = [r for r in rows if r["method"] == method and r["run"] == run]
        ok = [r for r in sel if r.get("tq_passes") is not None]
        rs = [r["r"] for r in sel if r["r"] == r["r"]]
        mp = statistics.median(r["tq_passes"] for r in ok) if ok else float("nan")
        ms = statistics.median(r["tq_seconds"] for r in ok) if ok else float("nan")
        mr = statistics.median(rs) if rs else float("nan")
        print(f"| {method} | {run} | {len(sel)} | {len(ok)} | {mp:.0f} | {ms:.2f} | {mr:.4f} |")


def compare(rows: list[dict[str, Any]]) -> None:
    """Per photo and method: Lantern auto against the fixed default and each peer, each to
    the quality (passes; seconds; the peer's seconds / Lantern's). ``-`` where a run did not
    reach it (a peer's "> s" is then its seconds at the top of the ladder)."""
    print("\n| photo | method | lantern run | passes | s | fixed default passes (r) | "
          "passes / default | peer | peer passes | peer s | peer s / lantern s |")
    print("|---|---|---|---:|---:|---|---:|---|---:|---:|---:|")
    for photo_, method in sorted({(r["photo"], r["method"]) for r in rows}):
        sel = [r for r in rows if r["photo"] == photo_ and r["method"] == method]
        fixed = [r for r in sel if r["run"] == f"lantern fixed {DEFAULTS[method]}"]
        fx = (f"{fixed[0]['passes']} ({fixed[0]['r']:.3f})" if fixed else "-")
        peers = [r for r in sel if not r["run"].startswith("lantern")]
        for r in [r for r in sel if r["run"].startswith("lantern auto")]:
            ok = r.get("tq_passes") is not None
            ratio = f"{r['passes'] / DEFAULTS[method]:.2f}" if ok else "-"
            for p in peers or [None]:
                if p is None:
                    pcols = "- | - | - | -"
                else:
                    pok = p.get("tq_passes") is not None
                    ps = p["tq_seconds"] if pok else p["seconds"]
                    sp = (f"{ps / r['seconds']:.1f}" if ok else "-") + ("" if pok else " (>)")
                    pcols = (f"{p['run']} | {p['passes'] if pok else '>' + str(p['passes'])} | "
                             f"{'' if pok else '> '}{ps:.2f} | {sp}")
                print(f"| {photo_} | {method} | {r['run']} (r {r['r']:.3f}) | "
                      f"{r['passes'] if ok else '-'} | {r['seconds']:.2f} | {fx} | {ratio} | "
                      f"{pcols} |")


if __name__ == "__main__":
    raise SystemExit(main())
