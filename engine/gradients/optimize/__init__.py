"""Optimisation passes over a VJP graph emitted by onnx-ad.

onnx-ad favours generality: it emits the adjoint of every operand it can (Clip bounds, fc
weights, BatchNorm scales -- nothing reads them here), carries a trailing seed axis through
every tensor and folds it into the batch around each convolution, and writes masks as
``Where(mask, g, 0)``. With one seed direction and static shapes most of that is waste.

`optimize(model, options)` runs the passes an `OptimizeOptions` names (default: all), each
keeping results equal to the raw graph (tests check 1e-5). One module per concept:

* `rewriter`: the core the rewrites share (`Rewriter`, `rewrite`: a node rule to a fixed
  point).
* `cleanup`: `prune_dead` (every node no graph output reaches, unread initializers) and
  `fold_constants` (whatever depends on initializers only).
* `reshapes`: `simplify_reshapes` and `sink_reshapes`, which undo the seed axis.
* `masks`: `simplify_masks` (``Where(m, g, 0)`` as ``Mul(g, Cast(m))``, Clip masks as
  ``Equal(x, Clip(x))``).
* `conv_masks`: `conv_clip_masks`, exact ReLU6 masks as depthwise 1x1 Convs in ORT's
  NCHWc layout.
* `conv_transpose`: `rewrite_conv_transpose`, ConvTranspose as Conv (stride 1, and strided
  depthwise ones by zero insertion).
* `pipeline`: `OptimizeOptions` and `optimize`.
"""

from .cleanup import FOLD_MAX_ELEMENTS, fold_constants, prune_dead
from .conv_masks import conv_clip_masks, conv_mask_constants
from .conv_transpose import rewrite_conv_transpose
from .masks import simplify_masks
from .pipeline import DEFAULT_OPTIONS, OptimizeOptions, Pass, optimize
from .reshapes import simplify_reshapes, sink_reshapes

__all__ = [
    "DEFAULT_OPTIONS",
    "FOLD_MAX_ELEMENTS",
    "OptimizeOptions",
    "Pass",
    "conv_clip_masks",
    "conv_mask_constants",
    "fold_constants",
    "optimize",
    "prune_dead",
    "rewrite_conv_transpose",
    "simplify_masks",
    "simplify_reshapes",
    "sink_reshapes",
]
