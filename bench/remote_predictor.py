"""Forward passes through a remote predictor against local ONNX Runtime, in one run.

    python bench/remote_predictor.py [--images 256] [--rounds 3] [--threads 1]

Starts ``lantern serve`` (embedded, only the built-in EfficientNet-Lite0) on a free port:
that server's ``/v2/models/efficientnet-lite0/infer`` is the remote predictor (the Open
Inference Protocol, tensors in the binary extension). In this process the same model is
loaded twice — plain (local ONNX Runtime session) and with a manifest ``predictor`` naming
the server — and ``model.run`` pushes ``--images`` random model inputs through each,
rounds alternating local and remote, for batch 16 with 1, 2 and 4 requests in flight.

Both sides share the host's cores (the server's ONNX Runtime and this process's), so the
remote's throughput is bounded by the same CPUs plus the HTTP and (de)serialisation cost:
the ratio measures that overhead. ``--threads`` sets ONNX Runtime's intra-op threads on
both sides. Prints images/s per row and the ratio to local.
"""

from __future__ import annotations

import argparse
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    ap.add_argument("--images", type=int, default=256)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--data-dir", type=Path, default=ROOT / "bench" / "out" / "data")
    args = ap.parse_args()

    from api_schemas.models import MANIFESTS
    from engine.models.runtime import LoadedModel, RuntimeOptions
    from jobs.runtime import Runtime
    from lantern.settings import Settings

    env = {**os.environ, "LANTERN_DATA_DIR": str(args.data_dir),
           "LANTERN_BUILTIN_MODELS": '["efficientnet-lite0"]',
           "LANTERN_ORT_THREADS": str(args.threads)}
    env.pop("LANTERN_REDIS_URL", None)
    port = free_port()
    log = tempfile.NamedTemporaryFile(prefix="lantern-remote-", suffix=".log", delete=False)
    server = subprocess.Popen([sys.executable, "-m", "lantern.cli", "serve", "--port",
                               str(port)], env=env, stdout=log, stderr=log, cwd=ROOT)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{base}/readyz", timeout=2).status_code == 200:
                    break
            except httpx.TransportError:
                pass
            time.sleep(0.5)
        else:
            raise SystemExit(f"the server did not start; see {log.name}")
        rt = Runtime(Settings(data_dir=args.data_dir, builtin_models=["efficientnet-lite0"]))
        rt.ensure_builtin()
        info = rt.models.get("efficientnet-lite0")
        path = rt.models.path(info.name, info.version)
        options = RuntimeOptions(max_batch=16, intra_op_threads=args.threads)
        local = LoadedModel(info.name, info.version, path, info.manifest, options)
        x = np.random.default_rng(0).normal(size=(args.images, 3, 224, 224)).astype(np.float32)
        remotes = {}
        for conc in (1, 2, 4):
            m = info.manifest.model_dump()
            m["predictor"] = {"url": base, "batch": 16, "concurrency": conc}
            remotes[conc] = LoadedModel(info.name, info.version, path,
                                        MANIFESTS.validate_python(m), options)
        local.run(x[:16])
        for r in remotes.values():
            r.run(x[:16])
        times: dict[str, list[float]] = {"local": [], **{f"remote c={c}": [] for c in remotes}}
        for _ in range(args.rounds):
            for name in times:
                model = local if name == "local" else remotes[int(name.split("=")[1])]
                t = time.perf_counter()
                y = model.run(x)
                times[name].append(time.perf_counter() - t)
                assert y.shape == (args.images, 1000)
        np.testing.assert_allclose(remotes[2].run(x[:32]), local.run(x[:32]), rtol=1e-4,
                                   atol=1e-5)
        load = os.getloadavg()
        print(f"host: {os.cpu_count()} cores, load {load[0]:.2f}; ORT threads {args.threads} "
              f"each side; {args.images} images of 224×224, batch 16, {args.rounds} rounds "
              "(median)")
        print("| forward passes | images/s | × local |")
        print("|---|---:|---:|")
        base_s = statistics.median(times["local"])
        for name, ts in times.items():
            s = statistics.median(ts)
            print(f"| {name} | {args.images / s:.1f} | {base_s / s:.2f} |")
    finally:
        server.terminate()
        server.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
