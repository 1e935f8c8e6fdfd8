"""RISE: randomized input sampling for explanation (Petsiuk, Das & Saenko, BMVC 2018).

Mask ``i`` (a function of ``(seed, i)`` only): an ``s×s`` binary grid whose cells are kept
with probability ``p``, upsampled bilinearly to ``(s+1)·cell`` pixels per side (``cell =
ceil(H/s)``, resp. ``W``), cropped to ``H×W`` at a random shift in ``[0, cell)`` per axis.
The image is blended with the hide image through the mask, and

    saliency = Σᵢ score(maskᵢ ⊙ x) · maskᵢ / (N · p).

Masks are rendered per forward batch as ``A_y(shift_y) · G · A_x(shift_x)ᵀ`` (small
matrices, one product per mask). The assembly never materialises all
masks: for masks sharing a vertical shift, Σ score·(A_y G A_xᵀ) = A_y (Σ score·G A_xᵀ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import AttributionMap, Result
from engine.errors import InvalidParams
from engine.methods.base import MethodSpec, Progress
from engine.methods.perturbation import (
    HideColour,
    PerturbationMethod,
    References,
    hide_image,
    plan_type,
    run_plan,
    sample_rng,
)
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind


class RiseParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_masks: int = Field(default=2000, ge=1, le=100_000, description="Random masks (N).")
    grid_size: int = Field(default=7, ge=1, le=256, description="Mask grid side s (s×s cells).")
    p: float = Field(default=0.5, gt=0, lt=1, description="Probability that a cell is kept.")
    hide: HideColour = Field(
        default="mean",
        description='Masked pixels blend towards: "mean" image colour, "zero" (black), "blur", '
        "or [r, g, b].",
    )
    blur_radius: float = Field(default=10.0, gt=0, le=100, description="Gaussian radius for blur.")
    score: ScoreKind = Field(default="logit", description="Weigh masks by logit or probability.")
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Masks per ONNX Runtime call; default: the model's measured best batch.",
    )
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed of the masks.")


def _check(params: RiseParams, model: LoadedModel) -> None:
    h, w = model.input_hw
    if params.grid_size > min(h, w):
        raise InvalidParams(
            f"grid_size {params.grid_size} is larger than the model's input ({h}×{w}). "
            f"Use at most {min(h, w)}.",
            details={"grid_size": params.grid_size, "input_size": [h, w]},
        )
    if params.hide == "segment_mean":
        raise InvalidParams(
            'RISE has no segments: use hide "mean", "zero", "blur" or [r, g, b].',
            details={"hide": params.hide},
        )


@lru_cache(maxsize=16)
def interpolation(s: int, cell: int, size: int) -> NDArray[np.float64]:
    """(cell, size, s): for each shift k in [0, cell), the matrix that upsamples ``s`` grid
    cells linearly to ``(s+1)·cell`` pixels and keeps pixels ``k..k+size``.

    Pixel centres at half-pixel positions and mirror ("reflect") edges, as
    ``skimage.transform.resize(order=1, mode="reflect")`` in the authors' code.
    """
    up = (s + 1) * cell
    src = (np.arange(up, dtype=np.float64) + 0.5) * (s / up) - 0.5
    if s > 1:
        src = np.where(src < 0, -src, src)
        src = np.where(src > s - 1, 2 * (s - 1) - src, src)
    src = np.clip(src, 0.0, s - 1.0)
    lo = np.floor(src).astype(np.intp)
    hi = np.minimum(lo + 1, s - 1)
    w_hi = src - lo
    full = np.zeros((up, s), dtype=np.float64)
    np.add.at(full, (np.arange(up), lo), 1.0 - w_hi)
    np.add.at(full, (np.arange(up), hi), w_hi)
    out = np.stack([full[k : k + size] for k in range(cell)])
    out.flags.writeable = False
    return out


@plan_type
@dataclass(frozen=True, eq=False)
class RisePlan:
    height: int
    width: int
    grid_size: int
    p: float
    cell_y: int
    cell_x: int
    n_samples: int
    seed: int


def rise_codes(plan: RisePlan, start: int, stop: int) -> NDArray[np.int32]:
    """(n, s·s + 2): the grid's kept cells (0/1) then the (y, x) shift, from (seed, i)."""
    s2 = plan.grid_size * plan.grid_size
    out = np.empty((stop - start, s2 + 2), dtype=np.int32)
    for r, i in enumerate(range(start, stop)):
        rng = sample_rng(plan.seed, i)
        out[r, :s2] = rng.random(s2) < plan.p
        out[r, s2] = rng.integers(0, plan.cell_y)
        out[r, s2 + 1] = rng.integers(0, plan.cell_x)
    return out


