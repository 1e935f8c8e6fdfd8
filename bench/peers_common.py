"""What the Captum peer benches share (``peers_occlusion.py``, ``peers_gradients.py``).

* :func:`peers_available`: torch and captum importable (the peer benches skip otherwise);
* :func:`ensure_allocator`: re-execute the script with the wanted glibc malloc tunables;
* :func:`onnx_to_torch`: Lantern's ONNX graph walked node by node into torch ops, so a
  torch peer computes the same function with the same weights;
* :func:`pearson`: the correlation of two maps.

torch is imported inside the functions only: importing this module never needs it.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from numpy.typing import NDArray

TUNED = "glibc.malloc.arena_max=1:glibc.malloc.mmap_max=0:glibc.malloc.trim_threshold=68719476736"
_REEXEC_MARK = "LANTERN_BENCH_PEERS_REEXEC"


def peers_available() -> bool:
    return all(importlib.util.find_spec(m) is not None for m in ("torch", "captum"))


def ensure_allocator(mode: str) -> None:
    """Re-exec with the wanted GLIBC_TUNABLES (glibc reads it only at process start).

    ``mode`` is "tuned" (:data:`TUNED`) or "default" (GLIBC_TUNABLES unset). Returns at
    once when the environment already matches, or after the one re-exec."""
    want = TUNED if mode == "tuned" else None
    if os.environ.get("GLIBC_TUNABLES") == want or os.environ.get(_REEXEC_MARK):
        return
    env = dict(os.environ)
    env[_REEXEC_MARK] = "1"
    if want is None:
        env.pop("GLIBC_TUNABLES", None)
    else:
        env["GLIBC_TUNABLES"] = want
    sys.stdout.flush()
    os.execve(sys.executable, [sys.executable, *sys.argv], env)


def allocator_line(mode: str) -> str:
    """What was asked and what is in force, for the report's header."""
    gt = os.environ.get("GLIBC_TUNABLES")
    return f"allocator {mode} (GLIBC_TUNABLES={gt or '<unset>'})"


def onnx_to_torch(path: Path, taps: Iterable[str] = ()) -> Any:
    """An ``nn.Module`` running the ONNX graph's nodes with torch ops (the ops it uses).

    ``taps``: tensor names whose value passes through an ``nn.Identity`` module, reachable
    as ``module.tap(name)``; a Captum layer method (e.g. ``LayerGradCam``) hooks that
    module to get the tensor's activation and gradient."""
    import onnx
    import torch
    import torch.nn.functional as F
    from onnx import numpy_helper

    graph = onnx.load(str(path)).graph
    consts = {t.name: torch.from_numpy(numpy_helper.to_array(t).copy()) for t in graph.initializer}
    produced = {o for n in graph.node for o in n.output}
    tap_names = list(taps)
    missing = [t for t in tap_names if t not in produced]
    if missing:
        raise ValueError(f"no node of the graph produces {missing}")

    def attrs(node: Any) -> dict[str, Any]:
        return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}

    def key(name: str) -> str:
        return name.replace(".", "__")

    class OnnxGraph(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.params = torch.nn.ParameterDict(
                {key(k): torch.nn.Parameter(v, requires_grad=False) for k, v in consts.items()}
            )
            self.taps = torch.nn.ModuleDict({key(t): torch.nn.Identity() for t in tap_names})
            self.nodes = [(n.op_type, list(n.input), list(n.output), attrs(n)) for n in graph.node]
            self.input_name = graph.input[0].name
            self.output_name = graph.output[0].name

        def tap(self, name: str) -> torch.nn.Module:
            return self.taps[key(name)]

        def _get(self, env: dict[str, Any], name: str) -> Any:
            if name in env:
                return env[name]
            return self.params[key(name)]

        def forward(self, x: Any) -> Any:
            env: dict[str, Any] = {self.input_name: x}
            for op, ins, outs, a in self.nodes:
                args = [self._get(env, i) for i in ins if i]
                if op == "Conv":
                    t, left, b, r = a.get("pads", [0, 0, 0, 0])
                    h = args[0]
                    if (t, left) == (b, r):
                        padding: tuple[int, int] = (t, left)
                    else:
                        h = F.pad(h, (left, r, t, b))
                        padding = (0, 0)
                    y = F.conv2d(
                        h,
                        args[1],
                        args[2] if len(args) > 2 else None,
                        stride=tuple(a.get("strides", [1, 1])),
                        padding=padding,
                        dilation=tuple(a.get("dilations", [1, 1])),
                        groups=a.get("group", 1),
                    )
                elif op == "Clip":
                    y = torch.clamp(args[0], float(args[1]), float(args[2]))
                elif op == "Add":
                    y = args[0] + args[1]
                elif op == "GlobalAveragePool":
                    y = args[0].mean(dim=(2, 3), keepdim=True)
                elif op == "Flatten":
                    y = torch.flatten(args[0], start_dim=a.get("axis", 1))
                elif op == "Gemm":
                    w = args[1].t() if a.get("transB", 0) else args[1]
                    y = a.get("alpha", 1.0) * (args[0] @ w)
                    if len(args) > 2:
                        y = y + a.get("beta", 1.0) * args[2]
                else:
                    raise NotImplementedError(f"ONNX op {op} is not mapped to torch")
                k = key(outs[0])
                if k in self.taps:
                    y = self.taps[k](y)
                env[outs[0]] = y
            return env[self.output_name]

    return OnnxGraph().eval()


def pearson(a: NDArray[np.floating[Any]], b: NDArray[np.floating[Any]]) -> float:
    return float(np.corrcoef(a.ravel().astype(np.float64), b.ravel().astype(np.float64))[0, 1])
