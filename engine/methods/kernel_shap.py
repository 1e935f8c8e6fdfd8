"""KernelSHAP (Lundberg & Lee, 2017) over superpixels, as the ``shap`` package's KernelExplainer.

The players are superpixels (:mod:`engine.methods.segments`); a coalition keeps its
superpixels and paints the others with the hide colour (the background). The plan draws
the coalitions once, from ``seed``, like ``KernelExplainer``: coalition sizes are
enumerated completely, smallest (and their complements) first, while the budget covers
them at their Shapley-kernel weight; the rest of the budget is sampled by size and
deduplicated, repeated draws adding weight. With 2^M − 2 ≤ ``num_samples`` every coalition
is enumerated and the values are exact.

The weighted regression is constrained as in ``shap``: the last player is eliminated so
that Σφ = f(x) − f(background) holds exactly, where f(x) and f(background) (the empty and
full coalitions) are the reference scores.

``num_samples: "auto"`` samples in rounds (:mod:`engine.methods.convergence`) until the
split-half agreement of the map reaches ``agreement`` at 90 % confidence (the noise's
dimensions taken from the superpixels' areas) or ``max_samples`` coalitions are
used. Its coalitions are paired (a coalition and its complement) and drawn by leverage score
(Musco & Witter, "Provably Accurate Shapley Value Estimation via Leverage Score Sampling",
2024): pair ``k`` (from ``default_rng([seed, k])``) has a size drawn uniformly from 1..M − 1
-- the leverage scores of the Shapley regression are equal across sizes -- and then uniform
players; each coalition is weighted by the kernel over that proposal, ``(M−1)/(s(M−s))``
(equal within a pair). Against pairs drawn from the kernel's own size distribution with
weight 1 (as ``shap`` draws), it reached Pearson 0.95 with a 10,000-coalition map on all
six bundled photos (five before), with fewer passes on four (bench/RESULTS.md). The halves
are the even and the odd pairs, each solved on its own. With 2^M − 2 coalitions no more
than the first round, "auto" enumerates them all (exact). Rounds grow one plan
(:meth:`KernelShapBuilder.refine`), so a split job runs one group of chunks per round;
repeated coalitions are scored once per round.

``values`` spreads each superpixel's φ evenly over its pixels, so the map, too, sums to
f(x) − f(background). ``extras["segments"]`` holds φ per superpixel and ``sum_check`` the
difference Σφ − (f(x) − f(background)); ``arrays["segment_map"]`` is the label image.
"""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass, replace
from typing import Annotated, Any

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field

from engine.artifacts import AttributionMap, Result, Segments
from engine.methods.base import MethodSpec, Progress, no_progress
from engine.methods.convergence import (
    DEFAULT_AGREEMENT,
    Auto,
    GroupEstimate,
    Rounds,
    area_dims,
    pearson,
    report,
    split_half_estimate,
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
from engine.methods.segments import SegmentationParams, SlicParams, segment
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Objective, ScoreKind
from engine.render.segments import top_segments

#: "auto": the first round (at least; or 2 (M + 1) coalitions, if more) and the cap.
AUTO_MIN = 64
AUTO_CAP = 4000


class KernelShapParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segmentation: SegmentationParams = Field(
        default_factory=SlicParams,
        description='Superpixels (the players): {"algorithm": "slic" | "quickshift" | '
        '"felzenszwalb" | "grid", ...that algorithm\'s parameters}.',
    )
    num_samples: Annotated[int, Field(ge=1, le=100_000)] | Auto = Field(
        default=1000,
        description="Coalitions evaluated (besides the empty and the full one); capped at "
        '2^M − 2. Or "auto": paired coalitions in rounds until the split-half agreement '
        "reaches `agreement` (at most `max_samples`).",
    )
    agreement: float = Field(
        default=DEFAULT_AGREEMENT,
        gt=0,
        lt=1,
        description='With num_samples "auto": stop when the map\'s Pearson correlation with '
        "the converged map reaches this at 90 % confidence (split-half, Spearman–Brown).",
    )
    max_samples: int = Field(
        default=AUTO_CAP, ge=2, le=100_000, description='With "auto": the most coalitions.'
    )
    hide: HideColour = Field(
        default="mean",
        description='The background: "mean" image colour, "zero" (black), "blur", '
        '"segment_mean" (each superpixel its own mean colour), or [r, g, b].',
    )
    blur_radius: float = Field(default=10.0, gt=0, le=100, description="Gaussian radius for blur.")
    top_k: int = Field(default=5, ge=1, le=1000, description="Segments in top_positive/negative.")
    score: ScoreKind = Field(default="logit", description="Explain the logit or the probability.")
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Coalitions per ONNX Runtime call; default: the model's measured best batch.",
    )
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed of the coalitions.")


