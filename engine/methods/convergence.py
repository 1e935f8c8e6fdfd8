"""Sampling in rounds until the answer has converged: the ``"auto"`` sample counts.

LIME, KernelSHAP and RISE (``num_samples`` / ``num_masks: "auto"``) and SmoothGrad
(``samples: "auto"``) may be asked for "as many samples as the answer needs". They then
sample in rounds and, after each round, estimate how close the map of the samples so far
is to the converged map (infinitely many samples): its *reliability* ``R``, the share of
the map's variance that is signal rather than sampling noise, whose root is the expected
Pearson correlation with the converged map -- the quantity a caller can check, as the
benchmark does, by correlating the map with a map of 10,000 samples.

Two estimates. *Split-half* (LIME, KernelSHAP, SmoothGrad: regressions and non-linear
reductions, which need many samples per map): the samples are split into two independent
halves (every method says which sample is in which half), a map is made of each, and the
Pearson ``r`` of the two gives ``R = 2r / (1 + r)`` (Spearman–Brown). *Grouped* (RISE, a
plain mean): eight groups, whose spread gives the noise directly (:func:`group_estimate`).

Both are expectations, and one run's noise strays from its expectation -- the more, the
fewer independent pixels the noise has (``d``; few where samples are smooth masks or
superpixels) -- while a rule that stops at the first round past a threshold stops on the
lucky estimates. So every rule stops on a one-sided 90 % bound (:func:`bound`: the noise
taken ``1.28 · sqrt(2/d · (1 + 1/(K − 1)))`` above its estimate, ``K`` groups); grouped
estimates measure ``d``, split-half ones take it from the map's structure (superpixels:
:func:`area_dims`; SmoothGrad: every pixel, the loosest). A result reports ``agreement``
(``sqrt(R)``), ``agreement_lower`` (the bound's) and ``converged`` (the bound reached the
caller's ``agreement``, default 0.95). On the bundled photos (bench/RESULTS.md) the bound
turned RISE's 15 of 24 runs past 0.95 into 24 of 24, and LIME's 46 of 48 into 48 of 48.

Rounds: the first round has the method's minimum; after each round that falls short, the
noise seen so far predicts how many samples reach the threshold (sampling noise falls as
``1/n``: ``(1 − R)/R ∝ 1/n``), and the next round grows the plan to 1.2 × that prediction,
at least ×1.25 and at most ×4 of the samples so far, and never past the cap
(``max_samples``), where it stops whatever the agreement. Rounds are nested: round ``k + 1``
keeps every sample of round ``k``, so nothing is evaluated twice, and the same seed gives
the same samples, rounds and answer.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray

#: The value a sample count takes for "sample until converged".
Auto = Literal["auto"]
AUTO: Auto = "auto"

#: Default agreement threshold (estimated Pearson of the map with the converged map).
DEFAULT_AGREEMENT = 0.95

#: Growth of one round, as a multiple of the samples so far: at least, at most.
MIN_GROWTH = 1.25
MAX_GROWTH = 4.0
#: Margin on the predicted sample count (the prediction is itself a noisy estimate).
MARGIN = 1.2


def pearson(a: NDArray[Any], b: NDArray[Any]) -> float:
    """Pearson correlation of two maps (flattened). Two constant maps: 1.0 if equal, else 0."""
    x = np.asarray(a, np.float64).ravel()
    y = np.asarray(b, np.float64).ravel()
    x = x - x.mean()
    y = y - y.mean()
    sx = float(np.sqrt(x @ x))
    sy = float(np.sqrt(y @ y))
    if sx == 0.0 or sy == 0.0:
        return 1.0 if sx == sy and np.allclose(a, b) else 0.0
    return float(np.clip((x @ y) / (sx * sy), -1.0, 1.0))


def spearman_brown(r: float, k: float = 2.0) -> float:
    """Reliability of a map from ``k`` times the samples of maps that correlate ``r``."""
    r = max(r, 0.0)
    return k * r / (1.0 + (k - 1.0) * r)


def pooled(maps: Sequence[NDArray[Any]], sizes: Sequence[int]) -> NDArray[np.float64]:
    """The map of all the samples: the groups' maps weighted by their sizes."""
    n = max(sum(sizes), 1)
    out = np.zeros(np.shape(maps[0]), dtype=np.float64)
    for m, k in zip(maps, sizes, strict=True):
        out += (k / n) * np.asarray(m, np.float64)
    return out


