"""Occlusion along time (Zeiler & Fergus, 2014, on series): a window of ``window`` steps
slides with ``stride``; each position is replaced by the baseline series (in every channel,
or in one channel at a time with ``per_channel``) and the drop of the target's score,
f(x) − f(x with the window hidden), is credited to every step it covers. A step's
attribution is the mean drop over the windows covering it (Captum's ``Occlusion``). A last
window flush with the end is added when the stride skips it, so every step is covered.
All windows go to ONNX Runtime in batches."""

from __future__ import annotations

from typing import Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import Result
from engine.errors import InvalidParams
from engine.methods.base import MethodSpec, Progress
from engine.methods.registry import register
from engine.methods.time_series.common import MODALITY, batched_scores, codec_of, series_result
from engine.modalities.time_series import SeriesInput, TimeSeriesCodec
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind, class_index


class SeriesOcclusionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window: int = Field(default=8, ge=1, le=1_000_000, description="Steps hidden at once.")
    stride: int = Field(default=2, ge=1, le=1_000_000, description="Steps between windows.")
    baseline: Literal["zero", "mean", "blur", "linear"] = Field(
        default="mean",
        description="What hidden steps become: zeros, the channel's mean, a moving average, "
        "or the channel's straight line from first to last value.",
    )
    blur_radius: float = Field(default=5.0, gt=0, le=10_000)
    per_channel: bool = Field(
        default=False,
        description="Hide one channel at a time: a (channel, time) map (C× the passes).",
    )
    score: ScoreKind = "logit"
    batch_size: int = Field(default=64, ge=1, le=1024, description="Windows per ORT call.")


def positions(length: int, window: int, stride: int) -> list[int]:
    """Window starts: 0, stride, ... while the window fits, then ``length − window``."""
    out = list(range(0, length - window + 1, stride))
    if out and out[-1] != length - window:
        out.append(length - window)
    return out


def _length(model: LoadedModel) -> int:
    return int(codec_of(model).manifest.length)


def check(params: SeriesOcclusionParams, model: LoadedModel) -> None:
    if not isinstance(model.codec, TimeSeriesCodec):
        return  # another modality's model: check_method refuses it first
    length = _length(model)
    if params.window > length:
        raise InvalidParams(
            f"window ({params.window}) is longer than the series ({length} steps).",
            details={"window": params.window, "length": length},
        )


def cost(params: SeriesOcclusionParams, model: LoadedModel) -> int:
    if not isinstance(model.codec, TimeSeriesCodec):
        return 1
    length = _length(model)
    n = len(positions(length, min(params.window, length), params.stride))
    channels = codec_of(model).manifest.channels if params.per_channel else 1
    return 1 + n * channels


def occlusion(
    model: LoadedModel,
    item: SeriesInput,
    objective: Objective,
    params: SeriesOcclusionParams,
    progress: Progress,
) -> Result:
    class_index(objective)
    codec = codec_of(model)
    c, t = item.values.shape
    if params.window > t:
        raise InvalidParams(
            f"window ({params.window}) is longer than the series ({t} steps).",
            details={"window": params.window, "length": t},
        )
    starts = positions(t, params.window, params.stride)
    x0 = codec.item_input(item)
    xb = codec.to_model_input(codec.baseline(item, params.baseline, params.blur_radius)[None])
    f_x = float(objective.value(model.run(x0))[0])
    rows = list(range(c)) if params.per_channel else [None]
    masks: NDArray[np.bool_] = np.ones(
        (len(rows) * len(starts), *((c, t) if params.per_channel else (t,))), np.bool_
    )
    k = 0
    for ch in rows:
        for s in starts:
            if ch is None:
                masks[k, s : s + params.window] = False
            else:
                masks[k, ch, s : s + params.window] = False
            k += 1
    scores = batched_scores(model, objective, x0, xb, masks, params.batch_size)
    drops = f_x - scores
    hidden = ~masks
    total = np.tensordot(drops, hidden.astype(np.float64), axes=(0, 0))
    count = hidden.sum(axis=0)
    attr = np.where(count > 0, total / np.maximum(count, 1), 0.0).astype(np.float32)
    progress(1.0)
    return series_result(
        model,
        item,
        attr,
        extras={
            "windows": len(starts),
            "window": params.window,
            "stride": params.stride,
            "f_x": f_x,
            "max_drop": float(drops.max()) if drops.size else 0.0,
        },
        model_calls=1 + len(masks),
    )


SPEC = register(
    MethodSpec(
        name="occlusion",
        params_model=SeriesOcclusionParams,
        fn=occlusion,
        description="Occlusion along time: windows of steps replaced by a baseline; a step's "
        "attribution is the mean score drop of the windows covering it.",
        kind="perturbation",
        execution="job",
        modalities=MODALITY,
        check=check,
        cost=cost,
    )
)
