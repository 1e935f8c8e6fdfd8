"""Time-series results as plain structures: the series (C, T) and its attribution
((C, T) per channel, or (T,) for every channel alike) as numpy arrays, with channel names."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray


@dataclass(frozen=True)
class SeriesAttribution:
    """``values[..., t]`` is step t's weight; ``series`` the input explained (C, T)."""

    series: NDArray[np.float32]
    values: NDArray[np.float32]
    axes: list[str]
    channel_names: list[str]

    def as_dict(self) -> dict[str, Any]:
        return {"series": self.series, "values": self.values, "axes": self.axes,
                "channel_names": self.channel_names}

    def per_step(self) -> NDArray[np.float32]:
        """One weight per time step (T,): the largest |weight| over channels, signed."""
        v = self.values if self.values.ndim == 2 else self.values[None, :]
        idx = np.argmax(np.abs(v), axis=0)
        out: NDArray[np.float32] = v[idx, np.arange(v.shape[1])].astype(np.float32)
        return out

    def peak(self) -> int:
        """The time step of the largest |weight|."""
        return int(np.argmax(np.abs(self.per_step())))


def series_input(
    values: Sequence[float] | Sequence[Sequence[float]] | NDArray[Any],
) -> dict[str, Any]:
    """The ``input`` body of a series explanation: channels × time (or one flat channel)."""
    arr = np.asarray(values, np.float64)
    if arr.ndim not in (1, 2):
        raise ValueError("a series is (time,) or (channels, time)")
    return {"modality": "time_series", "values": arr.tolist()}


def series_attribution_of(plot: dict[str, Any], attribution: dict[str, Any]) -> SeriesAttribution:
    """From the ``plot`` artifact's JSON (series, channel names) and the ``attribution``'s."""
    series = np.asarray(plot["data"]["series"], np.float32)
    values = np.asarray(attribution["data"]["values"], np.float32)
    names = list(plot.get("meta", {}).get("channel_names") or [])
    return SeriesAttribution(series, values, list(attribution.get("axes") or []), names)
