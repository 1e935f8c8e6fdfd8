"""Peak memory of decoding the worst images and validating the worst model, each in a
fresh process.

    python bench/memory.py [--baseline DIR] [--json PATH]

Cases (the inputs are built here, outside the measured processes):

* ``png16``: a 16-bit grayscale PNG of 6300×6300 (under 100 KB, 39.7 Mpx: under the
  default LANTERN_MAX_PIXELS of 40 M), through ``decode_image``;
* ``png16 x8``: eight of them decoded by eight threads at once (what eight concurrent
  requests do; at most LANTERN_MAX_CONCURRENT_DECODES = 2 run at once now);
* ``jpeg``: a 6000×6000 RGB JPEG, decoded at full size, and ``jpeg draft``: the same with
  ``target_size=(224, 224)`` (what the predict route asks for);
* ``model``: an upload of a few hundred bytes whose ConstantOfShape makes a [1, 1<<30]
  float tensor (4 GiB), through ``validate_model`` (default LANTERN_MAX_MODEL_TENSOR_BYTES).

Each case runs in its own Python process: the figure is the peak resident set while the
case ran (``VmHWM`` after resetting it through ``/proc/self/clear_refs``) minus the
resident set just before, so imports are not counted. ``--baseline DIR``: also run every
case against the source tree in DIR (e.g. ``git archive <commit> | tar -x -C DIR``) for
the "before" column; without it that column gives the figures of the original report.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MB = 1e6

# Figures of the original report, for the "before" column when no --baseline is given.
REPORTED = {
    "png16": "~716 MB (report)",
    "png16 x8": "~5 GB (report)",
    "model": "1-4 GiB, accepted (report)",
}

PROBE = r"""
import inspect, json, sys, threading
root, case, path = sys.argv[1], sys.argv[2], sys.argv[3]
sys.path[:0] = [root, root + "/tests"]

def status(key):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(key + ":"):
                return int(line.split()[1]) * 1024
    raise KeyError(key)

from engine.modalities.image import decode_image
from engine.models.validate import validate_model
from api_schemas.models import ModelManifest
from lantern_testing.models import manifest

data = open(path, "rb").read()
mf = ModelManifest.model_validate(manifest("m", 8, ["a", "b"]))
kwargs = {}
if case == "jpeg draft":
    if "target_size" not in inspect.signature(decode_image).parameters:
        print(json.dumps({"added": None, "outcome": "no target_size"}))
        sys.exit(0)
    kwargs = {"target_size": (224, 224)}
try:
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")
except OSError:
    pass
before = status("VmRSS")
outcome = "accepted"
try:
    if case == "model":
        validate_model(data, mf, 512 * 1024 * 1024)
    elif case == "png16 x8":
        errors = []
        def one():
            try:
                decode_image(data, 40_000_000)
            except Exception as e:
                errors.append(e)
        threads = [threading.Thread(target=one) for _ in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if errors:
            raise errors[0]
    else:
        img = decode_image(data, 40_000_000, **kwargs)
        outcome = f"{img.size[0]}x{img.size[1]} {img.mode}"
except Exception as e:
    outcome = f"refused: {getattr(e, 'code', type(e).__name__)}"
print(json.dumps({"added": status("VmHWM") - before, "outcome": outcome}))
"""


def build_inputs(d: Path) -> dict[str, Path]:
    import numpy as np
    from PIL import Image

    sys.path[:0] = [str(ROOT), str(ROOT / "tests")]
    from onnx import TensorProto, helper, numpy_helper

    arr = np.zeros((6300, 6300), np.uint16)
    arr[::97, ::89] = 65535
    png = d / "g16.png"
    Image.fromarray(arr).save(png, format="PNG")
    del arr

    rng = np.random.default_rng(0)
    small = Image.fromarray(rng.integers(0, 256, (375, 375, 3), dtype=np.uint8))
    buf = io.BytesIO()
    small.resize((6000, 6000), Image.Resampling.BILINEAR).save(buf, format="JPEG", quality=90)
    jpeg = d / "big.jpg"
    jpeg.write_bytes(buf.getvalue())

    nodes = [
        helper.make_node("GlobalAveragePool", ["input"], ["pool"], name="pool"),
        helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
        helper.make_node("MatMul", ["flat", "W"], ["mm"], name="fc"),
        helper.make_node(
            "ConstantOfShape",
            ["shape"],
            ["big"],
            name="huge_fill",
            value=helper.make_tensor("v", TensorProto.FLOAT, [1], [0.0]),
        ),
        helper.make_node("ReduceSum", ["big"], ["s"], name="sum", keepdims=0),
        helper.make_node("Add", ["mm", "s"], ["logits"], name="add"),
    ]
    graph = helper.make_graph(
        nodes,
        "hostile",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        initializer=[
            numpy_helper.from_array(np.ones((3, 2), np.float32), "W"),
            numpy_helper.from_array(np.asarray([1, 1 << 30], np.int64), "shape"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx_path = d / "hostile.onnx"
    onnx_path.write_bytes(model.SerializeToString())
    return {
        "png16": png,
        "png16 x8": png,
        "jpeg": jpeg,
        "jpeg draft": jpeg,
        "model": onnx_path,
    }


def measure(tree: Path, case: str, path: Path) -> dict[str, object]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("LANTERN_")}
    env["PYTHONPATH"] = f"{tree}{os.pathsep}{tree / 'tests'}"
    out = subprocess.run(
        [sys.executable, "-c", PROBE, str(tree), case, str(path)],
        capture_output=True,
        text=True,
        cwd=tree,
        env=env,
        timeout=900,
    )
    if out.returncode != 0:
        return {"added": None, "outcome": f"crashed (rc {out.returncode}): {out.stderr[-200:]}"}
    result: dict[str, object] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def host() -> str:
    name = platform.processor() or platform.machine()
    try:
        for line in subprocess.run(["lscpu"], capture_output=True, text=True).stdout.splitlines():
            if line.startswith("Model name"):
                name = line.split(":", 1)[1].strip()
    except OSError:
        pass
    return f"{name}, {os.cpu_count()} CPUs, Python {platform.python_version()}"


def fmt(r: dict[str, object] | None) -> str:
    if r is None:
        return "-"
    added = r["added"]
    size = "n/a" if added is None else f"{float(added) / MB:,.0f} MB"  # type: ignore[arg-type]
    return f"{size} ({r['outcome']})"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--baseline", type=Path, help="source tree of the code before")
    ap.add_argument("--json", type=Path, help="also write the rows here")
    args = ap.parse_args()
    if not Path("/proc/self/status").exists():
        sys.exit("bench/memory.py reads /proc/self/status: Linux only")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        inputs = build_inputs(Path(tmp))
        sizes = {k: p.stat().st_size for k, p in inputs.items()}
        for case, path in inputs.items():
            before = measure(args.baseline, case, path) if args.baseline else None
            after = measure(ROOT, case, path)
            rows.append(
                {"case": case, "input_bytes": sizes[case], "before": before, "after": after}
            )
    print(f"host: {host()}")
    print("peak RSS added, each case in a fresh process\n")
    print("| case | input | before | after |")
    print("|---|---|---|---|")
    for row in rows:
        case = str(row["case"])
        before = fmt(row["before"]) if args.baseline else REPORTED.get(case, "-")  # type: ignore[arg-type]
        print(
            f"| {case} | {int(row['input_bytes']):,} B | {before} | "  # type: ignore[call-overload]
            f"{fmt(row['after'])} |"  # type: ignore[arg-type]
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"host": host(), "rows": rows}, indent=2))


if __name__ == "__main__":
    main()
