"""Text methods against a linear TF-IDF model (skl2onnx, built here), hand-computed answers.

With ``norm=None`` the TF-IDF of a word does not depend on the other words, so the
decision score z(x) = b + Σ_w coef_w · tf_w(x) · idf_w is additive over the words: deleting
a word takes away exactly its term c_w = coef_w · tf_w · idf_w. Then occlusion's drop, the
exact Shapley value and a linear surrogate's coefficient are all c_w.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest
from scipy.stats import spearmanr

from api_schemas.modalities.text import TextManifest
from api_schemas.objectives import ClassObjective
from engine.artifacts import AttributionMap, Table
from engine.errors import UnsupportedModality
from engine.explain import check_method, explain
from engine.methods.base import no_progress
from engine.methods.registry import all_methods, get_method
from engine.models.runtime import GraphIO, LoadedModel, RuntimeOptions
from engine.models.zoo.sentiment_tfidf import text_pipeline_onnx
from engine.objectives import ClassScore

TRAIN = [
    "a good and wonderful film",
    "a bad and awful film",
    "great acting and a fine story",
    "boring story and poor acting",
    "wonderful great fun",
    "awful bad boring",
    "the film was good",
    "the film was bad",
    "fine and fun",
    "poor and boring",
    "a moving story",
    "a dull story",
    "superb film",
    "terrible film",
]
Y = [1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0, 1, 0]
TEXT = "A good film, good acting but a boring, poor story and a moving ending!"


def loaded(tmp: Path, name: str, data: bytes, **kw: Any) -> LoadedModel:
    m = TextManifest.model_validate(
        {"name": name, "modality": "text", "labels": ["neg", "pos"], **kw}
    )
    path = tmp / f"{name}.onnx"
    path.write_bytes(data)
    return LoadedModel(name, name, path, m, RuntimeOptions(), io=GraphIO("text", "probabilities"))


@pytest.fixture(scope="module")
def linear(tmp_path_factory: pytest.TempPathFactory) -> tuple[LoadedModel, Any]:
    data, pipe = text_pipeline_onnx(TRAIN, Y, raw_scores=True, norm=None)
    return loaded(tmp_path_factory.mktemp("text"), "lin", data, scores="logits"), pipe


def contributions(pipe: Any, words: list[str]) -> np.ndarray:
    """c_w = coef_w · tf_w · idf_w of each word of TEXT, by hand from the pipeline."""
    vec, clf = pipe.named_steps["vec"], pipe.named_steps["clf"]
    tokens = [t.lower() for t in __import__("re").findall(r"\w+", TEXT)]
    out = []
    for w in words:
        j = vec.vocabulary_.get(w.lower())
        out.append(0.0 if j is None else clf.coef_[0, j] * tokens.count(w.lower()) * vec.idf_[j])
    return np.asarray(out)


def run(model: LoadedModel, method: str, **params: Any) -> Any:
    spec = get_method(method, "text")
    item = model.codec.decode(b'{"text": "%s"}' % TEXT.encode())
    objective = ClassScore(index=1, score="logit", label="pos")
    return spec.fn(model, item, objective, spec.parse_params(params), no_progress), item


def test_model_is_additive(linear: tuple[LoadedModel, Any]) -> None:
    model, pipe = linear
    z = model.run(model.codec.to_model_input([TEXT]))[0, 1]
    np.testing.assert_allclose(z, pipe.decision_function([TEXT])[0], atol=1e-4)


def test_occlusion_is_the_hand_computed_drop(linear: tuple[LoadedModel, Any]) -> None:
    model, pipe = linear
    result, item = run(model, "occlusion")
    attr = result.artifacts[0]
    assert isinstance(attr, AttributionMap) and attr.axes == ["word"]
    assert attr.feature_names == item.words
    assert item.words[:4] == ["A", "good", "film", "acting"]
    np.testing.assert_allclose(attr.values, contributions(pipe, item.words), atol=1e-4)
    assert result.model_calls == 2 + item.n_features
    # the drop of each word is also f(x) minus the model on the text without it, by hand
    keep = np.ones(item.n_features, bool)
    keep[1] = False
    assert item.keep(keep) == "A  film,  acting but a boring, poor story and a moving ending!"
    f = model.run(model.codec.to_model_input([TEXT, item.keep(keep)]))[:, 1]
    assert attr.values[1] == pytest.approx(f[0] - f[1], abs=1e-5)
    table = result.artifacts[1]
    assert isinstance(table, Table)
    assert table.rows[1][:4] == [1, "good", 2, 6] and table.rows[3][:4] == [1, "good", 13, 17]


def test_kernel_shap_exact_and_sums(linear: tuple[LoadedModel, Any]) -> None:
    model, pipe = linear
    result, item = run(model, "kernel_shap", num_samples=100_000)
    assert item.n_features == 11 and result.extras["exact"]
    phi = result.artifacts[0].values
    np.testing.assert_allclose(phi, contributions(pipe, item.words), atol=1e-4)
    f_x, f_0 = result.extras["f_x"], result.extras["f_no_words"]
    assert abs(float(np.sum(phi, dtype=np.float64)) - (f_x - f_0)) < 1e-3
    assert abs(result.extras["sum_check"]) < 1e-9


def test_kernel_shap_sampled_sums(linear: tuple[LoadedModel, Any]) -> None:
    model, _ = linear
    result, _ = run(model, "kernel_shap", num_samples=200, seed=3)
    assert not result.extras["exact"] and result.extras["num_samples"] == 200
    phi = np.asarray(result.artifacts[0].values, np.float64)
    assert abs(phi.sum() - (result.extras["f_x"] - result.extras["f_no_words"])) < 1e-3


def test_lime_ranks_as_the_contributions(linear: tuple[LoadedModel, Any]) -> None:
    model, pipe = linear
    result, item = run(model, "lime", num_samples=2000)
    c = contributions(pipe, item.words)
    w = result.artifacts[0].values
    rho = spearmanr(w, c).statistic
    assert rho >= 0.95, (rho, w, c)
    # an additive model is fitted exactly by an unregularised surrogate
    exact, _ = run(model, "lime", num_samples=2000, alpha=0.0)
    np.testing.assert_allclose(exact.artifacts[0].values, c, atol=1e-3)
    assert exact.extras["r2"] > 0.9999
    assert result.extras["top_positive"][0] == item.words[int(np.argmax(c))]


def test_lime_is_seeded(linear: tuple[LoadedModel, Any]) -> None:
    model, _ = linear
    a, _ = run(model, "lime", num_samples=300, seed=5)
    b, _ = run(model, "lime", num_samples=300, seed=5, batch_size=7)
    np.testing.assert_array_equal(a.artifacts[0].values, b.artifacts[0].values)


def test_probability_model_through_explain(tmp_path: Path) -> None:
    """The default pipeline (l2 TF-IDF, probabilities): top1 and the target's score are
    the model's probability (no softmax of probabilities)."""
    data, pipe = text_pipeline_onnx(TRAIN, Y)
    model = loaded(tmp_path, "prob", data)
    spec = get_method("occlusion", "text")
    item = model.codec.item(TEXT)
    out = explain(
        model, spec, item, ClassObjective(target="top1"), spec.parse_params({}), no_progress
    )
    p = pipe.predict_proba([TEXT])[0]
    assert out.objective.index == int(np.argmax(p))
    assert out.target_score == pytest.approx(float(p.max()), abs=1e-5)
    assert out.result.extras["f_x"] == pytest.approx(float(p.max()), abs=1e-5)


def test_methods_say_their_modalities_and_image_methods_are_refused(
    linear: tuple[LoadedModel, Any],
) -> None:
    model, _ = linear
    text_methods = sorted(m.name for m in all_methods() if "text" in m.modalities)
    assert text_methods == ["kernel_shap", "lime", "occlusion"]
    for name in text_methods:
        assert get_method(name, "text").modalities == ("text",)
        assert "image" in get_method(name, "image").modalities
    with pytest.raises(UnsupportedModality) as e:
        check_method(get_method("grad_cam", "text"), model, ClassObjective(target=1))
    assert e.value.status == 422
    assert e.value.details["methods"] == text_methods
    assert "kernel_shap, lime, occlusion" in e.value.message
