"""Text results as plain structures: the words, their weights (numpy), each word's
character spans in the text, and the highlighted text as HTML."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class WordAttributions:
    """``words[j]``'s weight is ``values[j]``; ``spans[j]`` its (start, end) occurrences in
    ``text`` (a word is every occurrence of it: removing it removed them all)."""

    words: list[str]
    values: NDArray[np.float32]
    spans: list[list[tuple[int, int]]]
    text: str | None

    def as_dict(self) -> dict[str, Any]:
        return {"words": self.words, "values": self.values, "spans": self.spans, "text": self.text}

    def ranked(self) -> list[tuple[str, float]]:
        """(word, weight), largest |weight| first."""
        order = np.argsort(-np.abs(self.values), kind="stable")
        return [(self.words[int(j)], float(self.values[int(j)])) for j in order]


def text_input(text: str) -> dict[str, str]:
    """The ``input`` body of a text explanation."""
    return {"modality": "text", "text": text}


def word_attributions_of(
    attribution: dict[str, Any], words: dict[str, Any] | None
) -> WordAttributions:
    """From the ``attribution`` artifact's JSON and the ``words`` table's (spans)."""
    names = list(attribution.get("meta", {}).get("feature_names") or [])
    values = np.asarray(attribution["data"]["values"], np.float32).reshape(-1)
    spans: list[list[tuple[int, int]]] = [[] for _ in names]
    text: str | None = None
    if words is not None:
        cols = words["data"]["columns"]
        f, s, e = cols.index("feature"), cols.index("start"), cols.index("end")
        for row in words["data"]["rows"]:
            spans[int(row[f])].append((int(row[s]), int(row[e])))
    return WordAttributions(names, values, spans, text)
