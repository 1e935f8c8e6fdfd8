"""Time-series models: channels × time steps in, class scores out.

(The time-series issue fills this in: layout, length, channels.)"""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from api_schemas.modalities.base import ManifestBase


class TimeSeriesManifest(ManifestBase):
    modality: Literal["time_series"]
    channels: int = Field(default=1, ge=1, le=4096)
    length: int = Field(ge=2, le=1_000_000, description="Time steps the model takes.")
    layout: Literal["NCT", "NTC"] = "NCT"


class TimeSeriesInputBody(BaseModel):
    """A series: channels × time steps as nested lists (one list for one channel)."""

    model_config = ConfigDict(extra="forbid")

    modality: Literal["time_series"]
    values: list[float] | list[list[float]]
