"""Text models: a string in, class scores out.

(The text issue fills this in: string tensor or token ids, vocabulary, word splitting.)"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api_schemas.modalities.base import ManifestBase


class TextManifest(ManifestBase):
    modality: Literal["text"]
    input: Literal["string", "token_ids"] = "string"
    word_pattern: str = Field(
        default=r"\w+", max_length=200, description="The words an explanation weighs (a regex)."
    )


class TextInputBody(BaseModel):
    model_config = ConfigDict(extra="forbid")

    modality: Literal["text"]
    text: str
