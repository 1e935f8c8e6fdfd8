"""Feature visualisation's step against the model's own forward+backward pass (optional:
Lucent side by side).

    python bench/visualisation.py [--threads 2] [--steps 48] [--job-steps 512]
                                  [--layers blocks.2.expand,blocks.6.expand,head.conv,logits]
                                  [--lucent]

On the built-in EfficientNet-Lite0, a batch of 8 units at 128 × 128 (the default size; the
model sees 224 × 224), per objective layer (``logits``: a class objective, the whole
network):

* ``vjp``: one ``model.vjp`` of the batch (8 × 3 × 224 × 224, a seed per row, output =
  the objective's layer): the forward+backward pass every step needs;
* ``step``: one step of ``feature_visualisation`` (Lucid's transforms, FFT/colour
  parameterisation, the VJP, every adjoint back to the spectrum, Adam), as
  ``feature_visualisation(steps=N)`` / N;
* ``ratio`` = step / vjp, against the target ≤ 1.25.

Each of ``--steps`` steps is paired with one more VJP of a batch of the same shape, run and
timed right after it (from the progress callback), and the median of the per-step ratios
reported: on a shared host the load drifts by more than the difference measured. Then
one batched job of 8 units × ``--job-steps`` steps at
128 × 128 (every transform) on ``blocks.6.expand`` is timed end to end.

``--lucent`` adds Lucent (``pip install torch==2.13.0 torch-lucent``; never a Lantern
dependency) on the same weights — Lantern's ONNX graph walked into torch ops
(``peers_common.onnx_to_torch``) — with the same objective (8 channels of
``blocks.6.expand``, one per image), size, batch, parameterisation, transforms and Adam;
Lantern is timed first, then torch (their thread pools never share the cores). torch runs
with ``--allocator tuned`` (default; ``peers_common.ensure_allocator``) and
``torch.set_num_threads(--threads)``. Lucent's one torchvision import (``Normalize``) is
stubbed: PyPI's torchvision wheel does not load against the CPU torch wheel. Skipped (it
says so) when torch or lucent is missing.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

from engine.methods.base import no_progress
from engine.methods.feature_visualisation import (
    FeatureVisualisationParams,
    feature_visualisation,
)
from engine.models.runtime import LoadedModel
from engine.objectives import Channel, ClassScore, Objective
from engine.visualisation.model_io import UnitGradients
from jobs.runtime import Runtime
from lantern.settings import Settings

OUT = Path(__file__).resolve().parent / "out"
UNITS = 8


def host() -> str:
    try:
        out = subprocess.run(["lscpu"], capture_output=True, text=True, check=False).stdout
        name = next((ln.split(":", 1)[1].strip() for ln in out.splitlines()
                     if ln.startswith("Model name")), "?")
    except OSError:
        name = "?"
    return f"{name}, {os.cpu_count()} cores"


def load(threads: int) -> LoadedModel:
    rt = Runtime(Settings(data_dir=OUT / "data", ort_threads=threads, redis_url=None))
    rt.ensure_builtin()
    return rt.load("efficientnet-lite0")


def objective_of(model: LoadedModel, layer: str) -> Objective:
    return ClassScore(0) if layer == "logits" else Channel(layer, 1, 0)


class PairedTimer:
    """A Progress for ``feature_visualisation`` that, after every step, runs one more VJP
    of a batch of the same shape and times it: each step (the time between two reports,
    less the inserted VJP) is paired with a VJP timed under the same load."""

    def __init__(self, model: LoadedModel, layer: str) -> None:
        obj = objective_of(model, layer)
        units = [obj] + [ClassScore(c) if layer == "logits" else Channel(layer, 1, c)
                         for c in range(1, UNITS)]
        self.grads = UnitGradients(model, units)
        h, w = model.input_hw
        self.x = np.random.default_rng(0).normal(size=(UNITS, 3, h, w)).astype(np.float32)
        self.grads(self.x)
        self.steps: list[float] = []
        self.vjps: list[float] = []
        self._last = time.perf_counter()

    def __call__(self, fraction: float) -> None:
        now = time.perf_counter()
        self.steps.append(now - self._last)
        self.grads(self.x)
        after = time.perf_counter()
        self.vjps.append(after - now)
        self._last = after


def paired(model: LoadedModel, layer: str, steps: int) -> tuple[float, float, float]:
    """(median VJP s, median step s, median of the per-step ratios), the first step (its
    set-up) dropped."""
    timer = PairedTimer(model, layer)
    params = FeatureVisualisationParams(steps=steps + 1, channels=list(range(1, UNITS)))
    timer._last = time.perf_counter()
    feature_visualisation(model, None, objective_of(model, layer), params, timer)
    st, vj = timer.steps[1:], timer.vjps[1:]
    return (statistics.median(vj), statistics.median(st),
            statistics.median(s / v for s, v in zip(st, vj, strict=True)))


def time_steps(model: LoadedModel, layer: str, steps: int) -> float:
    obj = objective_of(model, layer)
    params = FeatureVisualisationParams(steps=steps, channels=list(range(1, UNITS)))
    t = time.perf_counter()
    feature_visualisation(model, None, obj, params, no_progress)
    return (time.perf_counter() - t) / steps


def _stub_torchvision() -> None:
    """Lucent imports ``torchvision.transforms.Normalize`` (its only use of torchvision);
    PyPI's torchvision wheel does not load against the CPU torch wheel (``operator
    torchvision::nms does not exist``), so a two-line Normalize stands in for it."""
    import types

    import torch

    class Normalize:
        def __init__(self, mean: list[float], std: list[float]) -> None:
            self.mean = torch.tensor(mean)[:, None, None]
            self.std = torch.tensor(std)[:, None, None]

        def __call__(self, t: torch.Tensor) -> torch.Tensor:
            return (t - self.mean) / self.std

    tv, tvt = types.ModuleType("torchvision"), types.ModuleType("torchvision.transforms")
    tvt.Normalize = Normalize  # type: ignore[attr-defined]
    tv.transforms = tvt  # type: ignore[attr-defined]
    sys.modules.setdefault("torchvision", tv)
    sys.modules.setdefault("torchvision.transforms", tvt)


def lucent_row(model: LoadedModel, layer: str, steps: int, rounds: int, threads: int) -> str:
    """Lucent's ``render_vis`` with the same objective (8 channels, one per image of the
    batch), parameterisation (``param.image(128, batch=8)``: FFT, decorrelated), the same
    transforms (Lucent's standard ones with the final jitter 2), ImageNet normalisation and
    the upsampling to 224 that Lucent adds itself, Adam 0.05; seconds per step, median of
    ``rounds`` runs of ``steps`` steps after one warm-up run."""
    import importlib.util

    if any(importlib.util.find_spec(m) is None for m in ("torch", "lucent", "kornia")):
        return "| lucent | skipped: pip install torch==2.13.0 torch-lucent |"
    import torch

    _stub_torchvision()
    from lucent.optvis import objectives, param, render, transform
    from peers_common import onnx_to_torch

    torch.set_num_threads(threads)
    net = onnx_to_torch(model.path, taps=[layer]).eval()
    hook = "taps_" + layer.replace(".", "__")
    tfs = [
        transform.pad(12, mode="constant", constant_value=0.5),
        transform.jitter(8),
        transform.random_scale([1 + (i - 5) / 50.0 for i in range(11)]),
        transform.random_rotate([*range(-10, 11), 0, 0, 0, 0, 0]),
        transform.jitter(2),
        transform.normalize(),
    ]
    obj = sum(objectives.channel(hook, c, batch=c) for c in range(1, UNITS))
    obj = objectives.channel(hook, 0, batch=0) + obj

    def run(n: int) -> float:
        t = time.perf_counter()
        render.render_vis(net, obj, lambda: param.image(128, batch=UNITS), transforms=tfs,
                          thresholds=(n,), preprocess=False, show_image=False, progress=False)
        return (time.perf_counter() - t) / n

    run(2)
    per_step = statistics.median(run(steps) for _ in range(rounds))
    return f"| lucent (torch {torch.__version__}) | {per_step * 1e3:.0f} |"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--steps", type=int, default=48)
    ap.add_argument("--rounds", type=int, default=3, help="Lucent rounds")
    ap.add_argument("--job-steps", type=int, default=512)
    ap.add_argument("--layers", default="blocks.2.expand,blocks.6.expand,head.conv,logits")
    ap.add_argument("--lucent", action="store_true")
    ap.add_argument("--allocator", choices=("tuned", "default"), default="tuned",
                    help="glibc malloc tunables for the Lucent side (peers_common)")
    args = ap.parse_args()
    if args.lucent:
        from peers_common import allocator_line, ensure_allocator

        ensure_allocator(args.allocator)
        print(allocator_line(args.allocator))
    print(f"host: {host()}; ORT threads {args.threads}; load {os.getloadavg()[0]:.2f}")
    model = load(args.threads)
    print(f"batch {UNITS} units, 128 × 128 optimised, model input {model.input_hw}; "
          f"{args.steps} steps, each paired with a VJP of the same batch timed right after it")
    print("| objective layer | vjp (ms) | step (ms) | step / vjp | target ≤ 1.25 |")
    print("|---|---|---|---|---|")
    for layer in [ly for ly in args.layers.split(",") if ly]:
        paired(model, layer, 2)  # builds the gradient model
        v, s, ratio = paired(model, layer, args.steps)
        print(f"| {layer} | {v * 1e3:.0f} | {s * 1e3:.0f} | {ratio:.2f} | "
              f"{'ok' if ratio <= 1.25 else 'over'} |", flush=True)
    if args.job_steps:
        layer = "blocks.6.expand"
        params = FeatureVisualisationParams(steps=args.job_steps, channels=list(range(1, UNITS)))
        t = time.perf_counter()
        out = feature_visualisation(model, None, Channel(layer, 1, 0), params, no_progress)
        took = time.perf_counter() - t
        print(f"job: {UNITS} units × {args.job_steps} steps at 128 × 128 on {layer}, one batch: "
              f"{took:.1f} s ({took / args.job_steps * 1e3:.0f} ms/step, "
              f"{out.model_calls} passes)")
    if args.lucent:
        layer = "blocks.6.expand"
        ours = statistics.median(time_steps(model, layer, args.steps) for _ in range(args.rounds))
        print(f"\nside by side, {layer}, {UNITS} channels × 128 × 128, Lucid's transforms, "
              f"{args.steps} steps, median of {args.rounds} runs (Lantern first, then torch)")
        print("| peer | ms / step |\n|---|---|")
        print(f"| lantern (ONNX Runtime) | {ours * 1e3:.0f} |", flush=True)
        print(lucent_row(model, layer, args.steps, args.rounds, args.threads))
    print(f"load after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
