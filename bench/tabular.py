"""Tabular LIME and KernelSHAP on the built-in breast-cancer models: each method's time, its
ratio to the model calls alone (the forward floor: the same rows, already built, through
``model.run`` in the same batches), and the ``lime`` and ``shap`` packages calling the same
ONNX model through ONNX Runtime (same session options), interleaved in one run.

    python bench/tabular.py [--threads 1] [--runs 7] [--rows 3] [--no-peers]

Lantern keeps a model's LIME draws per (sample count, seed) — they do not depend on the row
— and its KernelSHAP coalitions per (players, count, seed); "lime (new seed)" times the
draws being made. LIME: 5,000 samples, the package's ``LimeTabularExplainer(train,
discretize_continuous=True, random_state=seed)`` with ``num_features=30`` against
Lantern's ``lime`` with the same seed (the same samples: their weights should agree to
float rounding). KernelSHAP: 2,000 coalitions against ``shap.KernelExplainer(f,
shap.kmeans(train, 10)).shap_values(x, nsamples=2000, l1_reg=False)`` (other random
coalitions: close, not equal). Pearson of the weights per row. Peers need the
``bench-peers`` extra (lime, shap).
"""

# The timed lambdas run within the loop iteration that makes them (B023 does not apply).
# ruff: noqa: B023
from __future__ import annotations

import argparse
import json
import platform
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from engine.methods.base import no_progress
from engine.methods.kernel_shap import sample_coalitions
from engine.methods.registry import get_method
from engine.methods.tabular.kernel_shap import background, varying
from engine.methods.tabular.lime import Discretised, lime_samples
from engine.modalities.tabular import TabularRow
from engine.models.runtime import GraphIO, LoadedModel, RuntimeOptions
from engine.models.store import ModelStore
from engine.models.zoo.registry import builtin_models
from engine.models.zoo.tabular import split
from engine.objectives import ClassScore

OUT = Path(__file__).resolve().parent / "out"
LIME_SAMPLES = 5000
SHAP_SAMPLES = 2000
TARGET = 1  # benign


def load(threads: int) -> dict[str, LoadedModel]:
    d = Path(tempfile.mkdtemp(prefix="tabular-bench-"))
    store = ModelStore(d / "models")
    out = {}
    for b in builtin_models():
        if b.modality != "tabular":
            continue
        info = b.register(store, d / "zoo")
        out[info.name] = LoadedModel(
            info.name, info.version, store.path(info.name, info.version), info.manifest,
            RuntimeOptions(intra_op_threads=threads), io=GraphIO("input", info.output or ""),
        )
    return out


def timed(fn: Callable[[], Any]) -> tuple[float, Any]:
    t = time.perf_counter()
    value = fn()
    return time.perf_counter() - t, value


