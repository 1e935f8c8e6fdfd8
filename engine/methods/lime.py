"""LIME for images (Ribeiro, Singh & Guestrin, 2016), on superpixels.

The image is cut into superpixels (:mod:`engine.methods.segments`, SLIC by default).
Sample 0 keeps every superpixel (the image itself, as in the ``lime`` package); sample
``i > 0`` keeps each superpixel with probability 1/2, drawn from ``default_rng([seed, i])``.
Hidden superpixels take the hide colour. Each sample is weighted by the exponential kernel
``sqrt(exp(-d² / width²))`` of its cosine distance ``d`` to the all-kept vector (the
``lime`` package's kernel), and a weighted Ridge regression (scikit-learn) of the target's
score on the on/off vectors gives every superpixel a weight.

``num_samples: "auto"`` samples in rounds (:mod:`engine.methods.convergence`) until the
split-half agreement of the map reaches ``agreement`` at 90 % confidence (the noise's
dimensions taken from the superpixels' areas), or ``max_samples`` samples are used: the two
halves are the odd and the even samples (sample 0 in both), each fitted on its own.
"auto" draws its samples by randomised quasi-Monte Carlo (``AUTO_SAMPLER = "sobol"``,
:func:`lime_sobol_codes`): the odd and the even samples are two independently scrambled
Sobol' streams, each stratifying every superpixel's on/off. On the six bundled photos
(bench/RESULTS.md, "LIME's auto sampler") with seed 0 it reaches Pearson 0.95 with a
10,000-sample map on 6 of 6 photos, the i.i.d. draws of a fixed count on 4 of 6; over 8
seeds, the expected agreement alone stopped short in 2 of 48 runs (once at 64 samples with
r 0.89), the bound in none ("Auto rules that stop on a 90 % bound").
Rounds grow one plan (:meth:`LimeBuilder.refine`), so a split job runs one group of chunks
per round. ``extras`` then reports ``samples_used``, ``rounds``, ``split_half_pearson``,
``agreement``, ``agreement_lower`` and ``converged``.

``values`` paints each pixel with its superpixel's weight. ``extras`` carries every
segment's weight (``segments``), the top-k positive and negative segment ids, the
surrogate's intercept and its weighted R² (``r2``, its fidelity); ``arrays["segment_map"]``
is the label image (H, W) the ids refer to (see :mod:`engine.render.segments`).
"""

from __future__ import annotations

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

#: "auto": the first round (at least; or the number of superpixels, if more) and the cap.
AUTO_MIN = 64
AUTO_CAP = 4000
#: How "auto" draws its samples: "sobol" (randomised QMC) or "iid" (as a fixed count does).
AUTO_SAMPLER = "sobol"


class LimeParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    segmentation: SegmentationParams = Field(
        default_factory=SlicParams,
        description='Superpixels: {"algorithm": "slic" | "quickshift" | "felzenszwalb" | '
        '"grid", ...that algorithm\'s parameters}.',
    )
    num_samples: Annotated[int, Field(ge=2, le=100_000)] | Auto = Field(
        default=1000,
        description='Perturbed samples, or "auto": sample in rounds until the split-half '
        "agreement reaches `agreement` (at most `max_samples`).",
    )
    agreement: float = Field(
        default=DEFAULT_AGREEMENT,
        gt=0,
        lt=1,
        description='With num_samples "auto": stop when the map\'s Pearson correlation with '
        "the converged map reaches this at 90 % confidence (split-half, Spearman–Brown).",
    )
    max_samples: int = Field(
        default=AUTO_CAP, ge=2, le=100_000, description='With "auto": the most samples used.'
    )
    hide: HideColour = Field(
        default="mean",
        description='Hidden superpixels become: "mean" image colour, "zero" (black), "blur", '
        '"segment_mean" (each its own mean colour), or [r, g, b].',
    )
    blur_radius: float = Field(default=10.0, gt=0, le=100, description="Gaussian radius for blur.")
    kernel_width: float = Field(
        default=0.25,
        gt=0,
        le=100,
        description="Width of the exponential kernel on cosine distance.",
    )
    alpha: float = Field(default=1.0, ge=0, le=1e6, description="Ridge regularisation.")
    top_k: int = Field(
        default=5, ge=1, le=1000, description="Segments listed in top_positive/top_negative."
    )
    score: ScoreKind = Field(default="logit", description="Explain the logit or the probability.")
    batch_size: int | None = Field(
        default=None,
        ge=1,
        le=256,
        description="Samples per ONNX Runtime call; default: the model's measured best batch.",
    )
    seed: int = Field(default=0, ge=0, le=2**63 - 1, description="Seed of the samples.")


