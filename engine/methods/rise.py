"""RISE: randomized input sampling for explanation (Petsiuk, Das & Saenko, BMVC 2018).

Mask ``i`` (a function of ``(seed, i)`` only): an ``s×s`` binary grid whose cells are kept
with probability ``p``, upsampled bilinearly to ``(s+1)·cell`` pixels per side (``cell =
ceil(H/s)``, resp. ``W``), cropped to ``H×W`` at a random shift in ``[0, cell)`` per axis.
The image is blended with the hide image through the mask, and

    saliency = Σᵢ score(maskᵢ ⊙ x) · maskᵢ / (N · p).

``num_masks: "auto"`` samples in rounds (:mod:`engine.methods.convergence`) until the
saliency's Pearson correlation with the converged map reaches ``agreement`` at 90 %
confidence, or ``max_samples`` masks are used. The estimate comes from ``AUTO_GROUPS``
groups of masks (mask ``i`` in group ``i % 8``): their spread gives the map's expected
noise and how many independent pixels that noise has, and so how far one run's noise may
stray from its expectation (:func:`engine.methods.convergence.group_estimate`; RISE's
smooth masks leave few, ~30 on a 7×7 grid: a rule on the expected agreement of two halves
overstated it on 5 of the 6 bundled photos and stopped short of 0.95 on 3). "auto" also
uses a control variate: the masks' scores less their mean, plus the mean (same
expectation, since every pixel's mask has mean ``p``; much less noise, as the noisy term
``s̄ · Σ mask`` is gone), so its map is RISE's up to sampling noise, not the same numbers
as a fixed count. Rounds grow one plan (:meth:`RiseBuilder.refine`), so a split job runs
one group of chunks per round.

Masks are rendered per forward batch as ``A_y(shift_y) · G · A_x(shift_x)ᵀ`` (small
matrices, one product per mask). The assembly never materialises all
masks: for masks sharing a vertical shift, Σ score·(A_y G A_xᵀ) = A_y (Σ score·G A_xᵀ).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace
from functools import lru_cache
from typing import Annotated, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import AttributionMap, Result
from engine.errors import InvalidParams
from engine.methods.base import MethodSpec, Progress, no_progress
from engine.methods.convergence import (
    DEFAULT_AGREEMENT,
    Auto,
    Rounds,
    group_estimate,
    pooled,
    report,
)
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

#: "auto": the first round and the cap.
AUTO_MIN = 128
AUTO_CAP = 8000
#: How "auto" draws its masks: "iid" (as a fixed count does) or "sobol" (randomised QMC).
AUTO_SAMPLER = "iid"
#: "auto": the groups of masks (mask ``i`` in group ``i % AUTO_GROUPS``) whose spread
#: estimates the map's noise (:func:`engine.methods.convergence.group_estimate`).
AUTO_GROUPS = 8


class RiseParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    num_masks: Annotated[int, Field(ge=1, le=100_000)] | Auto = Field(
        default=2000,
        description='Random masks (N), or "auto": masks in rounds until the split-half '
        "agreement reaches `agreement` (at most `max_samples`).",
    )
    agreement: float = Field(
        default=DEFAULT_AGREEMENT,
        gt=0,
        lt=1,
        description='With num_masks "auto": stop when the saliency\'s Pearson correlation '
        "with the converged map reaches this with 90 % confidence (estimated from the spread "
        "of 8 groups of masks).",
    )
    max_samples: int = Field(
        default=AUTO_CAP,
        ge=2 * AUTO_GROUPS,
        le=100_000,
        description=f'With "auto": the most masks used (at least {2 * AUTO_GROUPS}).',
    )
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
    #: "auto" only (0 = a fixed count): the agreement threshold, the cap, the first round,
    #: rounds so far, the expected final count and the sampler.
    agreement: float = 0.0
    max_samples: int = 0
    min_samples: int = 0
    rounds: int = 1
    expected: int = 0
    sampler: str = "iid"

    @property
    def auto(self) -> bool:
        return self.agreement > 0

    def schedule(self) -> Rounds:
        return Rounds(self.agreement, self.min_samples, self.max_samples)


def rise_codes(plan: RisePlan, start: int, stop: int) -> NDArray[np.int32]:
    """(n, s·s + 2): the grid's kept cells (0/1) then the (y, x) shift, from (seed, i)."""
    s2 = plan.grid_size * plan.grid_size
    if plan.sampler == "sobol":
        return rise_sobol_codes(plan, start, stop)
    out = np.empty((stop - start, s2 + 2), dtype=np.int32)
    for r, i in enumerate(range(start, stop)):
        rng = sample_rng(plan.seed, i)
        out[r, :s2] = rng.random(s2) < plan.p
        out[r, s2] = rng.integers(0, plan.cell_y)
        out[r, s2 + 1] = rng.integers(0, plan.cell_x)
    return out


