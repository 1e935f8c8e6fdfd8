"""Captum's gradient methods side by side with Lantern's, on the same weights (optional).

    pip install -e ".[bench-peers]"      # torch==2.13.0 (CPU) + captum
    python bench/peers_gradients.py [--allocator tuned|default] [--runs 5] [--threads 2]

Runs only if torch and captum are importable (else it says so and exits 0).  torch is
imported by this file (and ``peers_common.py``) alone; Lantern never imports it.

The PyTorch peer is Lantern's own ONNX graph of EfficientNet-Lite0 walked node by node into
torch ops (``peers_common.onnx_to_torch``, as ``peers_occlusion.py`` does), with an
``nn.Identity`` tap on ``head.act`` (the output of the last Clip, before
GlobalAveragePool) for Captum's layer methods; the logits are checked to agree first.
Image: ``skimage.data.chelsea()``, target 285.  torch gets ``torch.set_num_threads(2)``,
ONNX Runtime 2 intra-op threads (``--threads`` sets both).

Pairs (Captum ↔ Lantern):

* saliency: ``Saliency`` (abs=True), max over channels ↔ saliency, reduce abs_max;
* grad_cam: ``LayerGradCam`` on ``head.act`` with relu_attributions, then
  ``LayerAttribution.interpolate`` to 224×224 bilinear ↔ grad_cam with its defaults;
* integrated_gradients: ``IntegratedGradients`` n_steps 50, gausslegendre, baseline = the
  normalised black image, summed over channels ↔ integrated_gradients steps 50,
  gausslegendre, baseline zero (black pixels), reduce signed;
* integrated_gradients_fewer: the same Captum call ↔ Lantern's integrated_gradients with
  the midpoint rule at 40 points, which on ten bundled photos matches Gauss–Legendre at 50
  on completeness error and falls 0.0006 short of it on map r (``bench/ig_rules.py``);
  untimed, both maps' Pearson r with a 1024-point midpoint map (the converged integral)
  and their completeness errors are printed;
* smoothgrad: ``NoiseTunnel(Saliency)`` smoothgrad, nt_samples 25, stdevs
  0.15 × (x.max() − x.min()): the mean of |grad|, max over channels ↔ smoothgrad samples 25,
  noise 0.15, average abs, reduce abs_max (the mean of |grad|, max over channels: the same
  quantity).

The noise of SmoothGrad comes from different generators, so its maps are compared by
correlation only.  More correlations put that r in context (untimed): Captum's map against
Captum's own with other noise (the noise floor at 25 samples), and Lantern's default
(``average: gradient``: |mean grad|, max over channels) against Captum's ``abs=False`` map
(the same quantity) next to that quantity's own noise floor (two Captum draws).  Printed:
median (and min) time of each side after one warm-up, the speed-up (Captum median /
Lantern median) and the Pearson r of the two maps.  Lantern's side is timed first (all
rows), then Captum's, so that torch's thread pool never shares the cores with ONNX Runtime
during a Lantern call.  Captum's IntegratedGradients
runs with its default ``internal_batch_size`` (all 50 points in one batch); Lantern's with
its default (the model's measured best VJP batch: 1 on EfficientNet-Lite0 with 2 cores).

Allocator: ``--allocator tuned`` (default) re-executes this script with
``GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:
glibc.malloc.trim_threshold=68719476736``; ``--allocator default`` with it unset (the
helper is ``peers_common.ensure_allocator``).  The header says which was in force.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from peers_common import allocator_line, ensure_allocator, onnx_to_torch, pearson, peers_available

OUT = Path(__file__).resolve().parent / "out"
TARGET_CLASS = 285
LAYER = "head.act"
ROWS = ("saliency", "grad_cam", "integrated_gradients", "integrated_gradients_fewer", "smoothgrad")
#: integrated_gradients_fewer: Lantern's rule and points that match Captum's 50
#: Gauss–Legendre points on completeness error (bench/ig_rules.py, bench/RESULTS.md)
FEWER_STEPS, FEWER_RULE = 40, "riemann_middle"
#: the converged integral the quality of both IG maps is measured against
REFERENCE_STEPS = 1024


@dataclass
class Row:
    name: str
    captum: str
    lantern: str
    captum_s: list[float]
    lantern_s: list[float]
    r: float


def timed(fn: Callable[[], NDArray[np.float32]], runs: int) -> tuple[list[float], Any]:
    """One warm-up call, then ``runs`` timed calls; (seconds, the last result)."""
    out = fn()
    times: list[float] = []
    for _ in range(runs):
        t0 = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t0)
    return times, out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--allocator", choices=["tuned", "default"], default="tuned")
    ap.add_argument("--threads", type=int, default=2, help="torch and ORT threads (default 2)")
    ap.add_argument("--runs", type=int, default=5, help="timed runs per side, after 1 warm-up")
    ap.add_argument("--methods", default=",".join(ROWS), help="comma-separated subset")
    ap.add_argument("--target", type=int, default=TARGET_CLASS)
    ap.add_argument("--data-dir", type=Path, default=OUT / "data")
    args = ap.parse_args(argv)
    wanted = [m.strip() for m in args.methods.split(",") if m.strip()]
    bad = [m for m in wanted if m not in ROWS]
    if bad:
        ap.error(f"unknown method(s) {bad}; choose from {', '.join(ROWS)}")

    if not peers_available():
        print("peers_gradients: torch and/or captum not importable; skipped.")
        print('  (install with: pip install -e ".[bench-peers]")')
        return 0
    ensure_allocator(args.allocator)

    import captum
    import torch
    from captum.attr import (
        IntegratedGradients,
        LayerAttribution,
        LayerGradCam,
        NoiseTunnel,
        Saliency,
    )
    from PIL import Image
    from skimage import data

    from engine.methods.base import no_progress
    from engine.methods.registry import get_method
    from engine.modalities.image import prepare_image
    from engine.models.zoo import BUILTIN_MODEL_ID
    from engine.objectives import class_score
    from jobs.runtime import Runtime
    from lantern.settings import Settings

    torch.set_num_threads(args.threads)
    warnings.filterwarnings("ignore", message="Input Tensor 0 did not already require grad")
    print(
        f"# peers (gradients): {allocator_line(args.allocator)}, torch {torch.__version__}, "
        f"captum {captum.__version__}, torch threads {torch.get_num_threads()}, ORT threads "
        f"{args.threads}, load average before {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )

    settings = Settings(data_dir=args.data_dir, ort_threads=args.threads, redis_url=None)
    rt = Runtime(settings)
    rt.ensure_builtin()
    model = rt.load(BUILTIN_MODEL_ID)
    image = prepare_image(Image.fromarray(data.chelsea()), model.manifest)
    x_np = model.to_model_input(image.pixels[None])
    target = args.target

    net = onnx_to_torch(model.path, taps=[LAYER])
    x = torch.from_numpy(x_np)
    with torch.inference_mode():
        ours_logits = model.run(x_np)[0]
        torch_logits = net(x)[0].numpy()
    diff = float(np.abs(ours_logits - torch_logits).max())
    print(
        f"logits ORT vs torch peer: max |difference| = {diff:.2e}; target {target} "
        f"({model.labels[target]}), top class {int(np.argmax(ours_logits))}",
        flush=True,
    )
    if diff > 1e-2:
        raise SystemExit("the torch peer does not reproduce the ONNX model; not comparing")

    black = torch.from_numpy(model.to_model_input(np.zeros_like(image.pixels)[None]))
    stdev = 0.15 * float(x.max() - x.min())
    h, w = image.height, image.width

    def lantern(name: str, raw: dict[str, Any]) -> Callable[[], NDArray[np.float32]]:
        spec = get_method(name)
        params = spec.parse_params(raw)
        spec.check(params, model)
        objective = class_score(model, target, params)
        return lambda: spec.fn(model, image, objective, params, no_progress).values

    def cap_saliency() -> NDArray[np.float32]:
        a = Saliency(net).attribute(x, target=target, abs=True)
        return a[0].max(dim=0).values.detach().numpy()

    def cap_grad_cam() -> NDArray[np.float32]:
        a = LayerGradCam(net, net.tap(LAYER)).attribute(x, target=target, relu_attributions=True)
        up = LayerAttribution.interpolate(a, (h, w), interpolate_mode="bilinear")
        return up[0, 0].detach().numpy()

    def cap_ig() -> NDArray[np.float32]:
        a = IntegratedGradients(net).attribute(
            x, baselines=black, target=target, n_steps=50, method="gausslegendre"
        )
        return a[0].sum(dim=0).detach().numpy()

    def cap_smoothgrad(absolute: bool = True) -> NDArray[np.float32]:
        a = NoiseTunnel(Saliency(net)).attribute(
            x, nt_type="smoothgrad", nt_samples=25, stdevs=stdev, target=target, abs=absolute
        )
        return a[0].abs().max(dim=0).values.detach().numpy()

    pairs: dict[str, tuple[str, Callable[[], Any], str, Callable[[], Any]]] = {
        "saliency": (
            "Saliency(abs), max over channels",
            cap_saliency,
            "reduce abs_max",
            lantern("saliency", {"reduce": "abs_max"}),
        ),
        "grad_cam": (
            f"LayerGradCam({LAYER}, relu) + interpolate bilinear",
            cap_grad_cam,
            "defaults",
            lantern("grad_cam", {}),
        ),
        "integrated_gradients": (
            "IntegratedGradients 50 gausslegendre, black, sum over channels",
            cap_ig,
            "steps 50 gausslegendre, baseline zero, signed",
            lantern(
                "integrated_gradients",
                {"steps": 50, "method": "gausslegendre", "baseline": "zero", "reduce": "signed"},
            ),
        ),
        "integrated_gradients_fewer": (
            "IntegratedGradients 50 gausslegendre, black, sum over channels",
            cap_ig,
            f"steps {FEWER_STEPS} {FEWER_RULE}, baseline zero, signed",
            lantern(
                "integrated_gradients",
                {"steps": FEWER_STEPS, "method": FEWER_RULE, "baseline": "zero",
                 "reduce": "signed"},
            ),
        ),
        "smoothgrad": (
            f"NoiseTunnel(Saliency) 25, stdevs {stdev:.3f}, max over channels",
            cap_smoothgrad,
            "samples 25, noise 0.15, average abs, abs_max",
            lantern(
                "smoothgrad",
                {"samples": 25, "noise": 0.15, "average": "abs", "reduce": "abs_max"},
            ),
        ),
    }

    # Lantern first, all of it, then Captum: torch's thread pool then never shares the
    # cores with ORT's during a timed Lantern call.
    ours: dict[str, tuple[list[float], NDArray[np.float32]]] = {}
    for name in wanted:
        ours[name] = timed(pairs[name][3], args.runs)
        print(f"  lantern {name}: {', '.join(f'{t * 1e3:.1f}' for t in ours[name][0])} ms")
    rows: list[Row] = []
    for name in wanted:
        cap_label, cap_fn, our_label, _ = pairs[name]
        cap_times, cap_map = timed(cap_fn, args.runs)
        print(f"  captum {name}: {', '.join(f'{t * 1e3:.1f}' for t in cap_times)} ms", flush=True)
        our_times, our_map = ours[name]
        rows.append(
            Row(name, cap_label, our_label, cap_times, our_times, pearson(our_map, cap_map))
        )

    print(
        f"\n{allocator_line(args.allocator)}; torch/ORT threads {args.threads}; target "
        f"{target}; {args.runs} timed runs per side after 1 warm-up"
    )
    print(
        "| method | Captum | Lantern | Captum median (ms) | Lantern median (ms) | "
        "Captum min (ms) | Lantern min (ms) | speed-up | Pearson r |"
    )
    print("|---|---|---|---:|---:|---:|---:|---:|---:|")
    for r in rows:
        cm, lm = statistics.median(r.captum_s), statistics.median(r.lantern_s)
        print(
            f"| {r.name} | {r.captum} | {r.lantern} | {cm * 1e3:.1f} | {lm * 1e3:.1f} | "
            f"{min(r.captum_s) * 1e3:.1f} | {min(r.lantern_s) * 1e3:.1f} | {cm / lm:.2f}× | "
            f"{r.r:.6f} |"
        )
    if "integrated_gradients_fewer" in ours:
        ig_quality(model, image, target)
    if "smoothgrad" in ours:
        our_map = ours["smoothgrad"][1]  # average abs: the mean of |grad|
        our_mean = lantern(
            "smoothgrad", {"samples": 25, "noise": 0.15, "average": "gradient", "reduce": "abs_max"}
        )()  # the default: |mean grad|
        ref = cap_smoothgrad()
        other = cap_smoothgrad()
        signed = cap_smoothgrad(absolute=False)
        signed2 = cap_smoothgrad(absolute=False)
        print(
            "\nsmoothgrad in context (untimed Pearson r; 25 samples, independent noise):\n"
            f"  Captum |grad| vs Captum |grad|, other noise (noise floor of the table's r): "
            f"{pearson(ref, other):.4f}\n"
            f"  Lantern average abs vs Captum |grad|, other noise: "
            f"{pearson(our_map, other):.4f}\n"
            f"  Captum |mean grad| vs the same, other noise (noise floor of Lantern's "
            f"average gradient): {pearson(signed, signed2):.4f}\n"
            f"  Lantern average gradient vs Captum |mean grad| (like for like): "
            f"{pearson(our_mean, signed):.4f}, {pearson(our_mean, signed2):.4f}\n"
            f"  Captum |grad| vs Captum |mean grad|: {pearson(ref, signed):.4f}"
        )
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


def ig_quality(model: Any, image: Any, target: int) -> None:
    """Untimed: Captum's 50 Gauss–Legendre points and Lantern's fewer points against the
    converged integral (a 1024-point midpoint map), and each one's completeness error."""
    from engine.methods.base import no_progress
    from engine.methods.registry import get_method
    from engine.objectives import class_score

    spec = get_method("integrated_gradients")

    def run(steps: int, rule: str) -> Any:
        params = spec.parse_params({"steps": steps, "method": rule, "baseline": "zero",
                                    "reduce": "signed"})
        return spec.fn(model, image, class_score(model, target, params), params, no_progress)

    ref = run(REFERENCE_STEPS, "riemann_middle").values
    gl = run(50, "gausslegendre")  # Captum's map to r 0.999999 (the table's first IG row)
    fewer = run(FEWER_STEPS, FEWER_RULE)
    print(
        f"\nintegrated gradients against the converged integral ({REFERENCE_STEPS}-point "
        f"midpoint map; untimed):\n"
        f"  50 gausslegendre (Captum's default, = Lantern's to the r above): r "
        f"{pearson(gl.values, ref):.5f}, completeness error "
        f"{100 * gl.extras['completeness_error']:.2f} %\n"
        f"  {FEWER_STEPS} {FEWER_RULE} (Lantern, the _fewer row): r "
        f"{pearson(fewer.values, ref):.5f}, completeness error "
        f"{100 * fewer.extras['completeness_error']:.2f} %"
    )


if __name__ == "__main__":
    sys.exit(main())
