"""``"auto"`` sample counts: rounds until the split-half agreement reaches the threshold.

Tiny ONNX models whose answers are known: a linear model (LIME and KernelSHAP recover its
per-segment contributions, KernelSHAP's sum to f(x) − f(baseline), SmoothGrad's gradient
is its weight at every noisy copy, so one round agrees and stops), and a model whose score
is a pure pairwise interaction of the segments (the best linear fit is exactly zero, so
LIME's half maps are noise: it runs to the cap; KernelSHAP's exact values are enumerated
on 9 players, and "auto" converges to them). The sampling designs: Sobol' streams nested,
independent and aliasing different superpixels; KernelSHAP's pairs of uniform sizes
weighted by the kernel.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pydantic import ValidationError

from engine.methods.base import no_progress
from engine.methods.convergence import (
    Rounds,
    _sobol_range,
    area_dims,
    pearson,
    sobol_points,
    spearman_brown,
    split_half_estimate,
)
from engine.methods.kernel_shap import (
    KERNEL_SHAP,
    KernelShapParams,
    kernel_shap,
    paired_coalitions,
    paired_weights,
)
from engine.methods.lime import LIME, LimeParams, lime
from engine.methods.perturbation import dump_plan, load_plan, run_plan
from engine.methods.registry import get_method
from engine.methods.rise import RISE, RiseParams, rise
from engine.methods.smoothgrad import SmoothGradParams, smoothgrad
from engine.modalities.image import ImageInput
from engine.objectives import ClassScore
from lantern_testing.loaded import loaded
from lantern_testing.models import (
    conv_classifier,
    linear_classifier,
    load_tiny,
    region_classifier,
)

SIZE = 16
GRID4: dict[str, Any] = {"algorithm": "grid", "cell": 4}  # 16 segments of 4×4


def image(seed: int = 0) -> ImageInput:
    rng = np.random.default_rng(seed)
    return ImageInput(rng.uniform(0, 255, size=(SIZE, SIZE, 3)).astype(np.float32))


def weights(seed: int = 1) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=(2, 3, SIZE, SIZE)).astype(np.float32)


def contributions(w: np.ndarray, img: ImageInput, cell: int) -> np.ndarray:
    """Per grid cell (raster order): Σ w · x over its pixels, for logit 0 (hide "zero")."""
    per_pixel = (w[0] * img.pixels.transpose(2, 0, 1)).sum(axis=0)
    k = SIZE // cell
    return per_pixel.reshape(k, cell, k, cell).sum(axis=(1, 3)).ravel().astype(np.float64)


def interaction_classifier(w: np.ndarray, centre: float) -> onnx.ModelProto:
    """logit 0 = (Σ w₀ · x − centre)², logit 1 = 0: with ``centre`` = half the full image's
    Σ w₀ · x and hide "zero", logit 0 of on/off vector z is (Σ_k (z_k − ½) a_k)², a constant
    plus pairwise products (z_j − ½)(z_k − ½) only, so its best linear fit is zero."""
    flat = w.reshape(2, -1).T.astype(np.float32)
    bias = np.array([-centre, 0.0], np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Flatten", ["input"], ["flat"], axis=1),
            helper.make_node("MatMul", ["flat", "W"], ["mm"]),
            helper.make_node("Add", ["mm", "B"], ["lin"]),
            helper.make_node("Mul", ["lin", "lin"], ["logits"]),
        ],
        "interaction",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        initializer=[numpy_helper.from_array(flat, "W"), numpy_helper.from_array(bias, "B")],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


# -- the shared module ------------------------------------------------------------------


def test_pearson_spearman_brown_and_agreement_by_hand() -> None:
    a = np.array([1.0, 2.0, 3.0, 4.0])
    assert pearson(a, 2 * a + 1) == pytest.approx(1.0)
    assert pearson(a, -a) == pytest.approx(-1.0)
    assert pearson(a, np.array([1.0, -1.0, -1.0, 1.0])) == pytest.approx(0.0)
    assert pearson(np.ones(3), np.ones(3)) == 1.0 and pearson(np.ones(3), np.zeros(3)) == 0.0
    assert spearman_brown(0.5) == pytest.approx(2 / 3)  # 2r / (1 + r)
    assert spearman_brown(-0.3) == 0.0


def test_rounds_stop_grow_and_cap() -> None:
    rounds = Rounds(0.95, 64, 1000, unit=2)
    assert rounds.first() == 64
    assert rounds.next_size(64, 0.91) is None  # agreement sqrt(0.91) ≥ 0.95
    # reliability 2/3 (split halves at r 0.5), target 0.9025: n* = 64 · (0.9025/0.0975) · ½
    want = 1.2 * 64 * (0.9025 / 0.0975) * 0.5
    assert rounds.next_size(64, 2 / 3) == 2 * math.ceil(math.ceil(min(want, 4 * 64)) / 2)
    assert rounds.next_size(64, spearman_brown(0.5)) == rounds.next_size(64, 2 / 3)
    assert rounds.next_size(64, 0.0) == 256  # no signal yet: at most ×4
    assert rounds.next_size(64, -0.2) == 256  # a bound below zero counts as none
    assert rounds.next_size(64, 0.9) == 80  # nearly there (R* = 0.9025): at least ×1.25
    assert rounds.next_size(900, 0.1) == 1000  # never past the cap
    assert rounds.next_size(1000, 0.1) is None  # at the cap: stop whatever the agreement
    assert all(rounds.next_size(n, 0.5) % 2 == 0 for n in (64, 100, 250))  # pairs stay whole


def test_sobol_streams_are_nested_and_independent() -> None:
    whole = sobol_points(5, 3, 0, 0, 64)
    np.testing.assert_array_equal(sobol_points(5, 3, 0, 16, 64), whole[16:])
    # a stream too large to keep is made afresh: the same points
    many = sobol_points(600, 3, 0, 100, 4000)  # 600 dimensions x 4096 points: over 2 MiB
    np.testing.assert_array_equal(many[:50], sobol_points(600, 3, 0, 100, 150))
    np.testing.assert_array_equal(sobol_points(5, 3, 0, 4000, 5000)[:50],
                                  sobol_points(5, 3, 0, 0, 9000)[4000:4050])
    np.testing.assert_array_equal(_sobol_range(5, 3, 0, 100, 200), sobol_points(5, 3, 0, 100, 200))
    assert not np.array_equal(sobol_points(5, 3, 1, 0, 64), whole)
    # stratified: each coordinate has exactly 32 of its 64 points below 1/2
    assert ((whole < 0.5).sum(axis=0) == 32).all()


def aliased_pairs(bits: np.ndarray) -> set[tuple[int, int]]:
    """Column pairs that are equal or complementary over every row."""
    m = bits.shape[1]
    return {(a, b) for a in range(m) for b in range(a + 1, m)
            if (bits[:, a] == bits[:, b]).all() or (bits[:, a] != bits[:, b]).all()}


def test_sobol_streams_alias_different_dimensions() -> None:
    # 39 dimensions over 32 points: a scrambled Sobol' design cannot keep every first digit
    # apart (scrambling keeps the first generator row); the two streams must alias
    # different pairs, or both halves of a split-half check would share the aliasing
    halves = [sobol_points(39, 0, stream, 0, 32) < 0.5 for stream in (0, 1)]
    first, second = (aliased_pairs(h) for h in halves)
    assert first and second  # the aliasing is there ...
    assert len(first & second) <= 2  # ... but not in the same places (same order: all 33)
    assert not aliased_pairs(np.concatenate(halves))  # and the whole design has none
    # each stream still stratifies every dimension
    assert all(((h[:32]).sum(axis=0) == 16).all() for h in halves)


def test_params_take_auto_an_integer_and_nothing_else() -> None:
    assert LimeParams.model_validate({"num_samples": "auto"}).num_samples == "auto"
    assert LimeParams().num_samples == 1000 and LimeParams().agreement == 0.95
    assert RiseParams.model_validate({"num_masks": "auto"}).num_masks == "auto"
    assert KernelShapParams.model_validate({"num_samples": "auto"}).num_samples == "auto"
    assert SmoothGradParams.model_validate({"samples": "auto"}).samples == "auto"
    for bad in ({"num_samples": "many"}, {"num_samples": 1}, {"agreement": 1.0},
                {"agreement": 0}, {"max_samples": 1}):
        with pytest.raises(ValidationError):
            LimeParams.model_validate(bad)


def test_auto_is_costed_at_its_cap(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, linear_classifier(weights()), SIZE)
    for name, raw, want in [
        ("lime", {"num_samples": "auto", "max_samples": 700}, 701),
        ("kernel_shap", {"num_samples": "auto", "max_samples": 700}, 702),
        ("rise", {"num_masks": "auto", "max_samples": 700}, 701),
        ("smoothgrad", {"samples": "auto", "max_samples": 70}, 70),
        ("lime", {"num_samples": 300}, 301),
    ]:
        spec = get_method(name, "image")
        assert spec.cost(spec.parse_params(raw), model) == want, name


# -- LIME ----------------------------------------------------------------------------------


def test_lime_auto_recovers_a_linear_model_and_stops_on_its_bound(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    w, img = weights(), image()
    model = load_tiny(tmp_path, linear_classifier(w), SIZE)
    raw = {"segmentation": GRID4, "hide": "zero", "alpha": 0.0}
    params = LimeParams.model_validate({**raw, "num_samples": "auto"})
    auto = lime(model, img, ClassScore(0), params, no_progress)
    e = auto.extras
    np.testing.assert_allclose(e["segments"], contributions(w, img, 4), rtol=1e-4, atol=1e-2)
    # after the first round (64 samples) each half (32 Sobol' points, 16 superpixels)
    # aliases 4 pairs of superpixels, which its least-squares fit cannot tell apart, and
    # the two halves alias different pairs: their maps differ although the whole design
    # recovers the model. The expected agreement passes 0.95, its 90 % bound over 16
    # superpixels does not, so a second round (×1.4) follows, where both halves agree.
    first = LIME.build_plan(model, img, ClassScore(0), params)
    scores = LIME.evaluate(model, img, ClassScore(0), params, first, 0, 64, no_progress)
    est = split_half_estimate(LIME.split_half(params, first, scores), area_dims(first.segments))
    assert 0.5 < est.split_half_pearson < 1.0 - 1e-6  # type: ignore[operator]
    assert est.reliability >= 0.95**2 > est.lower and est.noise_dims == 16
    assert e["rounds"] == 2 and e["samples_used"] == 90 and e["converged"]
    assert e["agreement_lower"] >= 0.95 and e["split_half_pearson"] == pytest.approx(1.0)
    assert auto.model_calls == 1 + 90  # the reference pass and two rounds
    # i.i.d. draws (a fixed count's): the first round's samples are exactly a fixed
    # count's, and both halves recover the model, so they agree perfectly
    monkeypatch.setattr("engine.methods.lime.AUTO_SAMPLER", "iid")
    iid = lime(model, img, ClassScore(0), LimeParams.model_validate(
        {**raw, "num_samples": "auto"}), no_progress)
    assert iid.extras["split_half_pearson"] == pytest.approx(1.0)
    assert iid.extras["rounds"] == 1 and iid.model_calls == 1 + 64
    fixed = lime(model, img, ClassScore(0), LimeParams.model_validate(
        {**raw, "num_samples": 64}), no_progress)
    np.testing.assert_array_equal(iid.values, fixed.values)
    np.testing.assert_allclose(auto.values, fixed.values, rtol=1e-4, atol=1e-3)
    assert "agreement" not in fixed.extras


def noisy_lime(tmp_path: Path, **kw: Any) -> tuple[Any, ImageInput, LimeParams]:
    w, img = weights(), image()
    centre = float(contributions(w, img, 4).sum()) / 2
    model = load_tiny(tmp_path, interaction_classifier(w, centre), SIZE)
    params = LimeParams.model_validate({
        "segmentation": GRID4, "hide": "zero", "kernel_width": 100.0,
        "num_samples": "auto", "max_samples": 300, **kw,
    })
    return model, img, params


def test_lime_auto_runs_to_the_cap_on_a_noisy_model(tmp_path: Path) -> None:
    model, img, params = noisy_lime(tmp_path)
    seen: list[float] = []
    res = lime(model, img, ClassScore(0), params, seen.append)
    e = res.extras
    assert e["samples_used"] == 300 == e["num_samples"] and e["max_samples"] == 300
    assert e["rounds"] > 1 and not e["converged"]
    assert e["agreement"] < 0.95 and abs(e["split_half_pearson"]) < 0.8
    assert res.model_calls <= 301
    assert seen == sorted(seen) and seen[-1] == 1.0  # progress never goes backwards


def test_auto_rounds_split_into_chunks_give_the_same_answer(tmp_path: Path) -> None:
    model, img, params = noisy_lime(tmp_path)
    whole = run_plan(LIME, model, img, ClassScore(0), params, no_progress)
    chunked = run_plan(LIME, model, img, ClassScore(0), params, no_progress, chunk=13)
    np.testing.assert_array_equal(whole.values, chunked.values)
    assert whole.extras == chunked.extras and whole.model_calls == chunked.model_calls


def test_auto_is_seeded(tmp_path: Path) -> None:
    model, img, params = noisy_lime(tmp_path)
    a = lime(model, img, ClassScore(0), params, no_progress)
    b = lime(model, img, ClassScore(0), params, no_progress)
    c = lime(model, img, ClassScore(0), params.model_copy(update={"seed": 7}), no_progress)
    np.testing.assert_array_equal(a.values, b.values)
    assert a.extras == b.extras
    assert not np.array_equal(a.values, c.values)


def test_lime_sobol_sampler_keeps_sample_zero_and_is_nested(tmp_path: Path) -> None:
    from engine.methods.lime import lime_sobol_codes

    whole = lime_sobol_codes(10, 4, 0, 65)
    assert (whole[0] == 1).all()
    np.testing.assert_array_equal(lime_sobol_codes(10, 4, 17, 65), whole[17:])
    # each half (odd / even samples past 0) is its own stratified stream
    assert ((whole[1::2][:32] == 1).sum(axis=0) == 16).all()


# -- KernelSHAP ------------------------------------------------------------------------------


def test_kernel_shap_auto_is_exact_on_a_linear_model(tmp_path: Path) -> None:
    w, img = weights(), image()
    model = load_tiny(tmp_path, linear_classifier(w), SIZE)
    params = KernelShapParams.model_validate(
        {"segmentation": GRID4, "hide": "zero", "num_samples": "auto"}
    )
    res = kernel_shap(model, img, ClassScore(0), params, no_progress)
    e = res.extras
    phi = np.asarray(e["segments"])
    np.testing.assert_allclose(phi, contributions(w, img, 4), rtol=1e-4, atol=1e-2)
    assert abs(phi.sum() - (e["f_x"] - e["f_baseline"])) < 1e-3
    # 16 players: the first round is 2 (16 + 1) = 34 coalitions, at least 64; a half whose
    # repeated small coalitions leave the regression short of rank takes one more round
    assert e["rounds"] <= 2 and e["samples_used"] >= 64 and e["converged"]
    assert e["agreement"] == pytest.approx(1.0) and not e["exact"]


def test_kernel_shap_auto_pairs_coalitions_and_keeps_efficiency(tmp_path: Path) -> None:
    z = paired_coalitions(12, 5, 0, 40)
    np.testing.assert_array_equal(z[1::2], 1 - z[::2])  # each coalition, then its complement
    sizes = z[::2].sum(axis=1)
    assert sizes.min() >= 1 and sizes.max() <= 11
    np.testing.assert_array_equal(paired_coalitions(12, 5, 10, 40), z[20:])
    # a non-linear model: Σφ = f(x) − f(background) holds whatever the rounds
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    params = KernelShapParams.model_validate(
        {"segmentation": {"algorithm": "grid", "cell": 2}, "num_samples": "auto",
         "max_samples": 600}
    )
    res = kernel_shap(model, image(), ClassScore(2), params, no_progress)
    e = res.extras
    assert abs(sum(e["segments"]) - (e["f_x"] - e["f_baseline"])) < 1e-3
    assert e["samples_used"] % 2 == 0 and e["samples_used"] <= 600
    assert e["converged"] == (e["agreement"] >= 0.95)
    assert e["converged"] or e["samples_used"] == 600
    assert res.model_calls <= 2 + e["samples_used"]  # repeated coalitions are scored once


def test_kernel_shap_auto_draws_sizes_uniformly_and_weighs_them_by_the_kernel() -> None:
    m = 9
    z = paired_coalitions(m, 0, 0, 4000)
    sizes = z[::2].sum(axis=1)
    counts = np.bincount(sizes, minlength=m)[1:]
    assert counts.sum() == 4000 and abs(counts / 4000 - 1 / (m - 1)).max() < 0.02  # uniform
    # weight over the proposal's chance 1 / ((M − 1) C(M, s)) is the Shapley kernel
    w = paired_weights(z)
    s = z.sum(axis=1)
    kernel = (m - 1) / (np.array([math.comb(m, int(k)) for k in s]) * s * (m - s))
    proposal = 1.0 / ((m - 1) * np.array([math.comb(m, int(k)) for k in s]))
    ratio = w * proposal / kernel
    np.testing.assert_allclose(ratio, ratio[0])


def test_kernel_shap_auto_converges_to_the_exact_values_of_a_non_linear_game(
    tmp_path: Path,
) -> None:
    # (Σ w · x − c)² over 9 grid cells: exact Shapley values by enumerating all 510
    # coalitions; "auto" sampling 20,000 (repeats add weight) lands within 5 % of them
    # (weight 1 under the same uniform sizes: 17 % off)
    w, img = weights(), image()
    centre = float(contributions(w, img, 4).sum()) / 2
    model = load_tiny(tmp_path, interaction_classifier(w, centre), SIZE)
    raw = {"segmentation": {"algorithm": "grid", "cell": 6}, "hide": "zero"}
    exact = kernel_shap(model, img, ClassScore(0), KernelShapParams.model_validate(
        {**raw, "num_samples": 510}), no_progress)
    assert exact.extras["exact"] and exact.extras["n_segments"] == 9
    auto = kernel_shap(model, img, ClassScore(0), KernelShapParams.model_validate(
        {**raw, "num_samples": "auto", "agreement": 0.9999, "max_samples": 20_000}),
        no_progress)
    assert auto.extras["samples_used"] == 20_000 and not auto.extras["exact"]
    a, b = np.asarray(auto.extras["segments"]), np.asarray(exact.extras["segments"])
    assert np.abs(a - b).max() < 0.05 * np.abs(b).max()
    assert abs(a.sum() - b.sum()) < 1e-6  # both sum to f(x) − f(background)


def test_kernel_shap_auto_enumerates_a_small_game(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    grid8 = {"algorithm": "grid", "cell": 8}  # 4 players: 14 coalitions
    auto = kernel_shap(model, image(), ClassScore(1), KernelShapParams.model_validate(
        {"segmentation": grid8, "num_samples": "auto"}), no_progress)
    exact = kernel_shap(model, image(), ClassScore(1), KernelShapParams.model_validate(
        {"segmentation": grid8, "num_samples": 14}), no_progress)
    np.testing.assert_array_equal(auto.values, exact.values)
    assert auto.extras["exact"] and auto.extras["agreement"] == 1.0
    assert auto.extras["samples_used"] == 14 and auto.model_calls == 16


# -- RISE ------------------------------------------------------------------------------------


def region_model(tmp_path: Path) -> Any:
    return load_tiny(tmp_path, region_classifier(SIZE, 4, 12, 4, 12), SIZE)


def test_rise_auto_agrees_with_many_masks_and_honours_the_threshold(tmp_path: Path) -> None:
    model = region_model(tmp_path)
    img = image()
    base = {"grid_size": 4, "hide": "zero", "num_masks": "auto"}
    loose = rise(model, img, ClassScore(0), RiseParams.model_validate(
        {**base, "agreement": 0.8}), no_progress)
    tight = rise(model, img, ClassScore(0), RiseParams.model_validate(
        {**base, "agreement": 0.99}), no_progress)
    many = rise(model, img, ClassScore(0), RiseParams(num_masks=8000, grid_size=4, hide="zero",
                                                      seed=9), no_progress)
    for res, threshold in ((loose, 0.8), (tight, 0.99)):
        e = res.extras
        assert e["agreement_threshold"] == threshold
        assert e["converged"] == (e["agreement_lower"] >= threshold)
        assert e["agreement_lower"] <= e["agreement"] and e["confidence"] == 0.9
        assert e["groups"] == 8 and e["noise_dims"] > 1
        assert e["converged"] or e["samples_used"] == e["max_samples"]
        assert res.model_calls == 1 + e["samples_used"] == 1 + e["num_masks"]
    assert loose.extras["converged"] and tight.extras["converged"]
    assert tight.extras["samples_used"] > loose.extras["samples_used"]
    # the agreement estimates the correlation with the converged map
    assert pearson(tight.values, many.values) > 0.97
    assert pearson(loose.values, many.values) > 0.7


def test_rise_auto_is_seeded_and_its_plan_travels(tmp_path: Path) -> None:
    model = region_model(tmp_path)
    params = RiseParams.model_validate({"grid_size": 4, "hide": "zero", "num_masks": "auto"})
    a = rise(model, image(), ClassScore(0), params, no_progress)
    b = rise(model, image(), ClassScore(0), params, no_progress)
    np.testing.assert_array_equal(a.values, b.values)
    plan = RISE.build_plan(model, image(), ClassScore(0), params)
    again = load_plan(dump_plan(plan))
    assert vars(again) == vars(plan) and again.auto and again.max_samples == params.max_samples
    assert RISE.expected_samples(plan) == params.max_samples  # before any round: the cap


def test_kernel_shap_and_lime_plans_travel_with_their_rounds(tmp_path: Path) -> None:
    model = region_model(tmp_path)
    params = KernelShapParams.model_validate({"segmentation": GRID4, "num_samples": "auto"})
    plan = KERNEL_SHAP.build_plan(model, image(), ClassScore(0), params)
    again = load_plan(dump_plan(plan))
    np.testing.assert_array_equal(again.coalitions, plan.coalitions)
    assert (again.seed, again.agreement, again.rounds) == (plan.seed, 0.95, 1)
    lp = LimeParams.model_validate({"segmentation": GRID4, "num_samples": "auto"})
    lplan = LIME.build_plan(model, image(), ClassScore(0), lp)
    assert load_plan(dump_plan(lplan)).schedule() == lplan.schedule()


# -- SmoothGrad ------------------------------------------------------------------------------


def test_smoothgrad_auto_stops_at_once_on_a_linear_model(tmp_path: Path) -> None:
    w = weights()
    model = loaded(tmp_path, linear_classifier(w), SIZE, ["a", "b"])
    img = image()
    auto = smoothgrad(model, img, ClassScore(1), SmoothGradParams.model_validate(
        {"samples": "auto", "reduce": "abs_sum"}), no_progress)
    np.testing.assert_allclose(auto.values, np.abs(w[1]).sum(axis=0), rtol=1e-5)
    e = auto.extras
    assert e["rounds"] == 1 and e["samples_used"] == 16 == e["backward_passes"]
    assert e["converged"] and auto.model_calls == 16


def test_smoothgrad_auto_runs_to_the_cap_when_the_threshold_is_out_of_reach(
    tmp_path: Path,
) -> None:
    model = loaded(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    img = image()
    params = SmoothGradParams.model_validate(
        {"samples": "auto", "noise": 1.0, "agreement": 0.999, "max_samples": 48}
    )
    a = smoothgrad(model, img, ClassScore(0), params, no_progress)
    e = a.extras
    assert e["samples_used"] == 48 and e["rounds"] > 1 and not e["converged"]
    assert e["agreement"] < 0.999 and e["max_samples"] == 48
    b = smoothgrad(model, img, ClassScore(0), params, no_progress)
    np.testing.assert_array_equal(a.values, b.values)
