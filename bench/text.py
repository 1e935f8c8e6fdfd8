"""Text methods on the built-in sentiment model: each method's time, its ratio to the
model calls alone (the forward floor: the same number of texts, already built, through
``model.run`` in the same batches), and the ``lime`` package's LimeTextExplainer calling
the same ONNX model through ONNX Runtime, side by side, in one run.

    python bench/text.py [--threads 1] [--runs 3] [--lime-python /tmp/txt/lime-venv/bin/python]

The lime peer runs in a separate interpreter (a venv outside the repository, never .venv:
``python -m venv /tmp/txt/lime-venv && /tmp/txt/lime-venv/bin/pip install lime
onnxruntime``) with the same ORT thread count; its ``classifier_fn`` feeds ORT the string
tensor [N, 1]. Both explain class "positive" with 1000 samples (bow=True: a word is every
occurrence, as Lantern's); the Spearman correlation of the two LIME weightings is printed
as a sanity check (different random samples: close, not equal).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import onnxruntime as ort

from engine.methods.base import no_progress
from engine.methods.kernel_shap import sample_coalitions
from engine.methods.registry import get_method
from engine.methods.text.lime import lime_text_codes
from engine.modalities.text import TextCodec, TextInput
from engine.models.runtime import GraphIO, LoadedModel, RuntimeOptions
from engine.models.zoo.sentiment_tfidf import build, corpus, manifest
from engine.objectives import ClassScore

OUT = Path(__file__).resolve().parent / "out"
SAMPLES = 1000

PEER = r"""
import json, sys, time, re
import numpy as np, onnxruntime as ort
from lime.lime_text import LimeTextExplainer
path, text = sys.argv[1], sys.argv[2]
threads, runs, samples = (int(a) for a in sys.argv[3:6])
so = ort.SessionOptions(); so.intra_op_num_threads = threads; so.inter_op_num_threads = 1
sess = ort.InferenceSession(path, so, providers=["CPUExecutionProvider"])
calls = [0]
def fn(texts):
    calls[0] += len(texts)
    x = np.array(texts, dtype=object).reshape(-1, 1)
    out = []
    for i in range(0, len(x), 256):
        out.append(sess.run(["probabilities"], {"text": x[i:i + 256]})[0])
    return np.concatenate(out)
explainer = LimeTextExplainer(class_names=["negative", "positive"], bow=True, random_state=0)
m = len(set(w.lower() for w in re.findall(r"\w+", text)))
times = []
for r in range(runs + 1):
    calls[0] = 0
    t0 = time.perf_counter()
    exp = explainer.explain_instance(text, fn, labels=(1,), num_features=m, num_samples=samples)
    if r: times.append(time.perf_counter() - t0)
