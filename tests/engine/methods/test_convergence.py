"""The grouped estimate of a mean's convergence (``group_estimate``) and the rule that stops
on its bound: by hand on four groups, the noise's dimensions counted on planted noise, and
the promise a caller relies on -- over many runs of a mean estimator with smooth noise, the
rule stops past the threshold at least as often as its confidence says (98 % of runs here),
where a rule on the expected agreement alone falls short in one run of five.
"""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from engine.methods.convergence import (
    CONFIDENCE,
    CONFIDENCE_Z,
    Rounds,
    area_dims,
    bound,
    group_estimate,
    pearson,
    pooled,
    report,
    spearman_brown,
    split_half_estimate,
)


def test_group_estimate_by_hand() -> None:
    # four groups of one sample; the pooled map is (2, 2, −2, −2), energy T = 16
    maps = [np.array(m, float) for m in ([3, 1, -1, -3], [1, 3, -3, -1])] * 2
    est = group_estimate(maps, [1, 1, 1, 1])
    np.testing.assert_allclose(pooled(maps, [1, 1, 1, 1]), [2, 2, -2, -2])
    # each group is off by ±(1, −1, 1, −1): N = Σ 1 · 4 / ((4 − 1) · 4) = 4/3
    assert est.reliability == pytest.approx(1 - (4 / 3) / 16)
    # pair differences (over √2): four of energy 8, two zero -> tr C ~ 16/3; the disjoint
    # pairs (12, 34) and (14, 23) have products ±8, (13, 24) zero -> tr C² ~ 128/3
    assert est.noise_dims == pytest.approx((16 / 3) ** 2 / (128 / 3))  # 2/3
    spread = math.sqrt(2 / (2 / 3) * (1 + 1 / 3))  # 2
    assert est.lower == pytest.approx(1 - (4 / 3) * (1 + CONFIDENCE_Z * spread) / 16)
    assert est.groups == 4


def test_split_half_estimate_and_area_dims_by_hand() -> None:
    assert area_dims(np.array([[0, 0, 1, 1]])) == 2.0  # two superpixels of 2 pixels
    assert area_dims(np.array([[0, 0, 0, 1]])) == pytest.approx(16 / 10)  # areas 3 and 1
    est = split_half_estimate(0.5, 8.0)
    assert est.reliability == pytest.approx(2 / 3) and est.split_half_pearson == 0.5
    # two groups: spread sqrt(2/8 · (1 + 1)) = sqrt(1/2)
    assert est.lower == pytest.approx(1 - (1 / 3) * (1 + CONFIDENCE_Z * math.sqrt(0.5)))
    assert split_half_estimate(1.0, 8.0).lower == 1.0  # no noise: nothing to bound
    assert split_half_estimate(-0.2, 8.0).lower == 0.0
    assert bound(0.9, 1e12, 2) == pytest.approx(0.9)  # countless independent pixels
    e = report(Rounds(0.95, 64, 1000), 64, 1, est, {"sampler": "sobol"})
    assert e["agreement"] == pytest.approx(math.sqrt(2 / 3))
    assert e["agreement_lower"] == pytest.approx(math.sqrt(est.lower))
    assert not e["converged"] and e["groups"] == 2 and e["split_half_pearson"] == 0.5
    assert e["sampler"] == "sobol" and e["confidence"] == CONFIDENCE


def test_group_estimate_of_two_equal_halves_is_spearman_brown_and_needs_four_groups() -> None:
    rng = np.random.default_rng(0)
    truth = rng.normal(size=2000)
    groups = [truth + rng.normal(size=2000) for _ in range(4)]
    halves = [(groups[0] + groups[2]) / 2, (groups[1] + groups[3]) / 2]
    est = group_estimate(groups, [1, 1, 1, 1])
    assert est.reliability == pytest.approx(spearman_brown(pearson(*halves)), abs=0.01)
    assert est.reliability == pytest.approx(4 / 5, abs=0.01)  # signal 1, noise 1/4
    with pytest.raises(ValueError, match="four non-empty groups"):
        group_estimate(halves, [1, 1])
    with pytest.raises(ValueError, match="four non-empty groups"):
        group_estimate(groups, [1, 1, 1, 0])


@pytest.mark.parametrize("dims", [12, 40])
def test_group_estimate_counts_the_independent_pixels_of_the_noise(dims: int) -> None:
    # noise of `dims` independent values, each spread over a block of 25 pixels
    rng = np.random.default_rng(dims)
    truth = np.repeat(rng.normal(size=dims), 25)
    found = []
    for _ in range(20):
        maps = [truth + np.repeat(rng.normal(size=dims), 25) for _ in range(8)]
        found.append(group_estimate(maps, [3] * 8).noise_dims)
    assert np.median(found) == pytest.approx(dims, rel=0.3)
    white = [truth + rng.normal(size=truth.size) for _ in range(8)]
    assert group_estimate(white, [3] * 8).noise_dims > 10 * dims


def run_auto(
    rng: np.random.Generator, truth: np.ndarray, basis: np.ndarray, bound: bool
) -> tuple[int, float, dict[str, object]]:
    """One "auto" run of a mean of ``truth + basis @ noise`` samples in rounds, 8 groups."""
    rounds = Rounds(0.95, 64, 20_000)
    k = 8
    sums = np.zeros((k, truth.size))
    n, done = rounds.first(), 0
    while True:
        noise = rng.normal(size=(n - done, basis.shape[1])) @ basis.T
        samples = truth + 3.0 * noise
        for g in range(k):
            sums[g] += samples[(np.arange(done, n) % k) == g].sum(axis=0)
        done = n
        sizes = [len(range(g, n, k)) for g in range(k)]
        maps = [sums[g] / sizes[g] for g in range(k)]
        est = group_estimate(maps, sizes)
        nxt = rounds.next_size(n, est.lower if bound else est.reliability)
        if nxt is None:
            extras = report(rounds, n, 0, est if bound else replace(est, lower=est.reliability))
            return n, pearson(pooled(maps, sizes), truth), extras
        n = nxt


def test_the_bound_reaches_the_threshold_as_often_as_its_confidence_says() -> None:
    # a smooth map (30 independent directions of noise over 400 pixels), as RISE's masks make
    rng = np.random.default_rng(7)
    pixels = np.linspace(0, 1, 400)
    centres = np.linspace(0, 1, 30)
    basis = np.exp(-((pixels[:, None] - centres[None]) ** 2) / (2 * 0.02**2))
    truth = np.sin(6 * pixels) + pixels
    runs = 200
    bound = [run_auto(rng, truth, basis, True) for _ in range(runs)]
    point = [run_auto(rng, truth, basis, False) for _ in range(runs)]
    reached_bound = np.mean([r >= 0.95 for _, r, _ in bound])
    reached_point = np.mean([r >= 0.95 for _, r, _ in point])
    assert reached_bound >= CONFIDENCE
    assert reached_point < reached_bound - 0.1  # the expectation alone: short in 1 run of 5
    assert all(e["converged"] and e["agreement_lower"] >= 0.95 for _, _, e in bound)  # type: ignore[operator]
    # the bound costs samples: about half more
    n_bound = np.median([n for n, _, _ in bound])
    n_point = np.median([n for n, _, _ in point])
    assert n_point < n_bound < 2 * n_point
