from __future__ import annotations

import numpy as np
import pytest

from engine.errors import InvalidTarget, UnknownLabel
from engine.targets import canonical_target, resolve_target

LABELS = ["cat", "dog", "crane", "crane"]


def test_index_label_and_top1() -> None:
    logits = np.array([0.1, 3.0, -1.0, 0.0], np.float32)
    assert resolve_target(2, LABELS, logits) == 2
    assert resolve_target("2", LABELS, logits) == 2
    assert resolve_target("dog", LABELS, logits) == 1
    assert resolve_target("crane", LABELS, logits) == 2  # duplicate labels: the first
    assert resolve_target("top1", LABELS, logits) == 1
    assert resolve_target("TOP1", LABELS, logits) == 1


@pytest.mark.parametrize("bad", [4, -1, "7", True])
def test_out_of_range(bad: int | str) -> None:
    with pytest.raises(InvalidTarget):
        canonical_target(bad, LABELS)


def test_unknown_label() -> None:
    with pytest.raises(UnknownLabel, match="no label 'zebra'"):
        canonical_target("zebra", LABELS)


def test_canonical_form() -> None:
    assert canonical_target("dog", LABELS) == 1
    assert canonical_target(" 3", LABELS) == 3
    assert canonical_target("Top1", LABELS) == "top1"