@plan_type
@dataclass(frozen=True, eq=False)
class LimePlan:
    segments: NDArray[np.int32]  # (H, W) labels 0..M-1
    n_features: int
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


def lime_codes(n_features: int, seed: int, start: int, stop: int) -> NDArray[np.uint8]:
    """On/off vectors of samples start..stop: sample 0 all on, sample i from (seed, i)."""
    out = np.empty((stop - start, n_features), dtype=np.uint8)
    for r, i in enumerate(range(start, stop)):
        if i == 0:
            out[r] = 1
        else:
            out[r] = sample_rng(seed, i).integers(0, 2, n_features, dtype=np.uint8)
    return out


def kernel_weights(z: NDArray[np.uint8], kernel_width: float) -> NDArray[np.float64]:
    """``sqrt(exp(-d²/w²))`` of the cosine distance d of each row to the all-ones row."""
    m = z.shape[1]
    on = z.sum(axis=1, dtype=np.float64)
    d = 1.0 - np.sqrt(on / m)  # cos(z, 1) = |z|₁ / (sqrt(|z|₁) sqrt(m)); 0 rows → d = 1
    w: NDArray[np.float64] = np.sqrt(np.exp(-(d**2) / kernel_width**2))
    return w


def lime_sobol_codes(n_features: int, seed: int, start: int, stop: int) -> NDArray[np.uint8]:
    """Randomised-QMC on/off vectors: sample 0 all on; sample i > 0 is point (i − 1) // 2 of
    the scrambled Sobol' stream (i − 1) % 2, each superpixel on where its coordinate < 1/2."""
    from engine.methods.convergence import sobol_points

    out = np.ones((stop - start, n_features), dtype=np.uint8)
    first = max(start, 1)
    if first >= stop:
        return out
    for stream in (0, 1):
        idx = np.arange(first, stop)
        idx = idx[(idx - 1) % 2 == stream]
        if idx.size == 0:
            continue
        a, b = int(idx[0] - 1) // 2, int(idx[-1] - 1) // 2 + 1
        pts = sobol_points(n_features, seed, stream, a, b)
        out[idx - start] = (pts < 0.5).astype(np.uint8)
    return out


def fit(
    z: NDArray[np.uint8], scores: NDArray[np.float64], params: LimeParams
) -> tuple[NDArray[np.float64], float, float]:
    """The weighted ridge surrogate: coefficients, intercept, weighted R²."""
    from sklearn.linear_model import Ridge

    weights = kernel_weights(z, params.kernel_width)
    x = z.astype(np.float64)
    ridge: Any = Ridge(alpha=params.alpha, fit_intercept=True)
    ridge.fit(x, scores, sample_weight=weights)
    coef = np.asarray(ridge.coef_, dtype=np.float64)
    r2 = float(ridge.score(x, scores, sample_weight=weights))
    return coef, float(ridge.intercept_), r2


