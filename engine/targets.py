"""Targets: a class index, a label, or "top1"."""

from __future__ import annotations

import numpy as np
from numpy.typing import NDArray

from engine.errors import InvalidTarget, UnknownLabel


def canonical_target(target: int | str, labels: list[str]) -> int | str:
    """The target as a class index, or "top1"; refuses one that can never resolve.

    Called before a job is queued, so that the same request spelled differently
    (a label or its index) is the same job.
    """
    if isinstance(target, str) and target.strip().lower() == "top1":
        return "top1"
    return resolve_target(target, labels, None)


def resolve_target(target: int | str, labels: list[str], logits: NDArray[np.float32] | None) -> int:
    """The class index of a target; ``logits`` (classes,) is needed only for "top1"."""
    n = len(labels)
    if isinstance(target, bool):
        raise InvalidTarget('The target must be a class index, a label or "top1".')
    if isinstance(target, str):
        t = target.strip()
        if t.lower() == "top1":
            return int(np.argmax(logits)) if logits is not None else 0
        if t.lstrip("-").isdigit():
            target = int(t)
        else:
            try:
                return labels.index(t)
            except ValueError:
                raise UnknownLabel(
                    f'The model has no label {t!r}. Give a class index, "top1", or one '
                    "of the labels listed by GET /v1/models/{model}.",
                    details={"target": t},
                ) from None
    if not 0 <= target < n:
        raise InvalidTarget(
            f"Class index {target} is out of range: this model has classes 0..{n - 1}.",
            details={"target": target, "classes": n},
        )
    return target
