"""Occlusion of single words: each word's weight is the drop of the target's score when
every occurrence of it is deleted, f(x) − f(x without the word) (one model call a word)."""

from __future__ import annotations

from typing import Any

import numpy as np

from engine.artifacts import Result
from engine.methods.base import MethodSpec, Progress
from engine.methods.registry import register
from engine.methods.text.common import Scorer, TextParams, text_item, word_artifacts, word_extras
from engine.models.runtime import LoadedModel
from engine.objectives import Objective


class TextOcclusionParams(TextParams):
    pass


def occlusion(
    model: LoadedModel,
    item: Any,
    objective: Objective,
    params: TextOcclusionParams,
    progress: Progress,
) -> Result:
    text = text_item(item)
    m = text.n_features
    scorer = Scorer(model, text, objective, params.batch_size, progress)
    f_x, f_empty = scorer.reference()
    masks = ~np.eye(m, dtype=bool)
    drops = f_x - scorer.scores(masks)
    return Result(
        word_artifacts(text, drops),
        model_calls=scorer.calls,
        output=scorer.output,
        extras=word_extras(
            text, drops, params.top_k, f_x=f_x, f_no_words=f_empty, target_score=f_x
        ),
    )


def cost(params: TextOcclusionParams, model: LoadedModel) -> int:
    """One call per distinct word, at most: before the text is read, the most words a text
    within the model's length limit can hold (a word and a separator each), plus the
    references."""
    max_chars = int(getattr(model.codec, "max_chars", 0) or 0)
    return (max_chars + 1) // 2 + 2


SPEC = register(
    MethodSpec(
        name="occlusion",
        params_model=TextOcclusionParams,
        fn=occlusion,
        description="Occlusion of single words: the score's drop when a word is deleted.",
        kind="perturbation",
        execution="job",
        modalities=("text",),
        cost=cost,
    )
)