def rise_sobol_codes(plan: RisePlan, start: int, stop: int) -> NDArray[np.int32]:
    """Randomised-QMC masks: mask i is point i // 2 of the scrambled Sobol' stream i % 2
    in ``s·s + 2`` dimensions (a cell is kept where its coordinate < p; the shifts are the
    last two coordinates, scaled to ``[0, cell)``)."""
    from engine.methods.convergence import sobol_points

    s2 = plan.grid_size * plan.grid_size
    out = np.empty((stop - start, s2 + 2), dtype=np.int32)
    for stream in (0, 1):
        idx = np.arange(start, stop)
        idx = idx[idx % 2 == stream]
        if idx.size == 0:
            continue
        pts = sobol_points(s2 + 2, plan.seed, stream, int(idx[0]) // 2, int(idx[-1]) // 2 + 1)
        rows = idx - start
        out[rows, :s2] = pts[:, :s2] < plan.p
        out[rows, s2] = np.minimum((pts[:, s2] * plan.cell_y).astype(np.int32), plan.cell_y - 1)
        out[rows, s2 + 1] = np.minimum(
            (pts[:, s2 + 1] * plan.cell_x).astype(np.int32), plan.cell_x - 1
        )
    return out


def saliency_sums(
    plan: RisePlan,
    scores: NDArray[np.float64],
    groups: int = 1,
    centre: bool = False,
    start: int = 0,
) -> list[NDArray[np.float64]]:
    """Σ score · mask over the masks of each group, for masks ``start .. start + len(scores)``
    (mask ``i`` in group ``(i − start) % groups``; 1: all); ``centre``: each group's scores
    less their mean (see :func:`group_maps`)."""
    n = len(scores)
    if centre:
        scores = scores.copy()
        for g in range(groups):
            if scores[g::groups].size:
                scores[g::groups] -= scores[g::groups].mean()
    s, h, w = plan.grid_size, plan.height, plan.width
    ay = interpolation(s, plan.cell_y, h)
    ax = interpolation(s, plan.cell_x, w)
    # per vertical shift: U[sy] = Σ score · (G @ A_x(sx)ᵀ)  (s × W)
    u = np.zeros((groups, plan.cell_y, s, w), dtype=np.float64)
    step = 1024
    for a in range(0, n, step):
        b = min(n, a + step)
        codes = rise_codes(plan, start + a, start + b)
        grids = codes[:, : s * s].reshape(-1, s, s).astype(np.float64)
        for r in range(b - a):
            sy, sx = int(codes[r, s * s]), int(codes[r, s * s + 1])
            u[(a + r) % groups, sy] += scores[a + r] * (grids[r] @ ax[sx].T)
    out = []
    for g in range(groups):
        sal = np.zeros((h, w), dtype=np.float64)
        for k in range(plan.cell_y):
            sal += ay[k] @ u[g, k]
        out.append(sal)
    return out


def group_maps(
    plan: RisePlan, scores: NDArray[np.float64], groups: int = 2, start: int = 0
) -> tuple[list[NDArray[np.float64]], list[int]]:
    """The saliency of each group of masks (mask ``i`` in group ``i % groups``) and the
    groups' sizes, each with a control variate: its scores less their mean ``s̄``, plus
    ``s̄`` (``E[mask] = p`` at every pixel, so the expectation is RISE's; the term
    ``s̄ · Σ mask`` — most of a raw sum's noise — is gone)."""
    sums = saliency_sums(plan, scores, groups, centre=True, start=start)
    maps, sizes = [], []
    for g in range(groups):
        sel = scores[g::groups]
        maps.append(sums[g] / (max(len(sel), 1) * plan.p) + (sel.mean() if len(sel) else 0.0))
        sizes.append(len(sel))
    return maps, sizes


class RiseBuilder(PerturbationMethod[RiseParams, RisePlan]):
    name = "rise"
    needs_baseline_score = False

    def build_plan(
        self, model: LoadedModel, image: ImageInput, objective: Objective, params: RiseParams
    ) -> RisePlan:
        _check(params, model)
        h, w, s = image.height, image.width, params.grid_size
        cy, cx = math.ceil(h / s), math.ceil(w / s)
        if params.num_masks != "auto":
            return RisePlan(h, w, s, params.p, cy, cx, params.num_masks, params.seed)
        cap = params.max_samples
        rounds = Rounds(params.agreement, min(cap, AUTO_MIN), cap)
        return RisePlan(
            h, w, s, params.p, cy, cx, rounds.first(), params.seed, params.agreement, cap,
            rounds.minimum, 1, cap, AUTO_SAMPLER,
        )

    def expected_samples(self, plan: RisePlan) -> int:
        return max(plan.n_samples, plan.expected) if plan.auto else plan.n_samples

    def refine(
        self,
        model: LoadedModel,
        image: ImageInput,
        objective: Objective,
        params: RiseParams,
        plan: RisePlan,
        scores: NDArray[np.float64],
        refs: References,
    ) -> RisePlan | None:
        if not plan.auto:
            return None
        maps, sizes = group_maps(plan, scores, AUTO_GROUPS)
        nxt = plan.schedule().next_size(plan.n_samples, group_estimate(maps, sizes).lower)
        if nxt is None:
            return None
        return replace(plan, n_samples=nxt, rounds=plan.rounds + 1, expected=nxt)

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
        progress: Progress = no_progress,
    ) -> Result:
        if scores.shape != (plan.n_samples,):
            raise ValueError(f"{scores.shape[0]} scores for a plan of {plan.n_samples} samples")
        s = plan.grid_size
        auto: dict[str, Any] = {}
        if plan.auto:
            maps, sizes = group_maps(plan, scores, AUTO_GROUPS)
            sal = pooled(maps, sizes)
            est = group_estimate(maps, sizes)
            auto = report(
                plan.schedule(), plan.n_samples, plan.rounds, est,
                {"sampler": plan.sampler, "control_variate": True},
            )
        else:
            (sal,) = saliency_sums(plan, scores, 1)
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
                **auto,
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
    """Forward passes; "auto" is costed at its cap (it may need all of them)."""
    n = params.max_samples if params.num_masks == "auto" else params.num_masks
    return n + 1


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
