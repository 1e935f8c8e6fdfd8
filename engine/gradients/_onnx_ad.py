"""A narrow, typed wrapper over onnx-ad (which ships no type hints).

Everything Lantern uses from onnx-ad goes through here, so its conventions are written
down in one place:

* ``reverse(model, inputs=[x], outputs=[y], layout="onnx")`` keeps the primal graph and
  appends one seed input ``adj_<y>`` shaped ``shape(y) ++ [nadj]`` and one output
  ``adj_<x>`` shaped ``shape(x) ++ [nadj]`` (a trailing seed axis). The prefix changes to
  ``adj2_`` if the model already carries ``adj_`` names, so the names are read back from
  the result rather than assumed.
* Rules live in ``onnx_ad.rules.REVERSE`` (op type -> rule). Ops in
  ``onnx_ad.lower.LOWERINGS`` and RNN/GRU/LSTM (``onnx_ad.recurrent.RECURRENT``) are
  rewritten into ruled primitives first, and an op the ONNX spec defines by a function
  body is expanded into that body, so those are differentiable too.
* Reverse mode needs declared (static) shapes for Conv/pooling inputs.
* It raises ``onnx_ad.UnsupportedOperator`` with the message
  ``"no reverse rule for <Op> (node '<name>'); ..."`` -- but only for a node that lies
  between the differentiated input and a seeded output.
"""

from __future__ import annotations

from dataclasses import dataclass

import onnx
import onnx_ad
import onnx_ad.control  # registers the If/Scan/Loop rules
from onnx import defs
from onnx_ad.lower import LOWERINGS
from onnx_ad.recurrent import RECURRENT
from onnx_ad.rules import REVERSE

UnsupportedOperator: type[Exception] = onnx_ad.UnsupportedOperator


@dataclass(frozen=True)
class ReverseResult:
    model: onnx.ModelProto
    seed: str       # the seed input: shape(output) ++ [nadj]
    gradient: str   # the derivative output: shape(wrt) ++ [nadj]


def reverse(model: onnx.ModelProto, *, wrt: str, output: str) -> ReverseResult:
    """The adjoint model of `model`, differentiating `output` with respect to input `wrt`."""
    before_inputs = {v.name for v in model.graph.input}
    before_outputs = {v.name for v in model.graph.output}
    result = onnx_ad.reverse(model, inputs=[wrt], outputs=[output], layout="onnx")
    if not isinstance(result, onnx.ModelProto):  # pragma: no cover - defensive
        raise TypeError(f"onnx_ad.reverse returned {type(result)!r}")
    seeds = [v.name for v in result.graph.input if v.name not in before_inputs]
    grads = [v.name for v in result.graph.output if v.name not in before_outputs]
    if len(seeds) != 1 or len(grads) != 1:  # pragma: no cover - defensive
        raise RuntimeError(f"unexpected onnx-ad signature: seeds={seeds} grads={grads}")
    return ReverseResult(result, seeds[0], grads[0])


def _has_function_body(op_type: str, opset: int) -> bool:
    try:
        schema = defs.get_schema(op_type, opset, "")
    except Exception:
        return False
    return bool(
        getattr(schema, "has_function", False)
        or getattr(schema, "has_context_dependent_function", False)
    )


def has_reverse_rule(op_type: str, domain: str = "", opset: int = 18) -> bool:
    """Whether onnx-ad can propagate an adjoint through `op_type` (possibly after it
    lowers or expands it into ruled primitives)."""
    if domain not in ("", "ai.onnx"):
        return False
    if op_type in REVERSE or op_type in LOWERINGS or op_type in RECURRENT:
        return True
    return _has_function_body(op_type, opset)
