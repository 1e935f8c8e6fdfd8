"""The optimisation loop of feature visualisation, shared by every method that draws units
(`feature_visualisation`, `semantic_dictionary`'s thumbnails, `nmf_groups`' groups).

A unit's image depends only on its objective, its ``key`` (its channel, class or group
index) and the settings — never on the other units of its batch: row i starts from the
spectrum drawn by ``default_rng((seed, 1, key_i))``, the random transforms of every step
come from ``default_rng((seed, 0))`` (one draw per step, the same for every row) and Adam
is element-wise. So channel 7 of a layer optimised alone, or in a batch with 30 others, is
the same image (up to ONNX Runtime's batch-size rounding), which is what lets the
thumbnail cache (:mod:`engine.visualisation.cache`) share one visualisation between
requests. (The diversity term couples the rows; such runs are not cached.)
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from numpy.typing import NDArray

from engine.methods.base import Progress
from engine.models.runtime import LoadedModel
from engine.objectives import Objective
from engine.visualisation.adam import Adam
from engine.visualisation.diversity import diversity
from engine.visualisation.model_io import ModelInput, UnitGradients
from engine.visualisation.param import ImageParam
from engine.visualisation.threads import single_threaded_blas
from engine.visualisation.transforms import resize_only, standard_transforms

#: Bumped whenever the loop changes what it draws (part of every thumbnail cache key).
OPTIMISER_VERSION = "1"


@dataclass(frozen=True)
class Settings:
    """What a unit's image depends on besides its objective (the cache key's params)."""

    size: int = 128
    steps: int = 512
    learning_rate: float = 0.05
    transforms: bool = True
    decorrelate: bool = True
    seed: int = 0
    diversity: float = 0.0

    def key(self) -> dict[str, Any]:
        return {
            "size": self.size,
            "steps": self.steps,
            "learning_rate": self.learning_rate,
            "transforms": self.transforms,
            "decorrelate": self.decorrelate,
            "seed": self.seed,
            "version": OPTIMISER_VERSION,
        }


@dataclass
class Optimised:
    rgb: NDArray[np.float32]  # (n, 3, size, size) in (0, 1)
    values: NDArray[np.float64]  # (n, steps): each unit's objective per step
    passes: int  # images through the network (forward or forward+backward)
    diversities: list[float] = field(default_factory=list)


def optimise(
    model: LoadedModel,
    units: list[Objective],
    keys: list[int],
    settings: Settings,
    progress: Progress,
    preview: Callable[[NDArray[np.float32], int], None] | None = None,
    preview_every: int = 64,
) -> Optimised:
    """Gradient ascent of every unit's objective on its own image, all as one batch per
    step; ``progress`` after every step (it raises Cancelled), ``preview(rgb, step)`` every
    ``preview_every`` steps but the last."""
    n, size, steps = len(units), settings.size, settings.steps
    grads = UnitGradients(model, units)
    to_model = ModelInput(model)
    model_hw = model.input_hw
    image = ImageParam(size, size, decorrelate=settings.decorrelate)
    p = np.concatenate(
        [image.init(np.random.default_rng((settings.seed, 1, int(k))), 1) for k in keys]
    ).astype(np.float32)
    rng = np.random.default_rng((settings.seed, 0))
    adam = Adam(p.shape, settings.learning_rate)
    values = np.zeros((n, steps))
    axis = getattr(units[0], "channel_axis", 1)
    weight = settings.diversity if n > 1 else 0.0
    diversities: list[float] = []

    def penalty(t: NDArray[np.float32]) -> NDArray[np.float32]:
        d, g = diversity(t, axis)
        diversities.append(d)
        out: NDArray[np.float32] = (-weight * g).astype(np.float32)
        return out

    passes = 0
    fixed = resize_only((size, size), model_hw)
    with single_threaded_blas():
        for step in range(steps):
            rgb = image.image(p)
            chain = (
                standard_transforms(rng, (size, size), model_hw) if settings.transforms else fixed
            )
            x = to_model.forward(chain.forward(rgb))
            v, g, used = grads(x, penalty if weight > 0 else None)
            passes += used
            values[:, step] = v
            p = adam.ascend(p, image.backward(chain.adjoint(to_model.adjoint(g))))
            progress((step + 1) / steps)
            if preview is not None and (step + 1) % preview_every == 0 and step + 1 < steps:
                preview(np.asarray(image.image(p), np.float32), step + 1)
    final = np.asarray(image.image(p), np.float32)
    return Optimised(final, values, passes, diversities)
