"""What a method measures of the model's output for the target class."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray

from engine.models.runtime import softmax

ScoreKind = Literal["logit", "probability"]


def target_scores(logits: NDArray[np.float32], target: int, kind: ScoreKind) -> NDArray[np.float64]:
    """The target's logit or softmax probability for each row of a logits batch."""
    if kind == "probability":
        return softmax(logits)[:, target].astype(np.float64)
    return logits[:, target].astype(np.float64)
