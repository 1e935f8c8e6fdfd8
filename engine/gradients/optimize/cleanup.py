"""The graph clean-up passes: dead nodes and initializers, constant folding."""

from __future__ import annotations

import onnx

from .._fold import fold_constants as _fold_constants
from .._graph import prune


def prune_dead(model: onnx.ModelProto) -> onnx.ModelProto:
    """Dead-node and dead-initializer removal."""
    return prune(model)


def fold_constants(model: onnx.ModelProto) -> onnx.ModelProto:
    """Fold every node whose operands are all constants (small results only)."""
    # Weight-sized results stay nodes: ORT folds them at session creation anyway, and
    # storing them would double the size of the cached model file.
    return prune(_fold_constants(model, max_elements=FOLD_MAX_ELEMENTS, rounds=4))


#: Largest folded result `fold_constants` stores as an initializer.
FOLD_MAX_ELEMENTS = 1 << 16