class LimeBuilder(PerturbationMethod[LimeParams, LimePlan]):
    name = "lime"
    needs_baseline_score = False

    def build_plan(
        self, model: LoadedModel, image: ImageInput, objective: Objective, params: LimeParams
    ) -> LimePlan:
        segments = segment(image.pixels, params.segmentation)
        m = int(segments.max()) + 1
        if params.num_samples != "auto":
            return LimePlan(segments, m, params.num_samples, params.seed)
        cap = params.max_samples
        rounds = Rounds(params.agreement, min(cap, max(AUTO_MIN, m + 1)), cap)
        return LimePlan(
            segments, m, rounds.first(), params.seed, params.agreement, cap, rounds.minimum,
            1, cap, AUTO_SAMPLER,
        )

    def sample_codes(self, plan: LimePlan, start: int, stop: int) -> NDArray[Any]:
        if plan.sampler == "sobol":
            return lime_sobol_codes(plan.n_features, plan.seed, start, stop)
        return lime_codes(plan.n_features, plan.seed, start, stop)

    def expected_samples(self, plan: LimePlan) -> int:
        return max(plan.n_samples, plan.expected) if plan.auto else plan.n_samples

    def refine(
        self,
        model: LoadedModel,
        image: ImageInput,
        objective: Objective,
        params: LimeParams,
        plan: LimePlan,
        scores: NDArray[np.float64],
        refs: References,
    ) -> LimePlan | None:
        if not plan.auto:
            return None
        est = split_half_estimate(self.split_half(params, plan, scores), area_dims(plan.segments))
        nxt = plan.schedule().next_size(plan.n_samples, est.lower)
        if nxt is None:
            return None
        return replace(plan, n_samples=nxt, rounds=plan.rounds + 1, expected=nxt)

    def split_half(self, params: LimeParams, plan: LimePlan, scores: NDArray[np.float64]) -> float:
        """Pearson of the maps fitted on the two halves (odd / even samples, 0 in both)."""
        z = self.sample_codes(plan, 0, plan.n_samples)
        idx = np.arange(plan.n_samples)
        maps = []
        for h in (0, 1):
            sel = (idx == 0) | ((idx > 0) & ((idx - 1) % 2 == h))
            coef, _, _ = fit(z[sel], scores[sel], params)
            maps.append(coef[plan.segments])
        return pearson(maps[0], maps[1])

    def render_masks(self, plan: LimePlan, codes: NDArray[Any]) -> NDArray[Any]:
        keep: NDArray[np.bool_] = np.take(codes.astype(np.bool_), plan.segments, axis=1)
        return keep

    def hide_pixels(
        self, image: ImageInput, params: LimeParams, plan: LimePlan
    ) -> NDArray[np.float32]:
        return hide_image(image, params.hide, params.blur_radius, plan.segments)

    def assemble(
        self,
        model: LoadedModel,
        image: ImageInput,
        objective: Objective,
        params: LimeParams,
        plan: LimePlan,
        scores: NDArray[np.float64],
        refs: References,
        forward_passes: int | None = None,
        progress: Progress = no_progress,
    ) -> Result:
        if scores.shape != (plan.n_samples,):
            raise ValueError(f"{scores.shape[0]} scores for a plan of {plan.n_samples} samples")
        z = self.sample_codes(plan, 0, plan.n_samples)
        coef, intercept, r2 = fit(z, scores, params)
        auto: dict[str, Any] = {}
        if plan.auto:
            est = split_half_estimate(
                self.split_half(params, plan, scores), area_dims(plan.segments)
            )
            auto = report(
                plan.schedule(), plan.n_samples, plan.rounds, est, {"sampler": plan.sampler}
            )
        pos, neg = top_segments(coef, params.top_k)
        values = coef[plan.segments].astype(np.float32)
        calls = forward_passes if forward_passes is not None else refs.forward_passes + len(z)
        return Result(
            [
                AttributionMap("attribution", values),
                Segments("segments", plan.segments, np.asarray(coef, np.float64), pos, neg),
            ],
            views={"overlay": "segments"},
            model_calls=calls,
            extras={
                "segments": [float(c) for c in coef],
                "n_segments": plan.n_features,
                "top_positive": pos,
                "top_negative": neg,
                "r2": r2,
                "intercept": intercept,
                "num_samples": plan.n_samples,
                "target_score": refs.f_x,
                **auto,
            },
        )


LIME = LimeBuilder()


def lime(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: LimeParams,
    progress: Progress,
) -> Result:
    return run_plan(LIME, model, image, objective, params, progress)


def cost(params: LimeParams, model: LoadedModel) -> int:
    """Forward passes; "auto" is costed at its cap (it may need all of them)."""
    n = params.max_samples if params.num_samples == "auto" else params.num_samples
    return n + 1


SPEC = register(
    MethodSpec(
        name="lime",
        params_model=LimeParams,
        fn=lime,
        description="LIME: a weighted linear surrogate over superpixels switched on and off.",
        kind="perturbation",
        execution="job",
        plan=LIME,
        cost=cost,
    )
)
