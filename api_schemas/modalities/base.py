"""Fields every manifest has, whatever its modality."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class ManifestBase(BaseModel):
    """A model's name, its class labels and a description. Every number must be finite
    (NaN and ±Infinity, which Python's json.dumps writes, are refused)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=NAME_PATTERN, examples=["my-classifier"])
    labels: list[str] = Field(min_length=1, max_length=100_000)
    description: str = Field(default="", max_length=2000)
