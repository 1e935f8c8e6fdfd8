"""Captum's ``Occlusion`` side by side with Lantern's, on the same weights (optional).

    pip install -e ".[bench-peers]"      # torch==2.13.0 (CPU) + captum
    python bench/peers_occlusion.py [--allocator tuned|default] [--ppe 1,16] [--runs 2]

Runs only if torch and captum are importable (else it says so and exits 0).  torch is
imported by this file alone; Lantern never imports it.

The PyTorch peer is Lantern's own ONNX graph of EfficientNet-Lite0 (batch-norm already
folded) walked node by node into torch ops (Conv / Clip / Add / GlobalAveragePool /
Flatten / Gemm), so both sides compute the same function with the same weights; the script
checks the logits agree before timing.

Same configuration on both sides: window 16×16 over all 3 channels, stride 8 (Captum:
``sliding_window_shapes=(3, 16, 16)``, ``strides=(3, 8, 8)``), target = top class.
Baseline: Lantern's "zero" is black *pixels*; Captum works on the normalised tensor, where
0 is the mean colour.  For a like-for-like map Captum gets the normalised black image as
its baseline (``--captum-baseline black``, default); ``--captum-baseline zero`` passes 0
(≈ the mean colour (124, 116, 104)) and Lantern then gets that colour as its baseline.

glibc's malloc: torch's many short-lived activation buffers make the default allocator
mmap/munmap and trim constantly.  ``--allocator tuned`` (default) re-executes this script
with ``GLIBC_TUNABLES=glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:
glibc.malloc.trim_threshold=68719476736``; ``--allocator default`` with GLIBC_TUNABLES
unset.  (The variable is read when the process starts, hence the re-exec.)  The torch
model and the re-exec helper live in ``bench/peers_common.py`` (shared with
``peers_gradients.py``).
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray
from peers_common import allocator_line, ensure_allocator, onnx_to_torch, pearson, peers_available

OUT = Path(__file__).resolve().parent / "out"


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--allocator", choices=["tuned", "default"], default="tuned")
    ap.add_argument("--threads", type=int, default=2, help="torch and ORT threads (default 2)")
    ap.add_argument("--ppe", default="1", help="Captum perturbations_per_eval values")
    ap.add_argument("--runs", type=int, default=2, help="timed runs per setting")
    ap.add_argument("--lantern-batch", type=int, default=0,
                    help="Lantern's batch_size (0, the default: Lantern's own default, the "
                    "model's measured best batch)")
    ap.add_argument("--captum-baseline", choices=["black", "zero"], default="black")
    ap.add_argument("--data-dir", type=Path, default=OUT / "data")
    args = ap.parse_args(argv)

    if not peers_available():
        print("peers_occlusion: torch and/or captum not importable; skipped.")
        print('  (install with: pip install -e ".[bench-peers]")')
        return 0
    ensure_allocator(args.allocator)

    import torch
    from captum.attr import Occlusion
    from PIL import Image
    from skimage import data

    from engine.methods.base import no_progress
    from engine.methods.occlusion import OcclusionParams, occlusion
    from engine.modalities.image import prepare_image
    from engine.models.zoo import BUILTIN_MODEL_ID
    from engine.objectives import ClassScore
    from jobs.runtime import Runtime
    from lantern.settings import Settings

    torch.set_num_threads(args.threads)
    print(
        f"# peers: {allocator_line(args.allocator)}, "
        f"torch {torch.__version__}, threads {torch.get_num_threads()}, "
        f"load average {' '.join(f'{x:.2f}' for x in os.getloadavg())}",
        flush=True,
    )

    settings = Settings(
        data_dir=args.data_dir, ort_threads=args.threads, max_batch=args.lantern_batch or 16
    )
    rt = Runtime(settings)
    rt.ensure_builtin()
    model = rt.load(BUILTIN_MODEL_ID)
    image = prepare_image(Image.fromarray(data.chelsea()), model.manifest)
    x_np = model.to_model_input(image.pixels[None])
    target = int(np.argmax(model.run(x_np)[0]))
    objective = ClassScore(target, "logit", model.labels[target])

    net = onnx_to_torch(settings.zoo_dir / f"{BUILTIN_MODEL_ID}.onnx")
    x = torch.from_numpy(x_np)
    with torch.inference_mode():
        ours_logits = model.run(x_np)[0]
        torch_logits = net(x)[0].numpy()
    diff = float(np.abs(ours_logits - torch_logits).max())
    print(f"logits ORT vs torch peer: max |difference| = {diff:.2e}")
    if diff > 1e-2:
        raise SystemExit("the torch peer does not reproduce the ONNX model; not comparing")

    if args.captum_baseline == "black":
        lantern_baseline: Any = "zero"
        captum_baseline: Any = torch.from_numpy(
            model.to_model_input(np.zeros_like(image.pixels)[None])
        )
        label = "normalised black (= Lantern's zero)"
    else:
        mean = np.asarray(model.manifest.mean) * 255.0
        lantern_baseline = tuple(int(v) for v in np.rint(mean))
        captum_baseline = 0.0
        label = f"0 in normalised space (≈ Lantern colour {lantern_baseline})"

    params = OcclusionParams(
        window=16, stride=8, baseline=lantern_baseline, batch_size=args.lantern_batch or None
    )
    ours_times: list[float] = []
    ours_map: NDArray[np.float32] | None = None
    for i in range(args.runs + 1):
        t0 = time.perf_counter()
        ours_map = occlusion(model, image, objective, params, no_progress).values
        if i:  # the first is warm-up
            ours_times.append(time.perf_counter() - t0)
    assert ours_map is not None

    occ = Occlusion(lambda inp: net(inp))
    rows: list[tuple[str, float, float, float]] = []
    rows.append(
        (
            f"Lantern (ORT, batch_size {args.lantern_batch or model.preferred_batch()})",
            statistics.median(ours_times),
            min(ours_times),
            1.0,
        )
    )
    for ppe in [int(p) for p in args.ppe.split(",") if p.strip()]:
        times: list[float] = []
        cmap: NDArray[np.float32] | None = None
        for i in range(args.runs + 1):
            t0 = time.perf_counter()
            with torch.inference_mode():
                attr = occ.attribute(
                    x,
                    sliding_window_shapes=(3, 16, 16),
                    strides=(3, 8, 8),
                    baselines=captum_baseline,
                    target=target,
                    perturbations_per_eval=ppe,
                )
            if i:
                times.append(time.perf_counter() - t0)
            cmap = attr[0].mean(dim=0).numpy()
            print(f"  captum ppe={ppe}: run {i} {time.perf_counter() - t0:.2f} s", flush=True)
        assert cmap is not None
        rows.append(
            (
                f"Captum Occlusion (torch, perturbations_per_eval {ppe})",
                statistics.median(times),
                min(times),
                pearson(ours_map, cmap),
            )
        )

    print(
        f"\nbaseline: {label}; target {target} ({model.labels[target]}); "
        f"{args.runs} timed runs after 1 warm-up"
    )
    print("| implementation | median (s) | min (s) | Pearson r with Lantern's map |")
    print("|---|---:|---:|---:|")
    for name, med, mn, r in rows:
        print(f"| {name} | {med:.2f} | {mn:.2f} | {r:.6f} |")
    print(f"load average after: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
