"""Text models: a string in, class scores out.

How the text reaches the model (``input``):

* ``"string"``: the graph takes a string tensor ([N, 1] or [N]) — a scikit-learn text
  pipeline converted by skl2onnx (TfidfVectorizer / CountVectorizer + a classifier);
* ``"token_ids"``: the graph takes int64 token ids [N, max_tokens], padded with ``pad_id``;
  Lantern tokenises with ``tokenizer`` (``"whitespace"`` or the ``token_pattern`` regex) and
  maps tokens through ``vocabulary`` (a token's id is its index; unknown tokens get
  ``unk_id``, or are dropped when it is null).

What an explanation weighs is the *words* of the input, found by ``word_pattern`` (a
regex); with ``lowercase`` words differing only in case are one feature. Removing a word
deletes every occurrence of it from the text (a bag of words, as the ``lime`` package).

``scores`` says what the explained output holds: ``"probabilities"`` (rows summing to 1:
skl2onnx's ``output_probability`` with zipmap off) or ``"logits"`` (decision scores:
skl2onnx's ``raw_scores`` option). For probabilities no softmax is taken: both score kinds
(``logit`` and ``probability``) read the output as it is, as for tabular models.
"""

from __future__ import annotations

import re
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from api_schemas.modalities.base import ManifestBase


def _check_pattern(value: str) -> str:
    try:
        compiled = re.compile(value)
    except re.error as e:
        raise ValueError(f"not a valid regular expression: {e}") from None
    if compiled.match(""):
        raise ValueError("the pattern matches the empty string; it must match at least a character")
    return value


class TextManifest(ManifestBase):
    modality: Literal["text"]
    input: Literal["string", "token_ids"] = Field(
        default="string",
        description='"string": the graph takes a string tensor; "token_ids": int64 ids '
        "[N, max_tokens] from the vocabulary.",
    )
    word_pattern: str = Field(
        default=r"\w+", max_length=200, description="The words an explanation weighs (a regex)."
    )
    lowercase: bool = Field(
        default=True,
        description="Words (and, for token ids, tokens) compared case-insensitively.",
    )
    scores: Literal["probabilities", "logits"] = Field(
        default="probabilities",
        description='What the explained output holds. For "probabilities" both score kinds '
        "read it as it is (no softmax).",
    )
    max_chars: int = Field(
        default=10_000, ge=1, le=1_000_000, description="The longest text this model takes."
    )
    vocabulary: list[str] | None = Field(
        default=None,
        max_length=500_000,
        description='For "token_ids": the tokens, a token\'s id being its index.',
    )
    tokenizer: Literal["whitespace", "regex"] = Field(
        default="regex", description='For "token_ids": split on whitespace, or by token_pattern.'
    )
    token_pattern: str = Field(
        default=r"\w+", max_length=200, description='For "token_ids" with tokenizer "regex".'
    )
    max_tokens: int = Field(
        default=256, ge=1, le=100_000, description='For "token_ids": the sequence length.'
    )
    pad_id: int = Field(default=0, ge=0, description='For "token_ids": the padding id.')
    unk_id: int | None = Field(
        default=None, ge=0, description='For "token_ids": the id of unknown tokens (null: drop).'
    )

    @field_validator("word_pattern", "token_pattern")
    @classmethod
    def _pattern(cls, value: str) -> str:
        return _check_pattern(value)

    @model_validator(mode="after")
    def _token_ids(self) -> TextManifest:
        if self.predictor is not None and self.input == "string":
            raise ValueError("a remote predictor takes numeric tensors: a string-input text "
                             "model runs locally (drop `predictor`)")
        if self.input == "token_ids":
            if not self.vocabulary:
                raise ValueError('input "token_ids" needs a vocabulary (the tokens by id)')
            n = len(self.vocabulary)
            for field in ("pad_id", "unk_id"):
                value = getattr(self, field)
                if value is not None and value >= n:
                    raise ValueError(f"{field} {value} is not an id of the {n}-token vocabulary")
        return self


class TextInputBody(BaseModel):
    """One text. Lantern refuses an empty one, one longer than the model's (or the
    service's) limit, and one without a word by the model's word pattern."""

    model_config = ConfigDict(extra="forbid", strict=True)

    modality: Literal["text"]
    text: str = Field(max_length=1_000_000, examples=["a wonderful, moving film"])