@plan_type
@dataclass(frozen=True, eq=False)
class KernelShapPlan:
    segments: NDArray[np.int32]  # (H, W) labels 0..M-1
    n_features: int
    coalitions: NDArray[np.uint8]  # (n, M), 1 = kept; never all 0 or all 1
    weights: NDArray[np.float64]  # (n,) Shapley-kernel weights
    #: "auto" only (0 = a fixed count): the seed of the pairs, the agreement threshold, the
    #: cap, the first round, rounds so far and the expected final count.
    seed: int = 0
    agreement: float = 0.0
    max_samples: int = 0
    min_samples: int = 0
    rounds: int = 1
    expected: int = 0

    @property
    def n_samples(self) -> int:
        return int(self.coalitions.shape[0])

    @property
    def auto(self) -> bool:
        return self.agreement > 0

    def schedule(self) -> Rounds:
        return Rounds(self.agreement, self.min_samples, self.max_samples, unit=2)


def paired_coalitions(m: int, seed: int, start: int, stop: int) -> NDArray[np.uint8]:
    """Pairs ``start..stop`` (2 rows each: a coalition, then its complement). Pair ``k``'s
    size is drawn uniformly from 1..m − 1 with ``default_rng([seed, k])`` (leverage-score
    sampling), then its players (a random permutation's first ``size``); `paired_weights`
    gives their regression weights."""
    out = np.zeros((2 * (stop - start), m), dtype=np.uint8)
    for r, k in enumerate(range(start, stop)):
        rng = sample_rng(seed, k)
        size = int(rng.integers(1, m))
        out[2 * r, rng.permutation(m)[:size]] = 1
        out[2 * r + 1] = 1 - out[2 * r]
    return out


def paired_weights(z: NDArray[np.uint8]) -> NDArray[np.float64]:
    """Regression weights of `paired_coalitions`' rows: the Shapley kernel of a coalition of
    size s, ``(M − 1) / (C(M, s) s (M − s))``, over its chance under the uniform-size
    proposal, ``1 / ((M − 1) C(M, s))``: ``(M − 1)² / (s (M − s))``, here up to the common
    factor (M − 1)."""
    m = z.shape[1]
    s = z.sum(axis=1, dtype=np.float64)
    w: NDArray[np.float64] = (m - 1.0) / (s * (m - s))
    return w