@dataclass(frozen=True)
class GroupEstimate:
    """How close a map is to the converged map (:func:`group_estimate`,
    :func:`split_half_estimate`)."""

    #: Expected share of the pooled map's energy that is signal; ``sqrt`` of it is the
    #: expected Pearson with the converged map (the reported ``agreement``).
    reliability: float
    #: The same at the one-sided `CONFIDENCE` bound: what a stopping rule compares.
    lower: float
    #: Effective number of independent pixels of the sampling noise.
    noise_dims: float
    groups: int
    #: Two groups: the halves' Pearson correlation.
    split_half_pearson: float | None = None


#: The one-sided confidence of the bound every stopping rule stops on, and its normal
#: quantile.
CONFIDENCE = 0.9
CONFIDENCE_Z = 1.2816


def group_estimate(
    maps: Sequence[NDArray[Any]], sizes: Sequence[int], z: float = CONFIDENCE_Z
) -> GroupEstimate:
    """Reliability of the pooled map (:func:`pooled`) from ``K ≥ 4`` independent groups of
    samples, each group's map a mean over its ``sizes[k]`` samples, and a bound on it.

    The sampling noise of a mean falls as 1/n, so the spread of the groups' maps about the
    pooled one gives the pooled map's expected noise energy ``N`` (every map centred over
    pixels, as Pearson centres them: ``Σₖ nₖ ‖mₖ − m‖² / ((K − 1) n)``); with the pooled
    map's energy ``T`` the reliability is ``1 − N / T``. (With two equal halves this is the
    Spearman–Brown step-up of their Pearson correlation.)

    That is an expectation: the noise of one run is ``N`` give or take a relative
    ``sqrt(2 / d)``, where ``d = tr(C)² / tr(C²)`` is the number of independent pixels of
    the noise's covariance ``C`` — few where samples are smooth masks — and ``N`` itself
    is estimated from ``K − 1`` degrees of freedom. ``d`` comes from the differences of
    disjoint pairs of groups (``E‖mⱼ − mₖ‖² ∝ tr C``, ``E[(dᵢⱼ·dₖₗ)²] ∝ tr C²``). The bound
    ``lower`` takes the noise at ``z`` standard deviations above its estimate.
    """
    k = len(maps)
    if k < 4 or k != len(sizes) or min(sizes) < 1:
        raise ValueError(f"{k} maps of sizes {list(sizes)}: need at least four non-empty groups")
    n = sum(sizes)
    centred = np.stack([np.asarray(m, np.float64).ravel() for m in maps])
    centred -= centred.mean(axis=1, keepdims=True)
    w = np.asarray(sizes, np.float64)
    full = (w / n) @ centred
    total = float(full @ full)
    noise = float(w @ ((centred - full) ** 2).sum(axis=1)) / ((k - 1) * n)
    # noise dimensions: pairs of groups, their differences scaled to unit sample size
    pairs = [(i, j) for i in range(k) for j in range(i + 1, k)]
    diffs = np.stack([(centred[i] - centred[j]) / math.sqrt(1 / w[i] + 1 / w[j]) for i, j in pairs])
    gram = diffs @ diffs.T
    disjoint = np.array([[len({*p, *q}) == 4 for q in pairs] for p in pairs])
    trace2 = float(np.mean(gram[disjoint] ** 2))
    # no spread between the pairs' products (e.g. equal groups): every pixel independent
    pixels = float(centred.shape[1])
    dims = min(pixels, float(np.mean(np.diag(gram)) ** 2 / trace2)) if trace2 > 0 else pixels
    if total <= 0.0:
        rel = 1.0 if noise <= 0.0 else 0.0
        return GroupEstimate(rel, rel, dims, k)
    rel = max(0.0, 1.0 - noise / total)
    return GroupEstimate(rel, bound(rel, dims, k, z), dims, k)