print(json.dumps({"times": times, "calls": calls[0], "weights": dict(exp.as_list(label=1))}))
"""


def median_time(fn: Callable[[], object], runs: int) -> float:
    fn()
    times = []
    for _ in range(runs):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return statistics.median(times)


def texts() -> dict[str, str]:
    sents, _, _ = corpus(40, 11)
    return {
        "short": sents[0],
        "medium": " ".join(sents[1:4]),
        "long": " ".join(sents[4:12]),
    }


def peer(python: str, path: Path, text: str, threads: int, runs: int) -> dict[str, Any] | None:
    if not Path(python).exists():
        return None
    r = subprocess.run(
        [python, "-c", PEER, str(path), text, str(threads), str(runs), str(SAMPLES)],
        capture_output=True,
        text=True,
        check=False,
    )
    if r.returncode != 0:
        print(r.stderr[-2000:], file=sys.stderr)
        return None
    out: dict[str, Any] = json.loads(r.stdout.strip().splitlines()[-1])
    return out


def sample_texts(method: str, item: TextInput, params: Any) -> list[str]:
    """The texts a method runs (its samples, plus the references it scores)."""
    m = item.n_features
    ends = [item.text, item.keep(np.zeros(m, bool))]
    if method == "occlusion":
        return ends + [item.keep(k) for k in ~np.eye(m, dtype=bool)]
    if method == "kernel_shap":
        z, _ = sample_coalitions(m, params.num_samples, params.seed)
        return ends + [item.keep(k) for k in z.astype(bool)]
    z = lime_text_codes(m, params.num_samples, params.seed)
    return [item.keep(k) for k in z.astype(bool)]


def spearman(a: list[float], b: list[float]) -> float:
    ra = np.argsort(np.argsort(a)).astype(float)
    rb = np.argsort(np.argsort(b)).astype(float)
    return float(np.corrcoef(ra, rb)[0, 1])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--lime-python", default="/tmp/txt/lime-venv/bin/python")
    args = ap.parse_args()
    zoo = Path(os.environ.get("LANTERN_ZOO") or tempfile.mkdtemp(prefix="lantern-zoo-"))
    t0 = time.perf_counter()
    path, facts = build(zoo)
    build_s = time.perf_counter() - t0
    model = LoadedModel(
        "sentiment-tfidf",
        "bench",
        path,
        manifest(facts),
        RuntimeOptions(intra_op_threads=args.threads),
        io=GraphIO("text", "probabilities"),
    )
    codec = model.codec
    assert isinstance(codec, TextCodec)
    objective = ClassScore(index=1, score="logit", label="positive")
    rows: list[dict[str, Any]] = []
    for label, text in texts().items():
        item: TextInput = codec.item(text)
        m = item.n_features
        for method, params in (
            ("occlusion", {}),
            ("kernel_shap", {"num_samples": SAMPLES}),
            ("lime", {"num_samples": SAMPLES}),
        ):
            spec = get_method(method, "text")
            p = spec.parse_params(params)
            result = spec.fn(model, item, objective, p, no_progress)
            calls = result.model_calls
            seconds = median_time(
                lambda s=spec, it=item, pp=p: s.fn(model, it, objective, pp, no_progress),
                args.runs,
            )
            # the floor: the same texts (the method's samples, prebuilt) through the model
            batch = codec.to_model_input(sample_texts(method, item, p))
            assert batch.shape[0] == calls, (method, batch.shape, calls)
            floor = median_time(lambda b=batch: model.run(b, 256), args.runs)
            row: dict[str, Any] = {
                "text": label,
                "words": m,
                "method": method,
                "calls": calls,
                "seconds": seconds,
                "floor_s": floor,
                "ratio": seconds / floor,
            }
            if method == "lime":
                got = peer(args.lime_python, path, text, args.threads, args.runs)
                if got is not None:
                    ours = {
                        w.lower(): float(v)
                        for w, v in zip(item.words, result.extras["weights"], strict=True)
                    }
                    theirs = {w.lower(): float(v) for w, v in got["weights"].items()}
                    common = sorted(set(ours) & set(theirs))
                    row.update(
                        peer_s=statistics.median(got["times"]),
                        peer_calls=got["calls"],
                        peer_ratio=statistics.median(got["times"]) / seconds,
                        spearman_vs_peer=spearman(
                            [ours[w] for w in common], [theirs[w] for w in common]
                        ),
                    )
            rows.append(row)
            print(json.dumps(row), flush=True)
    cpu = next(
        (
            ln.split(":", 1)[1].strip()
            for ln in Path("/proc/cpuinfo").read_text().splitlines()
            if ln.startswith("model name")
        ),
        platform.processor(),
    )
    meta = {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "onnxruntime": ort.__version__,
        "load": Path("/proc/loadavg").read_text().split()[:3],
        "threads": args.threads,
        "utc": time.strftime("%Y-%m-%d %H:%M", time.gmtime()),
        "build_s": build_s,
        "held_out_accuracy": facts["held_out_accuracy"],
    }
    OUT.mkdir(exist_ok=True)
    (OUT / "text.json").write_text(json.dumps({"meta": meta, "rows": rows}, indent=1))
    print(json.dumps(meta))
    print(
        "| text (words) | method | model calls | Lantern s | forward floor s | × floor "
        "| lime pkg s | lime pkg ÷ Lantern | Spearman vs lime pkg |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        peer_cols = (
            f"{r['peer_s']:.3f} | {r['peer_ratio']:.2f} | {r['spearman_vs_peer']:.3f}"
            if "peer_s" in r
            else "– | – | –"
        )
        print(
            f"| {r['text']} ({r['words']}) | {r['method']} | {r['calls']} | "
            f"{r['seconds']:.4f} | {r['floor_s']:.4f} | {r['ratio']:.2f} | {peer_cols} |"
        )


if __name__ == "__main__":
    main()
