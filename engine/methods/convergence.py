"""Sampling in rounds until the answer has converged: the ``"auto"`` sample counts.

LIME, KernelSHAP and RISE (``num_samples`` / ``num_masks: "auto"``) and SmoothGrad
(``samples: "auto"``) may be asked for "as many samples as the answer needs". They then
sample in rounds and, after each round, split the samples so far into two independent
halves (every method says which sample is in which half: even and odd samples, or pairs),
compute the attribution map of each half, and take the Pearson correlation ``r`` of the two
maps (the *split-half* correlation, over pixels).

``r`` measures the half-size maps. The map returned is built from both halves, so its
reliability is the Spearman–Brown step-up ``R = 2r / (1 + r)`` (the share of the map's
variance that is signal, not sampling noise), and its expected Pearson correlation with the
converged map (infinitely many samples) is ``sqrt(R)``. That estimate is the ``agreement``
a result reports and the one the caller's threshold (``agreement``, default 0.95) is
compared with: the quantity a caller can check, as the benchmark does, by correlating the
map with a map of 10,000 samples.

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


def agreement_of(r_half: float) -> float:
    """Expected Pearson of the full map with the converged map, from the split-half ``r``."""
    return math.sqrt(spearman_brown(r_half))


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

    def next_size(self, n: int, r_half: float) -> int | None:
        """The plan's size for the next round, or ``None`` when ``n`` samples are enough
        (the agreement reached the threshold) or the cap is reached."""
        if n >= self.cap or agreement_of(r_half) >= self.threshold:
            return None
        reliability = spearman_brown(r_half)
        target = self.threshold**2
        if reliability <= 0.0:
            want = MAX_GROWTH * n
        else:
            want = MARGIN * n * (target / (1.0 - target)) * ((1.0 - reliability) / reliability)
        grown = min(max(want, MIN_GROWTH * n), MAX_GROWTH * n)
        return min(self.cap, max(n + self.unit, self._round_up(math.ceil(grown))))

    def expected(self, n: int, r_half: float | None) -> int:
        """A guess at the final sample count (for progress): the prediction, else the cap."""
        if r_half is None:
            return self.cap
        nxt = self.next_size(n, r_half)
        return n if nxt is None else nxt


def report(
    rounds: Rounds, n: int, n_rounds: int, r_half: float, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """The extras an auto result carries."""
    agreement = agreement_of(r_half)
    return {
        "samples_used": n,
        "rounds": n_rounds,
        "split_half_pearson": r_half,
        "agreement": agreement,
        "agreement_threshold": rounds.threshold,
        "max_samples": rounds.cap,
        "converged": agreement >= rounds.threshold,
        **(extra or {}),
    }


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
