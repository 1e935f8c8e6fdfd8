#!/usr/bin/env bash
# Lantern benchmarks: forward throughput, occlusion end to end and every registered method;
# the Captum peer comparisons (occlusion, gradient methods) too when torch and captum are
# importable (pip install -e ".[bench-peers]").
# Usage: bash bench/run_all.sh [--threads N]     (results also in bench/out/*.json, *.md)
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-python}"
THREADS=2
if [[ "${1:-}" == "--threads" ]]; then THREADS="$2"; fi
mkdir -p bench/out

echo "## machine"
echo "nproc: $(nproc); CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | xargs)"
echo "RAM: $(free -h | awk '/^Mem:/ {print $2}'); onnxruntime $("$PY" -c 'import onnxruntime as o; print(o.__version__)')"
echo "date: $(date -u '+%Y-%m-%d %H:%M UTC'); load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo

echo "## forward"
"$PY" bench/forward.py --threads "$THREADS" --json bench/out/forward.json | tee bench/out/forward.md
echo

echo "## occlusion"
"$PY" bench/occlusion.py --threads "$THREADS" --json bench/out/occlusion.json \
    | tee bench/out/occlusion.md
echo

echo "## methods"
"$PY" bench/methods.py --threads "$THREADS" --json bench/out/methods.json \
    | tee bench/out/methods.md
echo

if "$PY" -c 'import torch, captum' 2>/dev/null; then
    echo "## peers (Captum), tuned allocator"
    "$PY" bench/peers_occlusion.py --threads "$THREADS" --allocator tuned \
        | tee bench/out/peers_tuned.md
    echo
    echo "## peers (Captum), default allocator"
    "$PY" bench/peers_occlusion.py --threads "$THREADS" --allocator default \
        | tee bench/out/peers_default.md
    echo
    echo "## peers (Captum gradient methods), tuned allocator"
    "$PY" bench/peers_gradients.py --threads "$THREADS" --allocator tuned \
        | tee bench/out/peers_gradients_tuned.md
    echo
    echo "## peers (Captum gradient methods), default allocator"
    "$PY" bench/peers_gradients.py --threads "$THREADS" --allocator default \
        | tee bench/out/peers_gradients_default.md
else
    echo "## peers: skipped (torch/captum not importable; pip install -e \".[bench-peers]\")"
fi