def bound(reliability: float, dims: float, groups: int, z: float = CONFIDENCE_Z) -> float:
    """The reliability at ``z`` standard deviations of the noise above its estimate: one
    run's noise energy strays from its expectation by a relative ``sqrt(2 / dims)`` (``dims``
    independent pixels), the estimate from ``groups`` groups by ``1 / (groups − 1)`` more
    in variance."""
    if reliability >= 1.0:
        return 1.0
    if dims <= 0 or groups < 2:
        return 0.0
    spread = math.sqrt(2.0 / dims * (1.0 + 1.0 / (groups - 1)))
    return max(0.0, 1.0 - (1.0 - reliability) * (1.0 + z * spread))


def split_half_estimate(r_half: float, dims: float, z: float = CONFIDENCE_Z) -> GroupEstimate:
    """The split-half rule's estimate: the Spearman–Brown step-up of the halves' Pearson
    ``r_half`` and its bound (:func:`bound`, two groups). Two maps cannot say how many
    independent pixels their noise has, so the method gives ``dims`` from the map's
    structure: for maps constant on superpixels, :func:`area_dims`."""
    rel = spearman_brown(r_half)
    return GroupEstimate(rel, bound(rel, dims, 2, z), dims, 2, r_half)


def area_dims(segments: NDArray[Any]) -> float:
    """The effective number of superpixels of a label image, ``(Σ a)² / Σ a²`` over their
    areas ``a``: at most the independent pixels of any map constant on them (their count
    if all are equal; fewer where a few large ones hold most pixels)."""
    area = np.bincount(np.asarray(segments).ravel()).astype(np.float64)
    return float(area.sum() ** 2 / max(float(area @ area), 1.0))