class RiseBuilder(PerturbationMethod[RiseParams, RisePlan]):
    name = "rise"
    needs_baseline_score = False

    def build_plan(
        self, model: LoadedModel, image: ImageInput, objective: Objective, params: RiseParams
    ) -> RisePlan:
        _check(params, model)
        h, w, s = image.height, image.width, params.grid_size
        return RisePlan(
            h, w, s, params.p, math.ceil(h / s), math.ceil(w / s), params.num_masks, params.seed
        )

    def sample_codes(self, plan: RisePlan, start: int, stop: int) -> NDArray[Any]:
        return rise_codes(plan, start, stop)

    def render_masks(self, plan: RisePlan, codes: NDArray[Any]) -> NDArray[Any]:
        s = plan.grid_size
        n = codes.shape[0]
        ay = interpolation(s, plan.cell_y, plan.height).astype(np.float32)
        ax = interpolation(s, plan.cell_x, plan.width).astype(np.float32)
        grids = codes[:, : s * s].reshape(n, s, s).astype(np.float32)
        sy = codes[:, s * s]
        sx = codes[:, s * s + 1]
        masks: NDArray[np.float32] = ay[sy] @ grids @ ax[sx].transpose(0, 2, 1)
        return masks

    def hide_pixels(
        self, image: ImageInput, params: RiseParams, plan: RisePlan
    ) -> NDArray[np.float32]:
        return hide_image(image, params.hide, params.blur_radius)

    def assemble(
        self,
        model: LoadedModel,
        image: ImageInput,
        objective: Objective,
        params: RiseParams,
        plan: RisePlan,
        scores: NDArray[np.float64],
        refs: References,
        forward_passes: int | None = None,
    ) -> Result:
        if scores.shape != (plan.n_samples,):
            raise ValueError(f"{scores.shape[0]} scores for a plan of {plan.n_samples} samples")
        s, h, w = plan.grid_size, plan.height, plan.width
        ay = interpolation(s, plan.cell_y, h)
        ax = interpolation(s, plan.cell_x, w)
        # per vertical shift: U[sy] = Σ score · (G @ A_x(sx)ᵀ)  (s × W)
        u = np.zeros((plan.cell_y, s, w), dtype=np.float64)
        step = 1024
        for a in range(0, plan.n_samples, step):
            b = min(plan.n_samples, a + step)
            codes = rise_codes(plan, a, b)
            grids = codes[:, : s * s].reshape(-1, s, s).astype(np.float64)
            for r in range(b - a):
                sy, sx = int(codes[r, s * s]), int(codes[r, s * s + 1])
                u[sy] += scores[a + r] * (grids[r] @ ax[sx].T)
        sal = np.zeros((h, w), dtype=np.float64)
        for k in range(plan.cell_y):
            sal += ay[k] @ u[k]
        sal /= plan.n_samples * plan.p
        calls = forward_passes if forward_passes is not None else refs.forward_passes + len(scores)
        return Result(
            [AttributionMap("attribution", sal.astype(np.float32))],
            model_calls=calls,
            extras={
                "num_masks": plan.n_samples,
                "grid_size": s,
                "p": plan.p,
                "target_score": refs.f_x,
                "mean_masked_score": float(scores.mean()) if len(scores) else 0.0,
            },
        )


RISE = RiseBuilder()


def rise(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: RiseParams,
    progress: Progress,
) -> Result:
    return run_plan(RISE, model, image, objective, params, progress)


def cost(params: RiseParams, model: LoadedModel) -> int:
    return params.num_masks + 1


SPEC = register(
    MethodSpec(
        name="rise",
        params_model=RiseParams,
        fn=rise,
        description="RISE: saliency as the score-weighted mean of random smooth masks.",
        kind="perturbation",
        execution="job",
        plan=RISE,
        check=_check,
        cost=cost,
    )
)
