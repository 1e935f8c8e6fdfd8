"""The optimisation pipeline: `OptimizeOptions` names the passes, `optimize` runs them."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, fields, replace

import onnx

from .._graph import infer
from .cleanup import fold_constants, prune_dead
from .conv_masks import conv_clip_masks
from .conv_transpose import rewrite_conv_transpose
from .masks import simplify_masks
from .reshapes import simplify_reshapes, sink_reshapes

Pass = Callable[[onnx.ModelProto], onnx.ModelProto]


@dataclass(frozen=True)
class OptimizeOptions:
    """Which passes `optimize` runs; they always run in this order:

    prune_dead, fold_constants, simplify_reshapes, simplify_masks, rewrite_conv_transpose,
    simplify_reshapes (again), sink_reshapes, conv_clip_masks, prune_dead (again).

    The default runs them all, with the default variants (every result equal to the raw
    onnx-ad graph to 1e-5). Two fields pick a variant of a pass rather than a pass:
    `zero_insertion` (strided depthwise ConvTransposes too, in `rewrite_conv_transpose`)
    and `mask_from_output` (opt-in Clip masks from the Clip's output in `simplify_masks`,
    not equal to the raw graph where a pre-activation is exactly on a bound).
    """

    prune_dead: bool = True
    fold_constants: bool = True
    simplify_reshapes: bool = True
    simplify_masks: bool = True
    mask_from_output: bool = False
    rewrite_conv_transpose: bool = True
    zero_insertion: bool = True
    sink_reshapes: bool = True
    conv_clip_masks: bool = True

    @classmethod
    def only(cls, *passes: str) -> OptimizeOptions:
        """Options running just the named passes (variants keep their defaults)."""
        names = {f.name for f in fields(cls)} - set(_VARIANTS)
        unknown = set(passes) - names
        if unknown:
            raise ValueError(f"unknown passes {sorted(unknown)}; passes are {sorted(names)}")
        return replace(cls(), **{name: name in passes for name in names})

    def passes(self) -> tuple[Pass, ...]:
        """The passes these options run, in order."""
        steps: list[Pass] = []
        if self.prune_dead:
            steps.append(prune_dead)
        if self.fold_constants:
            steps.append(fold_constants)
        if self.simplify_reshapes:
            steps.append(simplify_reshapes)
        if self.simplify_masks:
            from_output = self.mask_from_output
            steps.append(lambda model: simplify_masks(model, from_output=from_output))
        if self.rewrite_conv_transpose:
            zero_insertion = self.zero_insertion
            steps.append(lambda model: rewrite_conv_transpose(
                model, zero_insertion=zero_insertion))
        if self.simplify_reshapes:
            steps.append(simplify_reshapes)
        if self.sink_reshapes:
            steps.append(sink_reshapes)
        if self.conv_clip_masks:
            steps.append(conv_clip_masks)
        if self.prune_dead:
            steps.append(prune_dead)
        return tuple(steps)


#: Fields of `OptimizeOptions` that pick a variant of a pass, not a pass.
_VARIANTS = ("mask_from_output", "zero_insertion")

#: What `optimize` runs by default (and the builder at level "full").
DEFAULT_OPTIONS = OptimizeOptions()


def optimize(model: onnx.ModelProto, options: OptimizeOptions | None = None
             ) -> onnx.ModelProto:
    """Run the passes `options` names (default `DEFAULT_OPTIONS`: all); a new model."""
    for step in (options or DEFAULT_OPTIONS).passes():
        model = step(model)
    return infer(model)
