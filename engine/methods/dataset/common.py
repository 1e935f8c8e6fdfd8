"""What the dataset analyses share: the reader check, the chunked extraction as a plan
(so a job is split over workers like a perturbation job: each chunk computes the
activation shards that begin in its range; the assembly reads the cache), and drawing."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import Result
from engine.datasets.activations import ActivationCache, Target
from engine.datasets.store import DatasetReader
from engine.errors import InvalidInput
from engine.methods.base import Progress, ScaledProgress, no_progress
from engine.methods.perturbation import EvalStats, References, plan_type
from engine.models.runtime import LoadedModel
from engine.objectives import Objective


class DatasetParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    batch_size: int | None = Field(default=None, ge=1, le=1024,
                                   description="Unused (the chunk is the batch); kept for "
                                   "the job layer's plan contract.")


def reader_of(item: Any) -> DatasetReader:
    if not isinstance(item, DatasetReader) or item.activations is None:
        raise InvalidInput(
            'A dataset analysis runs over a dataset: name one in the request ("dataset").',
            details={"field": "dataset"},
        )
    return item


def cache_of(reader: DatasetReader) -> ActivationCache:
    assert reader.activations is not None
    return reader.activations


TargetsFn = Callable[[LoadedModel, Objective, Any], Sequence[Target]]
#: (model, reader, objective, params, passes, progress) -> the answer; progress may raise to
#: cancel (the assembly of an embedding fits a map: seconds to minutes)
AssembleFn = Callable[[LoadedModel, DatasetReader, Objective, Any, int, Progress], Result]


@plan_type
@dataclass(frozen=True)
class DatasetPlan:
    n_samples: int  # images


class DatasetPlanBuilder:
    """The plan contract of :mod:`jobs.split` for a dataset analysis: samples are images;
    a chunk [start, stop) fills the cache's shards that begin there (its score array is
    zeros: the answer is read from the cache at assembly)."""

    def __init__(self, name: str, targets: TargetsFn, assemble: AssembleFn) -> None:
        self.name = name
        self.targets = targets
        self.assemble_fn = assemble

    def build_plan(self, model: LoadedModel, image: Any, objective: Objective,
                   params: Any) -> DatasetPlan:
        return DatasetPlan(len(reader_of(image)))

    def references(self, model: LoadedModel, image: Any, objective: Objective, params: Any,
                   plan: DatasetPlan) -> References:
        return References(0.0, None, 0)

    def evaluate(self, model: LoadedModel, image: Any, objective: Objective, params: Any,
                 plan: DatasetPlan, start: int, stop: int, progress: Progress,
                 stats: EvalStats | None = None) -> NDArray[np.float64]:
        reader = reader_of(image)
        passes = cache_of(reader).ensure(model, reader, self.targets(model, objective, params),
                                         start, stop, progress)
        if stats is not None:
            stats.forward_passes += passes
        return np.zeros(stop - start, np.float64)

    def refine(self, model: LoadedModel, image: Any, objective: Objective, params: Any,
               plan: DatasetPlan, scores: NDArray[np.float64], refs: References) -> None:
        return None

    def assemble(self, model: LoadedModel, image: Any, objective: Objective, params: Any,
                 plan: DatasetPlan, scores: NDArray[np.float64], refs: References,
                 forward_passes: int | None = None, progress: Progress = no_progress
                 ) -> Result:
        return self.assemble_fn(model, reader_of(image), objective, params,
                                int(forward_passes or 0), progress)

    def expected_samples(self, plan: DatasetPlan) -> int:
        return plan.n_samples

    def run(self, model: LoadedModel, item: Any, objective: Objective, params: Any,
            progress: Progress) -> Result:
        """The whole analysis in this process (embedded mode, or a job too small to split):
        the same chunks, one after the other."""
        reader = reader_of(item)
        passes = cache_of(reader).ensure(model, reader, self.targets(model, objective, params),
                                         0, None, ScaledProgress(progress, 0.0, 0.95))
        return self.assemble_fn(model, reader, objective, params, passes,
                                ScaledProgress(progress, 0.95, 0.05))


def dataset_cost(params: Any, model: LoadedModel) -> int:
    """At submit the service replaces this by the dataset's image count."""
    return 1


def tile(img: Image.Image, box: tuple[int, int, int, int], size: int) -> NDArray[np.uint8]:
    """The box (y0, x0, y1, x1) of ``img`` scaled to a ``size``-pixel square tile."""
    y0, x0, y1, x1 = box
    crop = img.crop((x0, y0, x1, y1))
    w, h = crop.size
    s = size / max(w, h, 1)
    crop = crop.resize((max(1, round(w * s)), max(1, round(h * s))), Image.Resampling.NEAREST)
    out = np.full((size, size, 3), 255, np.uint8)
    a = np.asarray(crop.convert("RGB"), np.uint8)
    oy, ox = (size - a.shape[0]) // 2, (size - a.shape[1]) // 2
    out[oy : oy + a.shape[0], ox : ox + a.shape[1]] = a
    return out


def grid(tiles: list[NDArray[np.uint8]], columns: int, pad: int = 2) -> NDArray[np.uint8]:
    """Tiles in rows of ``columns`` with a ``pad``-pixel white border."""
    if not tiles:
        return np.full((1, 1, 3), 255, np.uint8)
    size = tiles[0].shape[0]
    cols = min(columns, len(tiles))
    rows = (len(tiles) + cols - 1) // cols
    out = np.full((rows * (size + pad) + pad, cols * (size + pad) + pad, 3), 255, np.uint8)
    for k, t in enumerate(tiles):
        r, c = divmod(k, cols)
        y, x = pad + r * (size + pad), pad + c * (size + pad)
        out[y : y + size, x : x + size] = t
    return out