@dataclass(frozen=True)
class Rounds:
    """The schedule of an auto run: ``threshold`` on the agreement, the ``minimum`` samples
    (the first round) and the ``cap``; sample counts are rounded up to multiples of
    ``unit`` (2 where samples come in pairs)."""

    threshold: float
    minimum: int
    cap: int
    unit: int = 1

    def first(self) -> int:
        return min(self.cap, self._round_up(self.minimum))

    def _round_up(self, n: int) -> int:
        return -(-n // self.unit) * self.unit

    def next_size(self, n: int, reliability: float) -> int | None:
        """The plan's size for the next round, or ``None`` when ``n`` samples are enough
        (``sqrt(reliability)`` reached the threshold) or the cap is reached. ``reliability``
        is what the method's rule stops on: its estimate's bound (:attr:`GroupEstimate.lower`)."""
        reliability = min(max(reliability, 0.0), 1.0)
        if n >= self.cap or math.sqrt(reliability) >= self.threshold:
            return None
        target = self.threshold**2
        if reliability <= 0.0:
            want = MAX_GROWTH * n
        else:
            want = MARGIN * n * (target / (1.0 - target)) * ((1.0 - reliability) / reliability)
        grown = min(max(want, MIN_GROWTH * n), MAX_GROWTH * n)
        return min(self.cap, max(n + self.unit, self._round_up(math.ceil(grown))))

    def expected(self, n: int, reliability: float | None) -> int:
        """A guess at the final sample count (for progress): the prediction, else the cap."""
        if reliability is None:
            return self.cap
        nxt = self.next_size(n, reliability)
        return n if nxt is None else nxt


def report(
    rounds: Rounds,
    n: int,
    n_rounds: int,
    estimate: GroupEstimate,
    extra: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The extras an auto result carries: ``agreement`` (the expected Pearson with the
    converged map), ``agreement_lower`` (its `CONFIDENCE` bound, what the rule stopped on)
    and whether that bound reached the threshold (``converged``)."""
    agreement = math.sqrt(min(max(estimate.reliability, 0.0), 1.0))
    lower = math.sqrt(min(max(estimate.lower, 0.0), 1.0))
    out: dict[str, Any] = {
        "samples_used": n,
        "rounds": n_rounds,
        "agreement": agreement,
        "agreement_lower": lower,
        "confidence": CONFIDENCE,
        "agreement_threshold": rounds.threshold,
        "max_samples": rounds.cap,
        "converged": lower >= rounds.threshold,
        "groups": estimate.groups,
        "noise_dims": estimate.noise_dims,
    }
    if estimate.split_half_pearson is not None:
        out["split_half_pearson"] = estimate.split_half_pearson
    out.update(extra or {})
    return out


def sobol_points(dim: int, seed: int, stream: int, start: int, stop: int) -> NDArray[np.float64]:
    """Points ``start..stop`` of a scrambled Sobol' sequence in ``[0, 1)^dim``, the scramble
    drawn from ``(seed, stream)``: randomised quasi-Monte Carlo. Two streams are two
    independent randomisations, so the two halves of a split-half check stay independent.

    Each stream also takes the sequence's dimensions in its own random order. Scrambling
    (scipy's linear matrix scramble and digital shift) keeps each dimension's first
    generator row, so the first binary digit -- the on/off of a superpixel thresholded at
    1/2 -- of some dimensions repeats (or flips) exactly over the first 2^k points: with 39
    dimensions, 33 pairs over 32 points and 11 over 64. In the same order in both streams
    those aliased pairs would be the same in both halves, which would then agree on the
    aliasing and overstate the split-half agreement; in independent orders they differ.

    A stream's first points (up to the next power of two past ``stop``, at least
    `_SOBOL_MIN_LENGTH`) are made once and kept (`_sobol_prefix`) while they take at most
    `_SOBOL_CACHE_BYTES`: scrambling costs ~2 ms a call, and a method asks for its samples
    a batch at a time. Larger ranges are made on their own (`_sobol_range`): the same
    points.
    """
    if not 0 <= start <= stop:
        raise ValueError(f"points [{start}, {stop}) are not a range")
    length = max(_SOBOL_MIN_LENGTH, 1 << max(stop - 1, 1).bit_length())
    if length * dim * 8 > _SOBOL_CACHE_BYTES:
        return _sobol_range(dim, seed, stream, start, stop)
    pts: NDArray[np.float64] = _sobol_prefix(dim, seed, stream, length)[start:stop].copy()
    return pts


#: The fewest points `sobol_points` keeps of a stream (more cost about the same to make).
_SOBOL_MIN_LENGTH = 4096
#: The most bytes one kept stream may take (LIME's 50 superpixels: 1.6 MB at 4096 points).
_SOBOL_CACHE_BYTES = 2 * 1024 * 1024


@functools.lru_cache(maxsize=16)
def _sobol_prefix(dim: int, seed: int, stream: int, length: int) -> NDArray[np.float64]:
    """The first ``length`` points of stream ``(seed, stream)`` (read-only)."""
    pts = _sobol_range(dim, seed, stream, 0, length)
    pts.flags.writeable = False
    return pts


def _sobol_range(dim: int, seed: int, stream: int, start: int, stop: int) -> NDArray[np.float64]:
    """Points ``start..stop`` of stream ``(seed, stream)``, made afresh."""
    import warnings

    from scipy.stats import qmc

    rng = np.random.default_rng([seed, stream])
    order = rng.permutation(dim)
    engine = qmc.Sobol(dim, scramble=True, seed=rng)
    if start:
        engine.fast_forward(start)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # balance properties want powers of 2: not needed
        pts: NDArray[np.float64] = engine.random(stop - start)[:, order]
    return pts