def sample_coalitions(
    m: int, num_samples: int, seed: int
) -> tuple[NDArray[np.uint8], NDArray[np.float64]]:
    """Coalitions and kernel weights, following ``shap.KernelExplainer.explain``."""
    if m < 2:
        return np.zeros((0, m), dtype=np.uint8), np.zeros(0, dtype=np.float64)
    nsamples = num_samples if m > 30 else min(num_samples, 2**m - 2)
    rng = np.random.default_rng(seed)
    rows: list[NDArray[np.uint8]] = []
    weights: list[float] = []

    num_subset_sizes = math.ceil((m - 1) / 2.0)
    num_paired = math.floor((m - 1) / 2.0)
    weight_vector = np.array([(m - 1.0) / (i * (m - i)) for i in range(1, num_subset_sizes + 1)])
    weight_vector[:num_paired] *= 2
    weight_vector /= weight_vector.sum()

    num_full_subsets = 0
    num_samples_left = nsamples
    remaining = weight_vector.copy()
    for size in range(1, num_subset_sizes + 1):
        nsubsets = math.comb(m, size)
        if size <= num_paired:
            nsubsets *= 2
        if num_samples_left * remaining[size - 1] / nsubsets < 1.0 - 1e-8:
            break
        num_full_subsets += 1
        num_samples_left -= nsubsets
        if remaining[size - 1] < 1.0:
            remaining /= 1 - remaining[size - 1]
        w = weight_vector[size - 1] / math.comb(m, size)
        if size <= num_paired:
            w /= 2.0
        inds = np.asarray(list(itertools.combinations(range(m), size)), np.int64)
        masks = np.zeros((len(inds), m), np.uint8)
        masks[np.arange(len(inds))[:, None], inds] = 1
        if size <= num_paired:  # each subset, then its complement
            masks = np.stack([masks, 1 - masks], axis=1).reshape(-1, m)
        rows.extend(masks)
        weights.extend([w] * len(masks))
    n_fixed = len(rows)
    samples_left = nsamples - n_fixed
    if num_full_subsets != num_subset_sizes and samples_left > 0:
        rw = weight_vector.copy()
        rw[:num_paired] /= 2  # two samples are drawn for each paired size
        rw = rw[num_full_subsets:]
        rw /= rw.sum()
        draws = rng.choice(len(rw), 4 * samples_left, p=rw)
        sizes = draws.astype(np.int64) + num_full_subsets + 1
        used: dict[bytes, int] = {}
        # the draws' random subsets: rng.permutation(m)[:size] for each draw in turn, made
        # in blocks (rng.permuted shuffles row after row: the same stream)
        block_masks = np.zeros((0, m), np.uint8)
        keys: list[bytes] = []
        pos = 0
        while samples_left > 0 and pos < len(draws):
            if pos == len(keys):
                stop = min(len(draws), pos + samples_left // 2 + 16)
                perms = rng.permuted(np.tile(np.arange(m), (stop - pos, 1)), axis=1)
                block = np.zeros((stop - pos, m), np.uint8)
                keep = np.arange(m)[None, :] < sizes[pos:stop, None]
                block[np.arange(stop - pos)[:, None], perms] = keep
                block_masks = np.concatenate([block_masks, block])
                keys.extend(r.tobytes() for r in block)
            size = int(sizes[pos])
            mask = block_masks[pos]
            key = keys[pos]
            pos += 1
            new = key not in used
            if new:
                used[key] = len(rows)
                samples_left -= 1
                rows.append(mask)
                weights.append(1.0)
            else:
                weights[used[key]] += 1.0
            if samples_left > 0 and size <= num_paired:
                if new:
                    samples_left -= 1
                    rows.append(1 - mask)
                    weights.append(1.0)
                else:
                    weights[used[key] + 1] += 1.0
        weight_left = float(weight_vector[num_full_subsets:].sum())
        tail = np.asarray(weights[n_fixed:], dtype=np.float64)
        if tail.size:
            tail *= weight_left / tail.sum()
            weights[n_fixed:] = tail.tolist()
    return np.asarray(rows, dtype=np.uint8).reshape(-1, m), np.asarray(weights, dtype=np.float64)


def solve_shapley(
    z: NDArray[np.uint8],
    w: NDArray[np.float64],
    y: NDArray[np.float64],
    f_x: float,
    f_base: float,
) -> NDArray[np.float64]:
    """φ from the constrained weighted regression (Σφ = f_x − f_base exactly)."""
    m = z.shape[1]
    total = f_x - f_base
    if m == 1:
        return np.array([total])
    if z.shape[0] == 0:
        return np.full(m, total / m)
    zf = z.astype(np.float64)
    y_adj = y - f_base - zf[:, -1] * total
    etmp = zf[:, :-1] - zf[:, -1:]
    wx = etmp * w[:, None]
    a = etmp.T @ wx
    rhs = wx.T @ y_adj
    try:
        head = np.linalg.solve(a, rhs)
    except np.linalg.LinAlgError:
        head = np.linalg.lstsq(a, rhs, rcond=None)[0]
    phi = np.empty(m, dtype=np.float64)
    phi[:-1] = head
    phi[-1] = total - head.sum()
    return phi


class KernelShapBuilder(PerturbationMethod[KernelShapParams, KernelShapPlan]):
    name = "kernel_shap"
    needs_baseline_score = True

    def build_plan(
        self, model: LoadedModel, image: ImageInput, objective: Objective, params: KernelShapParams
    ) -> KernelShapPlan:
        segments = segment(image.pixels, params.segmentation)
        m = int(segments.max()) + 1
        if params.num_samples != "auto":
            coalitions, weights = sample_coalitions(m, params.num_samples, params.seed)
            return KernelShapPlan(segments, m, coalitions, weights)
        cap = params.max_samples
        rounds = Rounds(params.agreement, min(cap, max(AUTO_MIN, 2 * (m + 1))), cap, unit=2)
        first = rounds.first()
        if m < 2 or (m <= 30 and 2**m - 2 <= first):  # every coalition: exact, one round
            coalitions, weights = sample_coalitions(m, 2**m - 2 if m >= 2 else 0, params.seed)
            return KernelShapPlan(segments, m, coalitions, weights)
        coalitions = paired_coalitions(m, params.seed, 0, first // 2)
        return KernelShapPlan(
            segments, m, coalitions, paired_weights(coalitions), params.seed,
            params.agreement, cap, rounds.minimum, 1, cap,
        )

    def expected_samples(self, plan: KernelShapPlan) -> int:
        return max(plan.n_samples, plan.expected) if plan.auto else plan.n_samples

    def refine(
        self,
        model: LoadedModel,
        image: ImageInput,
        objective: Objective,
        params: KernelShapParams,
        plan: KernelShapPlan,
        scores: NDArray[np.float64],
        refs: References,
    ) -> KernelShapPlan | None:
        if not plan.auto:
            return None
        est = split_half_estimate(self.split_half(plan, scores, refs), area_dims(plan.segments))
        n = plan.n_samples
        nxt = plan.schedule().next_size(n, est.lower)
        if nxt is None:
            return None
        more = paired_coalitions(plan.n_features, plan.seed, n // 2, nxt // 2)
        return replace(
            plan,
            coalitions=np.concatenate([plan.coalitions, more]),
            weights=np.concatenate([plan.weights, paired_weights(more)]),
            rounds=plan.rounds + 1,
            expected=nxt,
        )

    def split_half(
        self, plan: KernelShapPlan, scores: NDArray[np.float64], refs: References
    ) -> float:
        """Pearson of the maps solved on the two halves (even / odd pairs)."""
        assert refs.f_baseline is not None
        half = (np.arange(plan.n_samples) // 2) % 2
        area = np.maximum(
            np.bincount(plan.segments.ravel(), minlength=plan.n_features), 1
        ).astype(np.float64)
        maps = []
        for h in (0, 1):
            sel = half == h
            phi = solve_shapley(
                plan.coalitions[sel], plan.weights[sel], scores[sel], refs.f_x, refs.f_baseline
            )
            maps.append((phi / area)[plan.segments])
        return pearson(maps[0], maps[1])

    def sample_codes(self, plan: KernelShapPlan, start: int, stop: int) -> NDArray[Any]:
        return plan.coalitions[start:stop]

    def render_masks(self, plan: KernelShapPlan, codes: NDArray[Any]) -> NDArray[Any]:
        keep: NDArray[np.bool_] = codes.astype(np.bool_)[:, plan.segments]
        return keep

    def hide_pixels(
        self, image: ImageInput, params: KernelShapParams, plan: KernelShapPlan
    ) -> NDArray[np.float32]:
        return hide_image(image, params.hide, params.blur_radius, plan.segments)

    def assemble(
        self,
        model: LoadedModel,
        image: ImageInput,
        objective: Objective,
        params: KernelShapParams,
        plan: KernelShapPlan,
        scores: NDArray[np.float64],
        refs: References,
        forward_passes: int | None = None,
        progress: Progress = no_progress,
    ) -> Result:
        if scores.shape != (plan.n_samples,):
            raise ValueError(f"{scores.shape[0]} scores for a plan of {plan.n_samples} samples")
        if refs.f_baseline is None:
            raise ValueError("KernelSHAP needs the background's score")
        f_x, f_b = refs.f_x, refs.f_baseline
        phi = solve_shapley(plan.coalitions, plan.weights, scores, f_x, f_b)
        area = np.bincount(plan.segments.ravel(), minlength=plan.n_features).astype(np.float64)
        values = (phi / np.maximum(area, 1.0))[plan.segments].astype(np.float32)
        pos, neg = top_segments(phi, params.top_k)
        calls = forward_passes if forward_passes is not None else refs.forward_passes + len(scores)
        auto: dict[str, Any] = {}
        if plan.auto:
            est = split_half_estimate(self.split_half(plan, scores, refs), area_dims(plan.segments))
            auto = report(plan.schedule(), plan.n_samples, plan.rounds, est)
        elif params.num_samples == "auto":  # every coalition enumerated: exact
            rounds = Rounds(params.agreement, plan.n_samples, params.max_samples, unit=2)
            exact = GroupEstimate(1.0, 1.0, area_dims(plan.segments), 2, 1.0)
            auto = report(rounds, plan.n_samples, 1, exact)
        return Result(
            [
                AttributionMap("attribution", values),
                Segments("segments", plan.segments, np.asarray(phi, np.float64), pos, neg),
            ],
            views={"overlay": "segments"},
            model_calls=calls,
            extras={
                "segments": [float(v) for v in phi],
                "n_segments": plan.n_features,
                "top_positive": pos,
                "top_negative": neg,
                "f_x": f_x,
                "f_baseline": f_b,
                "sum_check": float(phi.sum() - (f_x - f_b)),
                "num_samples": plan.n_samples,
                "exact": not plan.auto
                and plan.n_features <= 30
                and plan.n_samples == 2**plan.n_features - 2,
                "target_score": f_x,
                **auto,
            },
        )


KERNEL_SHAP = KernelShapBuilder()


def kernel_shap(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: KernelShapParams,
    progress: Progress,
) -> Result:
    return run_plan(KERNEL_SHAP, model, image, objective, params, progress)


def cost(params: KernelShapParams, model: LoadedModel) -> int:
    """Forward passes; "auto" is costed at its cap (it may need all of them)."""
    n = params.max_samples if params.num_samples == "auto" else params.num_samples
    return n + 2


SPEC = register(
    MethodSpec(
        name="kernel_shap",
        params_model=KernelShapParams,
        fn=kernel_shap,
        description="KernelSHAP: Shapley values of superpixels by weighted regression.",
        kind="perturbation",
        execution="job",
        plan=KERNEL_SHAP,
        cost=cost,
    )
)
