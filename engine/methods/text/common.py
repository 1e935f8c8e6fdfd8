"""What the text methods share: scoring texts with some words removed, and the answer's
artifacts.

A sample is a keep-mask over the item's features (its distinct words); the text with the
other words deleted (every occurrence, :meth:`engine.modalities.text.TextInput.keep`) is
run through the model and the objective scores it. The answer is an
:class:`~engine.artifacts.AttributionMap` over the words (axes ``("word",)``,
``feature_names`` the words, one value per word) and a ``words`` table with every
occurrence's character span.
"""

from __future__ import annotations

from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import Artifact, AttributionMap, Table
from engine.methods.base import Progress
from engine.modalities.text import TextCodec, TextInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind

#: Texts per ONNX Runtime call by default (a TF-IDF pipeline's cost is per text).
DEFAULT_BATCH = 256


class TextParams(BaseModel):
    """Parameters every text method takes."""

    model_config = ConfigDict(extra="forbid")

    score: ScoreKind = Field(
        default="logit",
        description="Explain the logit or the probability (a model whose output already is "
        "probabilities: both read it as it is).",
    )
    top_k: int = Field(default=5, ge=1, le=1000, description="Words in top_positive/negative.")
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description=f"Texts per ONNX Runtime call (default {DEFAULT_BATCH}).",
    )


def text_item(item: Any) -> TextInput:
    if not isinstance(item, TextInput):
        raise TypeError(f"a text method got {type(item).__name__}, not a TextInput")
    return item


def run_texts(model: LoadedModel, texts: list[str], batch: int | None) -> NDArray[np.float32]:
    """The explained output for each text (N, classes)."""
    codec = model.codec
    if not isinstance(codec, TextCodec):
        raise TypeError(f"model {model.name!r} is not a text model")
    return model.run(codec.to_model_input(texts), batch or DEFAULT_BATCH)


class Scorer:
    """Scores keep-masks of one item, counting the model calls, reporting progress."""

    def __init__(
        self,
        model: LoadedModel,
        item: TextInput,
        objective: Objective,
        batch: int | None,
        progress: Progress,
    ) -> None:
        self.model = model
        self.item = item
        self.objective = objective
        self.batch = batch or DEFAULT_BATCH
        self.progress = progress
        self.calls = 0
        self.output: NDArray[np.float32] | None = None

    def reference(self) -> tuple[float, float]:
        """f(x) and f(no words); keeps the output on x (the runner's target score)."""
        m = self.item.n_features
        out = run_texts(self.model, [self.item.text, self.item.keep(np.zeros(m, bool))], self.batch)
        self.calls += 2
        self.output = out[:1]
        values = self.objective.value(out)
        return float(values[0]), float(values[1])

    def scores(self, masks: NDArray[Any], first_is_item: bool = False) -> NDArray[np.float64]:
        """The objective on each masked text, in chunks (progress after each);
        ``first_is_item``: mask 0 keeps every word, so its output is the item's."""
        n = masks.shape[0]
        out = np.empty(n, np.float64)
        for start in range(0, n, self.batch):
            stop = min(start + self.batch, n)
            texts = [self.item.keep(masks[i]) for i in range(start, stop)]
            raw = run_texts(self.model, texts, self.batch)
            if start == 0 and first_is_item:
                self.output = raw[:1]
            out[start:stop] = self.objective.value(raw)
            self.calls += stop - start
            self.progress(stop / max(n, 1))
        return out


def top_words(values: NDArray[np.float64], k: int) -> tuple[list[int], list[int]]:
    """Feature indices of the k largest positive and k most negative values."""
    order = np.argsort(-values, kind="stable")
    pos = [int(i) for i in order if values[i] > 0][:k]
    neg = [int(i) for i in order[::-1] if values[i] < 0][:k]
    return pos, neg


def word_artifacts(item: TextInput, values: NDArray[np.float64]) -> list[Artifact]:
    """The attribution over words and the table of their occurrences (spans)."""
    rows: list[list[Any]] = [
        [int(j), item.text[s:e], int(s), int(e), float(values[j])]
        for (s, e), j in zip(item.spans, item.occurrence_feature, strict=True)
    ]
    return [
        AttributionMap("attribution", np.asarray(values, np.float32), ("word",), list(item.words)),
        Table("words", ["feature", "word", "start", "end", "weight"], rows),
    ]


def word_extras(
    item: TextInput, values: NDArray[np.float64], top_k: int, **more: Any
) -> dict[str, Any]:
    pos, neg = top_words(values, top_k)
    return {
        "words": list(item.words),
        "weights": [float(v) for v in values],
        "spans": [[list(s) for s in spans] for spans in item.feature_spans()],
        "text": item.text,
        "n_words": item.n_features,
        "top_positive": [item.words[i] for i in pos],
        "top_negative": [item.words[i] for i in neg],
        **more,
    }
