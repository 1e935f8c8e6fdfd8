"""Tabular methods against answers known by hand: a linear model exported with skl2onnx
(LIME and KernelSHAP recover the sign and rank of coefficient × (x − mean), KernelSHAP's
sum holds), the built-in MLP (IG's completeness, saliency = finite differences), the
built-in GBM (gradients refused, perturbation methods run), and LIME's sampling."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr

from api_schemas.objectives import ClassObjective
from engine.errors import UnsupportedModality, UnsupportedModel
from engine.explain import check_method, explain
from engine.methods.base import no_progress
from engine.methods.registry import get_method
from engine.methods.tabular.lime import Discretised, lime_samples
from engine.modalities.tabular import TabularRow
from engine.models.runtime import LoadedModel
from engine.objectives import ClassScore
from lantern_testing.tabular import (
    linear_data,
    load_tabular,
    numeric_manifest,
    skl_onnx,
    with_stats,
)

# coefficient × scale: 6, 4, 2.5, 1.5, 0.9, 0.5 (a row 1.5 std from the mean in every
# feature then has contributions of that rank)
COEF = [6.0, -2.0, 2.5, -0.5, 0.9, -0.25]
SCALES = [1.0, 2.0, 1.0, 3.0, 1.0, 2.0]


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, Any, np.ndarray]:
    """A logistic regression through skl2onnx with raw scores: class 1's output is
    coef · x + b, linear in the row."""
    from sklearn.linear_model import LogisticRegression

    x, y = linear_data(COEF, n=2000, scales=SCALES)
    lr = LogisticRegression(C=1e4, max_iter=1000).fit(x, y)
    m = with_stats(numeric_manifest("linear", len(COEF), scores="logits"), x)
    model = load_tabular(tmp_path_factory.mktemp("lin"), skl_onnx(lr, 6, raw_scores=True), m)
    return model, lr, x


def row_at(x: np.ndarray, z: list[float]) -> TabularRow:
    """A row ``z`` standard deviations from the training mean (each in an outer quartile
    bin, so "in the row's bin" moves the score by about coef · (x − mean))."""
    v = x.mean(axis=0) + np.asarray(z) * x.std(axis=0)
    return TabularRow(v.astype(np.float64), tuple(float(a) for a in v))


def run(model: LoadedModel, method: str, row: TabularRow, target: int = 1, **params: Any) -> Any:
    spec = get_method(method, "tabular")
    return explain(
        model, spec, row, ClassObjective(target=target), spec.parse_params(params), no_progress
    )


Z = [1.5, -1.5, 1.5, 1.5, -1.5, 1.5]


def expected(lr: Any, x: np.ndarray, row: TabularRow) -> np.ndarray:
    coef = lr.coef_[0]
    return coef * (row.values - x.mean(axis=0))


def test_lime_recovers_sign_and_rank_of_linear_contributions(linear: Any) -> None:
    model, lr, x = linear
    row = row_at(x, Z)
    out = run(model, "lime", row, score="logit")  # the raw score: linear in the row
    w = np.asarray(out.result.values, np.float64)
    want = expected(lr, x, row)
    assert np.array_equal(np.sign(w), np.sign(want))
    assert spearmanr(w, want).statistic >= 0.95
    assert spearmanr(np.abs(w), np.abs(want)).statistic >= 0.95
    assert out.result.extras["r2"] > 0.4  # binary "same bin" features: a coarse surrogate
    assert out.model_calls == 5000 and out.objective.describe()["score"] == "logit"


def test_kernel_shap_recovers_linear_contributions_and_sums(linear: Any) -> None:
    model, lr, x = linear
    row = row_at(x, Z)
    out = run(model, "kernel_shap", row, score="logit")
    e = out.result.extras
    phi = np.asarray(out.result.values, np.float64)
    assert abs(phi.sum() - (e["f_x"] - e["f_baseline"])) < 1e-3 and abs(e["sum_check"]) < 1e-3
    want = expected(lr, x, row)
    assert np.array_equal(np.sign(phi), np.sign(want))
    assert spearmanr(phi, want).statistic >= 0.95
    # 6 players: every coalition enumerated, so φ_j = coef_j · (x_j − E_bg[x_j]) exactly
    assert e["exact"] and e["players"] == 6
    bg = np.asarray(model.codec.stats.background)  # type: ignore[attr-defined]
    bw = np.asarray(model.codec.stats.background_weights)  # type: ignore[attr-defined]
    exact = lr.coef_[0] * (row.values - bw @ bg / bw.sum())
    np.testing.assert_allclose(phi, exact, atol=2e-3)


def test_kernel_shap_samples_with_many_players_and_still_sums(tmp_path: Path) -> None:
    from sklearn.ensemble import GradientBoostingClassifier

    coef = list(np.linspace(-2, 2, 14))
    x, y = linear_data(coef, n=500, seed=1)
    gbm = GradientBoostingClassifier(n_estimators=30, random_state=0).fit(x, y)
    model = load_tabular(tmp_path, skl_onnx(gbm, 14), with_stats(numeric_manifest("g", 14), x))
    row = TabularRow(x[3].astype(np.float64), tuple(x[3].tolist()))
    out = run(model, "kernel_shap", row, num_samples=500)
    e = out.result.extras
    assert not e["exact"] and e["num_samples"] == 500
    assert abs(e["sum_check"]) < 1e-3
    assert out.model_calls == 1 + 10 * 501  # the row, the background, 500 coalitions × 10


def test_lime_samples_follow_the_training_statistics(linear: Any) -> None:
    model, _, x = linear
    disc = Discretised.of(model.codec)  # type: ignore[arg-type]
    row = row_at(x, Z)
    z, s = lime_samples(disc, row.values, 20000, seed=7)
    assert z[0].all() and np.array_equal(s[0], row.values)
    # each feature's bin is drawn with the training frequencies (¼ each for quartiles)
    first = disc.discretise(row.values)
    assert abs(z[1:].mean() - 0.25) < 0.01
    for j in range(len(COEF)):
        q = disc.quartiles[j]
        assert q is not None
        bins = np.searchsorted(q, s[1:, j])
        assert np.array_equal(bins == first[j], z[1:, j].astype(bool))
        # values stay inside their bins, so inside the training range
        assert s[1:, j].min() >= x[:, j].min() - 1e-6 and s[1:, j].max() <= x[:, j].max() + 1e-6
    z2, s2 = lime_samples(disc, row.values, 20000, seed=7)
    assert np.array_equal(s, s2) and np.array_equal(z, z2)


def test_truncated_normal_is_scipy_s() -> None:
    from scipy.stats import truncnorm

    from engine.methods.tabular.lime import _truncnorm

    rng = np.random.default_rng(0)
    a = rng.uniform(-4, 3, 1000)
    b = a + rng.uniform(0.01, 5, 1000)
    u = rng.uniform(size=1000)
    loc, scale = rng.normal(size=1000), rng.uniform(0.1, 3, 1000)
    np.testing.assert_allclose(
        _truncnorm(u, a, b, loc, scale), truncnorm.ppf(u, a, b, loc=loc, scale=scale), atol=1e-7
    )


def test_categorical_features_are_sampled_by_frequency(tmp_path: Path) -> None:
    from sklearn.tree import DecisionTreeClassifier

    rng = np.random.default_rng(0)
    n = 3000
    cat = rng.choice(3, size=n, p=[0.6, 0.3, 0.1]).astype(np.float64)
    num = rng.normal(size=n)
    x = np.c_[num, cat]
    y = (cat == 2).astype(int)
    tree = DecisionTreeClassifier(max_depth=2).fit(x.astype(np.float32), y)
    m = numeric_manifest("cat", 2).model_dump()
    m["features"][1] = {"name": "c", "type": "categorical", "values": ["a", "b", "z"]}
    from api_schemas.modalities.tabular import TabularManifest

    manifest = with_stats(TabularManifest.model_validate(m), x)
    model = load_tabular(tmp_path, skl_onnx(tree, 2), manifest)
    row = model.codec.decode_row([0.1, "z"])  # type: ignore[attr-defined]
    _, s = lime_samples(Discretised.of(model.codec), row.values, 20000, 0)  # type: ignore[arg-type]
    assert abs((s[1:, 1] == 2).mean() - 0.1) < 0.01 and abs((s[1:, 1] == 0).mean() - 0.6) < 0.02
    out = run(model, "lime", row)
    w = dict(zip(model.codec.names, out.result.values.tolist(), strict=True))  # type: ignore[attr-defined]
    assert w["c"] > 0.5 and abs(w["f0"]) < 0.05  # being in category z is what decides
    fw = out.result.artifact("features")
    assert fw.conditions == ["f0 > 0.67", "c=z"] or fw.conditions[1] == "c=z"  # type: ignore[attr-defined]


@pytest.fixture(scope="module")
def builtin(tmp_path_factory: pytest.TempPathFactory) -> dict[str, LoadedModel]:
    from engine.gradients import GradientCache
    from engine.models.runtime import GraphIO, RuntimeOptions
    from engine.models.store import ModelStore
    from engine.models.zoo.registry import builtin_models

    d = tmp_path_factory.mktemp("zoo")
    store = ModelStore(d / "models")
    out = {}
    for b in builtin_models():
        if b.modality == "tabular":
            info = b.register(store, d / "zoo")
            out[info.name] = LoadedModel(
                info.name,
                info.version,
                store.path(info.name, info.version),
                info.manifest,
                RuntimeOptions(),
                GradientCache(d / "g"),
                io=GraphIO("input", info.output or ""),
            )
    return out


def held_out_row(i: int = 0) -> TabularRow:
    from engine.models.zoo.tabular import split

    _, xte, _, _ = split()
    return TabularRow(xte[i].astype(np.float64), tuple(float(v) for v in xte[i]))


def test_builtin_models_record_held_out_accuracy(builtin: dict[str, LoadedModel]) -> None:
    assert set(builtin) == {"breast-cancer-gbm", "breast-cancer-mlp"}
    for model in builtin.values():
        assert "held-out accuracy 9" in model.manifest.description
        assert model.outputs_probabilities


def test_mlp_integrated_gradients_complete(builtin: dict[str, LoadedModel]) -> None:
    out = run(
        builtin["breast-cancer-mlp"], "integrated_gradients", held_out_row(5), target=0, steps=256
    )
    e = out.result.extras
    attr = np.asarray(out.result.values, np.float64)
    assert abs(attr.sum() - (e["f_x"] - e["f_baseline"])) <= 0.02 * abs(e["f_x"] - e["f_baseline"])
    assert out.target_info()["label"] == "malignant"  # type: ignore[index]


def test_mlp_saliency_is_the_gradient(builtin: dict[str, LoadedModel]) -> None:
    model = builtin["breast-cancer-mlp"]
    row = held_out_row(5)
    g = np.asarray(run(model, "saliency", row, target=0).result.values, np.float64)
    obj = ClassScore(0, "probability", "malignant", activated=True)
    j = int(np.argmax(np.abs(g)))
    h = 1e-3 * max(abs(row.values[j]), 1e-2)
    up, down = row.values.copy(), row.values.copy()
    up[j] += h
    down[j] -= h
    f = obj.value(model.run(model.to_model_input(np.stack([up, down]))))
    assert (f[0] - f[1]) / (2 * h) == pytest.approx(g[j], rel=0.05, abs=1e-6)


def test_gbm_refuses_gradients_and_runs_perturbations(builtin: dict[str, LoadedModel]) -> None:
    model = builtin["breast-cancer-gbm"]
    with pytest.raises(UnsupportedModel, match="TreeEnsembleClassifier"):
        get_method("saliency", "tabular").check(None, model)
    row = held_out_row(1)
    for method in ("lime", "kernel_shap"):
        out = run(model, method, row, target="top1")
        assert out.result.values.shape == (30,)
        assert out.result.artifacts[0].axes == ["feature"]
        top = float(model.probabilities(model.run(model.codec.item_input(row)))[0].max())
        assert out.target_score == pytest.approx(top)  # no softmax of probabilities


def test_image_methods_refuse_a_tabular_model_naming_those_that_apply(
    builtin: dict[str, LoadedModel],
) -> None:
    model = builtin["breast-cancer-gbm"]
    with pytest.raises(UnsupportedModality) as e:
        check_method(get_method("grad_cam", "tabular"), model, ClassObjective(target=0))
    fits = e.value.details["methods"]
    assert {"lime", "kernel_shap", "saliency", "integrated_gradients"} <= set(fits)
    assert "grad_cam" not in fits and e.value.status == 422


def test_kept_draws_carry_nothing_of_an_earlier_row(linear: Any) -> None:
    # LIME keeps a model's draws per (count, seed): explaining a row after another gives
    # what explaining it first gives
    model, _, x = linear
    a, b = row_at(x, Z), row_at(x, [-z for z in Z])
    first_b = run(model, "lime", b, seed=11, num_samples=800).result.values
    run(model, "lime", a, seed=12, num_samples=800)
    again_a = run(model, "lime", a, seed=12, num_samples=800).result.values
    after_a = run(model, "lime", b, seed=11, num_samples=800).result.values
    np.testing.assert_array_equal(first_b, after_a)
    direct = lime_samples(Discretised.of(model.codec), a.values, 800, 12)  # type: ignore[arg-type]
    assert direct[1].shape == (800, 6) and np.isfinite(again_a).all()


def test_samples_beyond_the_value_limit_are_refused_before_running(
    linear: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    from engine.errors import InvalidParams
    from engine.methods.tabular import common

    model, _, _ = linear
    monkeypatch.setattr(common, "MAX_SAMPLE_VALUES", 6 * 1000)
    for method in ("lime", "kernel_shap"):
        spec = get_method(method, "tabular")
        spec.check(spec.parse_params({"num_samples": 1000}), model)
        with pytest.raises(InvalidParams) as e:
            spec.check(spec.parse_params({"num_samples": 1001}), model)
        assert e.value.details["most"] == 1000


def test_the_surrogate_is_scikit_learn_s_weighted_ridge() -> None:
    from sklearn.linear_model import Ridge

    from engine.methods.tabular.lime import ridge

    rng = np.random.default_rng(0)
    z = (rng.random((3000, 12)) < 0.3).astype(np.uint8)
    y = z @ rng.normal(size=12) + rng.normal(size=3000) * 0.1
    w = rng.random(3000)
    coef, intercept, r2, local = ridge(z, y, w, 1.0)
    ref = Ridge(alpha=1.0).fit(z.astype(float), y, sample_weight=w)
    np.testing.assert_allclose(coef, ref.coef_, atol=1e-9)
    assert intercept == pytest.approx(ref.intercept_, abs=1e-9)
    assert r2 == pytest.approx(ref.score(z.astype(float), y, sample_weight=w), abs=1e-9)
    assert local == pytest.approx(float(ref.predict(z[:1].astype(float))[0]), abs=1e-9)
