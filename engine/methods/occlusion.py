"""Occlusion sensitivity (Zeiler & Fergus, 2014), exact or with adaptive drill-down.

A window slides over the image with a stride; each position is replaced by a baseline and
the drop of the target's score is credited to every pixel the window covers. A pixel's
attribution is the mean drop over the windows that cover it (as Captum's ``Occlusion``).
The windows of a forward batch go to ONNX Runtime as one batch.

``mode="drilldown"`` is Krypton's adaptive drill-down (Nakandala, Kumar & Papakonstantinou,
SIGMOD 2019): occlude first at ``coarse_stride``; rank the coarse cells (the square between
a coarse window and its right/lower neighbours) by the spread (max − min) of the drops at
their corners, or by the largest |drop| there (``rank="drop"``), and re-do the top
``fraction`` of them at ``fine_stride``. The fine-stride drops of the cells
not re-done are interpolated bilinearly from the coarse drops, and the map is built from
the fine grid exactly as in exact mode, so ``fraction=1`` gives the exact map.

Both modes follow the plan contract of :mod:`engine.methods.perturbation` (drill-down is two
rounds: the coarse windows, then :meth:`~OcclusionBuilder.refine` appends the fine ones).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.errors import InvalidParams
from engine.methods.base import Attribution, ImageInput, MethodSpec, Progress
from engine.methods.baselines import BaselineName, baseline_pixels
from engine.methods.perturbation import (
    Colour,
    PerturbationMethod,
    References,
    plan_type,
    register_plan,
    run_plan,
)
from engine.methods.registry import register
from engine.methods.scoring import ScoreKind
from engine.models.runtime import LoadedModel

__all__ = ["Colour", "OcclusionParams", "OcclusionPlan", "occlusion", "window_positions"]


class OcclusionParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    window: int = Field(default=16, ge=1, le=4096, description="Window side in pixels.")
    stride: int = Field(default=8, ge=1, le=4096, description="Step between windows in pixels.")
    baseline: BaselineName | Colour = Field(
        default="zero",
        description='What hides a window: "zero" (black), "mean" colour, "blur", or [r, g, b].',
    )
    blur_radius: float = Field(default=10.0, gt=0, le=100, description="Gaussian radius for blur.")
    score: ScoreKind = Field(default="logit", description="Measure the logit or the probability.")
    batch_size: int = Field(default=16, ge=1, le=256, description="Windows per ONNX Runtime call.")
    mode: Literal["exact", "drilldown"] = Field(
        default="exact",
        description='"exact": every window at `stride`; "drilldown": coarse pass, then the '
        "top `fraction` of regions again at the fine stride (Krypton).",
    )
    coarse_stride: int | None = Field(
        default=None,
        ge=1,
        le=4096,
        description="Drill-down's first-pass stride; a multiple of the fine stride "
        "(default: twice the fine stride).",
    )
    fine_stride: int | None = Field(
        default=None, ge=1, le=4096, description="Drill-down's fine stride (default: `stride`)."
    )
    fraction: float = Field(
        default=0.25,
        gt=0,
        le=1,
        description="Drill-down: the top fraction of coarse regions re-done at the fine stride.",
    )
    rank: Literal["spread", "drop"] = Field(
        default="spread",
        description='Drill-down: which regions are "top": "spread" = largest max − min of the '
        "coarse drops at the region's corners (where interpolation is least reliable), "
        '"drop" = largest |drop| at a corner (the most important regions).',
    )


def window_positions(size: int, window: int, stride: int) -> list[int]:
    return list(range(0, size - window + 1, stride))


def _strides(params: OcclusionParams) -> tuple[int, int]:
    fine = params.fine_stride if params.fine_stride is not None else params.stride
    coarse = params.coarse_stride if params.coarse_stride is not None else 2 * fine
    return coarse, fine


def _check(params: OcclusionParams, model: LoadedModel) -> None:
    h, w = model.input_hw
    if params.window > min(h, w):
        raise InvalidParams(
            f"window {params.window} is larger than the model's input ({h}×{w}). "
            f"Use a window of at most {min(h, w)} pixels.",
            details={"window": params.window, "input_size": [h, w]},
        )
    if params.mode == "drilldown":
        coarse, fine = _strides(params)
        if coarse % fine != 0:
            raise InvalidParams(
                f"coarse_stride {coarse} is not a multiple of fine_stride {fine}. "
                "Use a coarse stride that is a multiple of the fine one.",
                details={"coarse_stride": coarse, "fine_stride": fine},
            )


@plan_type
@dataclass(frozen=True, eq=False)
class OcclusionPlan:
    """Window positions (n, 2) as (y, x), in evaluation order.

    Exact mode: the positions at ``stride``. Drill-down: the fine grid is
    ``ys`` × ``xs`` (positions at the fine stride); round 0 holds the ``n_coarse`` coarse
    windows, round 1 appends the re-done fine windows.
    """

    height: int
    width: int
    window: int
    positions: NDArray[np.int32]
    mode: Literal["exact", "drilldown"] = "exact"
    ys: tuple[int, ...] = ()
    xs: tuple[int, ...] = ()
    coarse_step: int = 1  # the coarse stride in fine-grid steps
    n_coarse: int = 0
    fraction: float = 1.0
    rank: Literal["spread", "drop"] = "spread"
    refined: bool = False

    @property
    def n_samples(self) -> int:
        return int(self.positions.shape[0])


def _grid(ys: list[int], xs: list[int]) -> NDArray[np.int32]:
    yy, xx = np.meshgrid(np.asarray(ys), np.asarray(xs), indexing="ij")
    return np.stack([yy.ravel(), xx.ravel()], axis=1).astype(np.int32).reshape(-1, 2)


def _interp_matrix(n_fine: int, step: int) -> NDArray[np.float64]:
    """(n_fine, n_coarse) linear interpolation from coarse nodes (every ``step``-th fine
    index) to all fine indices; beyond the last node the last value is held."""
    n_coarse = (n_fine - 1) // step + 1
    m = np.zeros((n_fine, n_coarse), dtype=np.float64)
    for i in range(n_fine):
        t = min(i / step, float(n_coarse - 1))
        a = math.floor(t)
        b = min(a + 1, n_coarse - 1)
        wb = t - a
        m[i, a] += 1.0 - wb
        m[i, b] += wb
    return m


class OcclusionBuilder(PerturbationMethod[OcclusionParams, OcclusionPlan]):
    name = "occlusion"
    needs_baseline_score = False

    def build_plan(
        self, model: LoadedModel, image: ImageInput, target: int, params: OcclusionParams
    ) -> OcclusionPlan:
        _check(params, model)
        h, w, k = image.height, image.width, params.window
        if params.mode == "exact":
            ys = window_positions(h, k, params.stride)
            xs = window_positions(w, k, params.stride)
            return OcclusionPlan(h, w, k, _grid(ys, xs))
        coarse, fine = _strides(params)
        ys = window_positions(h, k, fine)
        xs = window_positions(w, k, fine)
        step = coarse // fine
        positions = _grid(ys[::step], xs[::step])
        return OcclusionPlan(
            h,
            w,
            k,
            positions,
            mode="drilldown",
            ys=tuple(ys),
            xs=tuple(xs),
            coarse_step=step,
            n_coarse=int(positions.shape[0]),
            fraction=params.fraction,
            rank=params.rank,
        )

    def expected_samples(self, plan: OcclusionPlan) -> int:
        if plan.mode == "exact" or plan.refined:
            return plan.n_samples
        # a re-done cell has up to step² − 1 new windows (an estimate, for progress only)
        cells = math.ceil(plan.fraction * plan.n_coarse)
        return plan.n_samples + cells * (plan.coarse_step**2 - 1)

    def sample_codes(self, plan: OcclusionPlan, start: int, stop: int) -> NDArray[Any]:
        return plan.positions[start:stop]

    def render_masks(self, plan: OcclusionPlan, codes: NDArray[Any]) -> NDArray[Any]:
        k = plan.window
        masks = np.ones((codes.shape[0], plan.height, plan.width), dtype=np.bool_)
        for i, (y, x) in enumerate(codes):
            masks[i, y : y + k, x : x + k] = False
        return masks

    def hide_pixels(
        self, image: ImageInput, params: OcclusionParams, plan: OcclusionPlan
    ) -> NDArray[np.float32]:
        return baseline_pixels(image.pixels, params.baseline, params.blur_radius)

    def _coarse_grid(self, plan: OcclusionPlan, drops: NDArray[np.float64]) -> NDArray[np.float64]:
        ac = len(plan.ys[:: plan.coarse_step])
        bc = len(plan.xs[:: plan.coarse_step])
        return drops[: plan.n_coarse].reshape(ac, bc)

    def refine(
        self,
        model: LoadedModel,
        image: ImageInput,
        target: int,
        params: OcclusionParams,
        plan: OcclusionPlan,
        scores: NDArray[np.float64],
        refs: References,
    ) -> OcclusionPlan | None:
        if plan.mode == "exact" or plan.refined:
            return None
        s = plan.coarse_step
        coarse = self._coarse_grid(plan, scores)
        drops = refs.f_x - coarse
        ac, bc = coarse.shape
        a, b = len(plan.ys), len(plan.xs)
        # cell (i, j): fine indices with index // s == (i, j); its corners are coarse
        # nodes (i, j), (i+1, j), (i, j+1), (i+1, j+1) (clamped at the last node)
        i1 = np.minimum(np.arange(ac) + 1, ac - 1)
        j1 = np.minimum(np.arange(bc) + 1, bc - 1)
        corners = np.stack([drops, drops[i1, :], drops[:, j1], drops[i1][:, j1]])
        if plan.rank == "drop":
            corner = np.abs(corners).max(axis=0)
        else:
            corner = corners.max(axis=0) - corners.min(axis=0)
        n_cells = ac * bc
        n_pick = min(n_cells, max(1, math.ceil(params.fraction * n_cells - 1e-9)))
        order = np.argsort(-corner.ravel(), kind="stable")[:n_pick]
        picked = np.zeros((ac, bc), dtype=np.bool_)
        picked.ravel()[order] = True
        fy = np.arange(a) // s
        fx = np.arange(b) // s
        in_picked = picked[fy[:, None], fx[None, :]]
        on_coarse = (np.arange(a) % s == 0)[:, None] & (np.arange(b) % s == 0)[None, :]
        new_y, new_x = np.nonzero(in_picked & ~on_coarse)
        ys = np.asarray(plan.ys, dtype=np.int32)
        xs = np.asarray(plan.xs, dtype=np.int32)
        fine = np.stack([ys[new_y], xs[new_x]], axis=1).astype(np.int32).reshape(-1, 2)
        return OcclusionPlan(
            plan.height,
            plan.width,
            plan.window,
            np.concatenate([plan.positions, fine]),
            mode="drilldown",
            ys=plan.ys,
            xs=plan.xs,
            coarse_step=s,
            n_coarse=plan.n_coarse,
            fraction=plan.fraction,
            rank=plan.rank,
            refined=True,
        )

    def assemble(
        self,
        model: LoadedModel,
        image: ImageInput,
        target: int,
        params: OcclusionParams,
        plan: OcclusionPlan,
        scores: NDArray[np.float64],
        refs: References,
        forward_passes: int | None = None,
    ) -> Attribution:
        if scores.shape != (plan.n_samples,):
            raise ValueError(f"{scores.shape[0]} scores for a plan of {plan.n_samples} samples")
        f0 = refs.f_x
        drops = f0 - scores
        calls = forward_passes if forward_passes is not None else 1 + plan.n_samples
        if plan.mode == "exact":
            values = _accumulate(plan.height, plan.width, plan.window, plan.positions, drops)
            return Attribution(
                values=values,
                model_calls=calls,
                extras={"windows": plan.n_samples, "target_score": f0},
            )
        a, b = len(plan.ys), len(plan.xs)
        s = plan.coarse_step
        grid = _interp_matrix(a, s) @ self._coarse_grid(plan, drops) @ _interp_matrix(b, s).T
        index_y = {y: i for i, y in enumerate(plan.ys)}
        index_x = {x: j for j, x in enumerate(plan.xs)}
        for (y, x), d in zip(plan.positions, drops, strict=True):
            grid[index_y[int(y)], index_x[int(x)]] = d
        fine_grid = _grid(list(plan.ys), list(plan.xs))
        values = _accumulate(plan.height, plan.width, plan.window, fine_grid, grid.ravel())
        exact_passes = 1 + a * b
        return Attribution(
            values=values,
            model_calls=calls,
            extras={
                "windows": plan.n_samples,
                "windows_coarse": plan.n_coarse,
                "windows_fine": plan.n_samples - plan.n_coarse,
                "windows_exact": a * b,
                "forward_passes_saved": exact_passes - calls,
                "target_score": f0,
            },
        )


def _accumulate(
    h: int, w: int, k: int, positions: NDArray[np.int32], drops: NDArray[np.float64]
) -> NDArray[np.float32]:
    total = np.zeros((h, w), dtype=np.float64)
    count = np.zeros((h, w), dtype=np.float64)
    for (y, x), d in zip(positions, drops, strict=True):
        total[y : y + k, x : x + k] += d
        count[y : y + k, x : x + k] += 1.0
    values = np.divide(total, count, out=np.zeros_like(total), where=count > 0)
    return values.astype(np.float32)


OCCLUSION = OcclusionBuilder()
register_plan(OCCLUSION)


def occlusion(
    model: LoadedModel,
    image: ImageInput,
    target: int,
    params: OcclusionParams,
    progress: Progress,
) -> Attribution:
    return run_plan(OCCLUSION, model, image, target, params, progress)


def cost(params: OcclusionParams, model: LoadedModel) -> int:
    """Windows plus the reference pass (drill-down: the coarse grid plus its re-done cells)."""
    h, w = model.input_hw
    if params.mode == "exact":
        ny = len(window_positions(h, params.window, params.stride))
        nx = len(window_positions(w, params.window, params.stride))
        return 1 + ny * nx
    coarse, fine = _strides(params)
    step = max(1, coarse // fine)
    ny = len(window_positions(h, params.window, fine)[::step])
    nx = len(window_positions(w, params.window, fine)[::step])
    return 1 + ny * nx + math.ceil(params.fraction * ny * nx) * (step * step - 1)


SPEC = register(
    MethodSpec(
        name="occlusion",
        params_model=OcclusionParams,
        fn=occlusion,
        description="Occlusion sensitivity: the score drop when a sliding window is hidden "
        "(exact, or Krypton's adaptive drill-down).",
        kind="perturbation",
        execution="job",
        check=_check,
        cost=cost,
    )
)