def pearson(a: Any, b: Any) -> float:
    return float(np.corrcoef(np.asarray(a, np.float64), np.asarray(b, np.float64))[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=7)
    ap.add_argument("--rows", type=int, default=3)
    ap.add_argument("--no-peers", action="store_true")
    args = ap.parse_args()
    models = load(args.threads)
    xtr, xte, _, _ = split()
    peers = not args.no_peers
    if peers:
        try:
            import shap
            from lime.lime_tabular import LimeTabularExplainer
        except ImportError:
            print("lime/shap not installed (the bench-peers extra): peers skipped")
            peers = False
    report: list[dict[str, Any]] = []
    for name, model in models.items():
        obj = ClassScore(TARGET, "probability", model.labels[TARGET], activated=True)
        sess = model.session

        def predict(rows: Any, sess: Any = sess, model: LoadedModel = model) -> Any:
            x = np.ascontiguousarray(rows, np.float32)
            return np.asarray(sess.run([model.output_name], {model.input_name: x})[0])

        if peers:
            lime_peer = LimeTabularExplainer(
                xtr.astype(np.float64), discretize_continuous=True, random_state=0,
                mode="classification",
            )
            shap_peer = shap.KernelExplainer(predict, shap.kmeans(xtr.astype(np.float64), 10))
        lime_spec = get_method("lime", "tabular")
        shap_spec = get_method("kernel_shap", "tabular")
        lp = lime_spec.parse_params({"num_samples": LIME_SAMPLES, "seed": 0})
        sp = shap_spec.parse_params({"num_samples": SHAP_SAMPLES, "seed": 0})
        disc = Discretised.of(model.codec)  # type: ignore[arg-type]
        rows_bg, _ = background(model)
        for r in range(args.rows):
            v = xte[r].astype(np.float64)
            row = TabularRow(v, tuple(float(a) for a in v))
            # the rows each method feeds the model, built once: the floor runs them alone
            _, lime_rows = lime_samples(disc, v, LIME_SAMPLES, 0)
            players = varying(v, rows_bg)
            coal, _ = sample_coalitions(len(players), SHAP_SAMPLES, 0)
            keep = np.zeros((len(coal), v.size), bool)
            keep[:, players] = coal.astype(bool)
            shap_rows = np.concatenate([
                v[None], rows_bg,
                np.where(keep[:, None, :], v[None, None, :], rows_bg[None]).reshape(-1, v.size),
            ])
            lime_x = model.to_model_input(lime_rows)
            shap_x = model.to_model_input(shap_rows)
            fresh = iter(range(1, 10_000))
            cases: dict[str, Callable[[], Any]] = {
                "lime": lambda: lime_spec.fn(model, row, obj, lp, no_progress),
                # a seed never used before: the draws are made, not reused
                "lime (new seed)": lambda: lime_spec.fn(
                    model, row, obj, lp.model_copy(update={"seed": next(fresh)}), no_progress
                ),
                "lime floor": lambda: model.run(lime_x, batch=8192),
                "kernel_shap": lambda: shap_spec.fn(model, row, obj, sp, no_progress),
                "kernel_shap floor": lambda: model.run(shap_x, batch=8192),
            }
            if peers:
                cases["lime package"] = lambda: lime_peer.explain_instance(
                    v, predict, labels=(TARGET,), num_features=v.size,
                    num_samples=LIME_SAMPLES,
                )
                cases["shap package"] = lambda: shap_peer.shap_values(
                    v[None], nsamples=SHAP_SAMPLES, l1_reg=False, silent=True
                )
            times: dict[str, list[float]] = {k: [] for k in cases}
            last: dict[str, Any] = {}
            for f in cases.values():
                f()  # warm
            for _ in range(args.runs):  # interleaved: every case once per round
                for k, f in cases.items():
                    if k == "lime package":  # the package's stream restarts per explain
                        lime_peer.random_state = np.random.RandomState(0)
                        lime_peer.discretizer.random_state = lime_peer.random_state
                    t, last[k] = timed(f)
                    times[k].append(t)
            entry: dict[str, Any] = {"model": name, "row": r}
            for k, ts in times.items():
                entry[k] = {"median_ms": 1000 * statistics.median(ts), "min_ms": 1000 * min(ts)}
            entry["lime ×floor"] = entry["lime"]["median_ms"] / entry["lime floor"]["median_ms"]
            entry["kernel_shap ×floor"] = (
                entry["kernel_shap"]["median_ms"] / entry["kernel_shap floor"]["median_ms"]
            )
            entry["kernel_shap sum_check"] = last["kernel_shap"].extras["sum_check"]
            if peers:
                ours_l = np.asarray(last["lime"].values, np.float64)
                theirs = dict(last["lime package"].local_exp[TARGET])
                entry["lime pearson"] = pearson(ours_l, [theirs[j] for j in range(v.size)])
                ours_s = np.asarray(last["kernel_shap"].values, np.float64)
                sv = last["shap package"]
                sv = np.asarray(sv[TARGET] if isinstance(sv, list) else sv)
                sv = sv.reshape(-1, v.size, 2)[0, :, TARGET] if sv.ndim == 3 else sv.reshape(-1)
                entry["shap pearson"] = pearson(ours_s, sv)
                entry["lime package ×ours"] = (
                    entry["lime package"]["median_ms"] / entry["lime"]["median_ms"]
                )
                entry["shap package ×ours"] = (
                    entry["shap package"]["median_ms"] / entry["kernel_shap"]["median_ms"]
                )
            report.append(entry)
            print(json.dumps({k: (round(v, 3) if isinstance(v, float) else v)
                              for k, v in entry.items() if not isinstance(v, dict)}))
    print()
    print("| model | row | method | median | min | floor (median) | × floor | package (median) "
          "| package × ours | Pearson |")
    print("|---|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for e in report:
        new = e["lime (new seed)"]
        print(f"| {e['model']} | {e['row']} | lime, new seed (draws made) | "
              f"{new['median_ms']:.1f} ms | {new['min_ms']:.1f} ms | "
              f"{e['lime floor']['median_ms']:.1f} ms | "
              f"{new['median_ms'] / e['lime floor']['median_ms']:.2f} | — | — | — |")
        for m, peer, corr in (("lime", "lime package", "lime pearson"),
                              ("kernel_shap", "shap package", "shap pearson")):
            pk = e.get(peer)
            print(
                f"| {e['model']} | {e['row']} | {m} | {e[m]['median_ms']:.1f} ms | "
                f"{e[m]['min_ms']:.1f} ms | {e[m + ' floor']['median_ms']:.1f} ms | "
                f"{e[m + ' ×floor']:.2f} | "
                + (f"{pk['median_ms']:.0f} ms | {e[peer + ' ×ours']:.1f} | {e[corr]:.4f} |"
                   if pk else "— | — | — |")
            )
    OUT.mkdir(exist_ok=True)
    meta = {"threads": args.threads, "runs": args.runs, "python": platform.python_version()}
    (OUT / "tabular.json").write_text(json.dumps({"meta": meta, "rows": report}, indent=1))


if __name__ == "__main__":
    main()
