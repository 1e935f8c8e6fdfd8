"""Time-series models: channels × time steps in, class scores out.

A series reaches Lantern as channels × time steps (one list for a single channel): a JSON
array in the request's ``input`` (``{"modality": "time_series", "values": [...]}``), or an
``.npy`` file uploaded as multipart ``file`` (float or integer, shape ``(T,)`` or
``(C, T)``). The manifest says how the graph takes it:

* ``channels``: C, the input's channel count;
* ``length``: T — the exact length when ``length_mode`` is ``"fixed"`` (the default), or
  the longest accepted when ``"max"`` (the graph then has a dynamic time axis and series of
  ``min_length``..``length`` steps are fed as they are);
* ``layout``: ``"NCT"`` (batch, channels, time: PyTorch's Conv1d) or ``"NTC"`` (batch,
  time, channels: Keras' Conv1D). Whatever the layout, Lantern's maps are (channel, time).
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, Strict, model_validator

from api_schemas.modalities.base import ManifestBase

#: A number on the wire: an int or a float, never a string or a boolean.
SeriesNumber = Annotated[float, Strict()]


class TimeSeriesManifest(ManifestBase):
    """How to feed a series model: channel count, length, layout."""

    modality: Literal["time_series"]
    channels: int = Field(default=1, ge=1, le=4096, description="Channels (C) of the input.")
    length: int = Field(
        ge=2,
        le=1_000_000,
        description="Time steps (T) the model takes: exactly, or at most when length_mode "
        'is "max".',
    )
    length_mode: Literal["fixed", "max"] = Field(
        default="fixed",
        description='"fixed": every series has `length` steps; "max": between `min_length` '
        "and `length` (the graph's time axis is dynamic).",
    )
    min_length: int = Field(
        default=2, ge=1, le=1_000_000, description='The shortest series accepted ("max" mode).'
    )
    layout: Literal["NCT", "NTC"] = Field(
        default="NCT",
        description="The graph's input layout: (batch, channels, time) or (batch, time, channels).",
    )
    channel_names: list[str] | None = Field(
        default=None, description="A name per channel (plots and JSON); default ch0, ch1, ..."
    )

    @model_validator(mode="after")
    def _consistent(self) -> TimeSeriesManifest:
        if self.min_length > self.length:
            raise ValueError("min_length must not exceed length")
        if self.channel_names is not None and len(self.channel_names) != self.channels:
            raise ValueError("channel_names must name every channel, one name per channel")
        return self

    def names(self) -> list[str]:
        """The channels' names (``channel_names``, or ch0, ch1, ...)."""
        return list(self.channel_names or [f"ch{i}" for i in range(self.channels)])


class TimeSeriesInputBody(BaseModel):
    """A series: channels × time steps as nested lists (one flat list for one channel)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    modality: Literal["time_series"]
    values: list[SeriesNumber] | list[list[SeriesNumber]] = Field(
        description="Channels × time steps (a flat list is one channel), numbers only.",
        examples=[[0.0, 0.5, 1.0, 0.5], [[0.0, 1.0, 0.0], [1.0, 0.0, 1.0]]],
    )
