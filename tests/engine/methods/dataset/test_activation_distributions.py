"""activation_distributions on the planted-pattern dataset of test_dataset_analyses (a tiny
model whose channel 0 fires only on a planted bright square): the planted channel ranks
first between the planted and the plain images; the statistics equal hand-computed ones
(Mann–Whitney U as AUROC, Cohen's d on the pooled sd, Benjamini–Hochberg q-values); the
histograms are numpy's; the input sets pick the images their rules say; one chunk, many
chunks and a job split across (inline) workers give identical answers; a second analysis of
a layer runs no forward pass; bad sets are refused with typed errors."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pydantic import ValidationError
from scipy.stats import norm

from engine.artifact_types.distributions import Distributions
from engine.artifacts import Table, pack, unpack
from engine.datasets.sets import SetSpec, resolve_sets, true_classes
from engine.errors import InvalidInput, InvalidParams, UnknownLabel, UnknownLayer
from engine.methods.dataset.activation_distributions import differences, histograms
from engine.methods.registry import get_method
from engine.render.registry import render
from jobs.runner import run_job
from jobs.runtime import Runtime
from jobs.store import JobRecord
from tests.engine.methods.dataset.test_dataset_analyses import (
    PLANTED,
    InlineSplitter,
    N,
    analyse,
    rt_with,
)

CLASS0 = {"kind": "class", "target": 0}


def number(image_id: str) -> int:
    return int(image_id.split("/")[1][:2])


def planted_sets(rt: Runtime) -> list[dict[str, Any]]:
    ids = rt.datasets.reader("synthetic").ids()
    return [{"ids": [i for i in ids if number(i) in PLANTED], "name": "planted"},
            {"ids": [i for i in ids if number(i) not in PLANTED], "name": "plain"}]


def parts(result: Any) -> tuple[Distributions, Table]:
    dist = next(a for a in result.artifacts if isinstance(a, Distributions))
    table = next(a for a in result.artifacts if a.name == "differences")
    return dist, table


def test_planted_channel_ranks_first_between_planted_and_plain(tmp_path: Path) -> None:
    rt = rt_with(tmp_path, dataset_chunk_images=7)
    result, _ = analyse(rt, "activation_distributions", CLASS0, layers="act",
                        sets=planted_sets(rt))
    dist, table = parts(result)
    top = table.rows[0]
    assert top[:3] == [1, "act", 0]  # rank 1: layer act, channel 0
    assert top[3] == 1.0  # AUROC: every planted image above every plain one
    assert top[8] < 0.05  # BH q-value
    assert top[6] == 0.0  # the plain images' mean of channel 0: it never fires
    assert dist.order[0] == 0 and dist.sets == ["planted", "plain"] and dist.sizes == [4, 36]
    assert result.extras["top_channel"]["channel"] == 0
    assert result.extras["compared"] == ["planted", "plain"]
    assert result.model_calls == N
    # by label ("1": three planted; "0": the rest and planted image 29): channel 0 first too
    by_label, _ = analyse(rt, "activation_distributions", CLASS0, layers=["act"],
                          sets=[{"by": "label", "value": "1"}, {"by": "label", "value": 0}])
    assert by_label.model_calls == 0  # the same layer: read from the cache
    assert parts(by_label)[1].rows[0][1:4] == ["act", 0, 1.0]


def test_statistics_against_hand_computed_values() -> None:
    a = np.asarray([[3.0, 1.0, 0.0], [5.0, 1.0, 0.0], [7.0, 2.0, 0.0]])
    b = np.asarray([[1.0, 1.0, 0.0], [2.0, 0.0, 0.0], [4.0, 1.0, 0.0], [6.0, 0.0, 0.0]])
    s = differences(a, b)
    # column 0: a beats b in 2 + 3 + 4 of 12 pairs
    assert s["auroc"][0] == pytest.approx(9 / 12)
    # two-sided p, normal approximation with continuity correction: U has mean 6 and
    # variance n1·n2·(n1+n2+1)/12 = 8 under the null
    z = (9 - 6 - 0.5) / np.sqrt(8.0)
    assert s["p"][0] == pytest.approx(2 * norm.sf(z))
    pooled = np.sqrt((2 * 4.0 + 3 * (14.75 / 3)) / 5)  # var a = 4, var b = 14.75 / 3
    assert s["d"][0] == pytest.approx((5.0 - 3.25) / pooled)
    assert (s["mean_a"][0], s["mean_b"][0]) == (5.0, 3.25)
    # column 1, with ties: a = 1, 1, 2 against b = 1, 0, 1, 0 — a tie counts a half
    assert s["auroc"][1] == pytest.approx((2 * (2 * 0.5 + 2) + 4) / 12)
    # column 2: all equal: no difference at all
    assert (s["auroc"][2], s["p"][2], s["d"][2]) == (0.5, 1.0, 0.0)
    # Benjamini–Hochberg by hand on the three p-values
    p = s["p"]
    order = np.argsort(p)
    m = len(p)
    q_sorted = np.minimum.accumulate((p[order] * m / np.arange(1, m + 1))[::-1])[::-1]
    expected = np.empty(m)
    expected[order] = np.minimum(q_sorted, 1.0)
    np.testing.assert_allclose(s["q"], expected)


def test_histograms_are_numpys(tmp_path: Path) -> None:
    rng = np.random.default_rng(3)
    values = np.concatenate([rng.normal(size=(50, 3)), np.full((50, 1), 2.5)], axis=1)
    values[7, 0] = values[:, 0].max() + 1.0  # one at the top edge exactly
    rt = rt_with(tmp_path)
    reader = rt.datasets.reader("synthetic")
    sets = resolve_sets([SetSpec(ids=reader.ids()[:13]), SetSpec(by="all")], reader, ["0", "1"])
    sub = values[:N]
    counts, edges = histograms(sub, sets, 9)
    for r in range(sub.shape[1]):
        for k, s in enumerate(sets):
            ref, ref_edges = np.histogram(sub[s.members, r], bins=9,
                                          range=(sub[:, r].min(), sub[:, r].max())
                                          if np.ptp(sub[:, r]) > 0 else None)
            np.testing.assert_array_equal(counts[r, k], ref)
            np.testing.assert_allclose(edges[r], ref_edges)
        assert counts[r, 1].sum() == N and counts[r, 0].sum() == 13
    assert edges[3, 0] == 2.0 and edges[3, -1] == 3.0  # a constant channel: value ± 0.5
    for block in (1, 90):  # a row at a time, two rows at a time: the same
        c2, e2 = histograms(sub.astype(np.float32), sets, 9, block=block)
        ref_c, ref_e = histograms(sub.astype(np.float32).astype(np.float64), sets, 9)
        np.testing.assert_array_equal(c2, ref_c)
        np.testing.assert_array_equal(e2, ref_e)


def test_sets_pick_what_their_rules_say(tmp_path: Path) -> None:
    rt = rt_with(tmp_path, dataset_chunk_images=16)
    reader = rt.datasets.reader("synthetic")
    labels = ["0", "1"]
    predicted = np.asarray([1 if number(i) in PLANTED else 0 for i in reader.ids()])
    ids = reader.ids()

    def members(*specs: dict[str, Any]) -> list[list[int]]:
        got = resolve_sets([SetSpec.model_validate(s) for s in specs], reader, labels,
                           lambda: predicted)
        return [sorted(number(ids[i]) for i in s.members) for s in got]

    assert members({"by": "incorrect"}) == [[29]]  # planted, labelled 0, predicted 1
    assert len(members({"by": "correct"})[0]) == N - 1
    assert members({"by": "prediction", "value": "1"},
                   {"by": "prediction", "value": 1, "name": "by index"}) == [
        sorted(PLANTED)] * 2  # by label name or by index
    assert members({"by": "label", "value": "1"}) == [[3, 11, 17]]
    assert members({"ids": [ids[5], ids[0]]}) == [sorted([number(ids[5]), number(ids[0])])]
    split = resolve_sets("by_prediction", reader, labels, lambda: predicted)
    assert [s.name for s in split] == ["prediction 0", "prediction 1"]
    assert [len(s) for s in resolve_sets("by_label", reader, labels)] == [37, 3]
    np.testing.assert_array_equal(true_classes(reader, labels) >= 0, np.ones(N, bool))
    # the analysis reads the same predictions from the cached logits
    r, _ = analyse(rt, "activation_distributions", CLASS0, layers="act",
                   sets=[{"by": "correct"}, {"by": "incorrect"}])
    assert [s["size"] for s in r.extras["sets"]] == [39, 1]


def test_refusals_are_typed(tmp_path: Path) -> None:
    rt = rt_with(tmp_path)
    reader = rt.datasets.reader("synthetic")
    labels = ["0", "1"]
    everything_right = true_classes(reader, labels)
    with pytest.raises(InvalidParams, match="holds no image"):
        resolve_sets([SetSpec(by="correct"), SetSpec(by="incorrect")], reader, labels,
                     lambda: everything_right)
    with pytest.raises(UnknownLabel, match="no label '7'"):
        analyse(rt, "activation_distributions", CLASS0, layers="act",
                sets=[{"by": "label", "value": "7"}])
    with pytest.raises(InvalidParams, match="not images of dataset"):
        analyse(rt, "activation_distributions", CLASS0, layers="act",
                sets=[{"ids": ["0/00.png", "nope.png"]}])
    with pytest.raises(InvalidParams, match="no set is called"):
        analyse(rt, "activation_distributions", CLASS0, layers="act",
                sets="by_label", compare=["label 0", "cats"])
    with pytest.raises(InvalidParams, match="called 'label 0'"):
        analyse(rt, "activation_distributions", CLASS0, layers="act",
                sets=[{"by": "label", "value": "0"}, {"by": "label", "value": "0"}])
    spec = get_method("activation_distributions", "image")
    model = rt.load("planted")
    with pytest.raises(UnknownLabel, match="no class 'cat'"):
        spec.check(spec.parse_params({"sets": [{"by": "prediction", "value": "cat"}]}), model)
    with pytest.raises(UnknownLayer):
        spec.check(spec.parse_params({"layers": ["nope"]}), model)
    with pytest.raises(InvalidParams, match="no set 5"):
        spec.check(spec.parse_params({"sets": [{"by": "all"}, {"by": "correct"}],
                                      "compare": [0, 5]}), model)
    for bad in ({"sets": [{"by": "label"}]}, {"sets": [{"by": "all", "ids": ["x"]}]},
                {"sets": [{"by": "correct", "value": "3"}]}, {"bins": 1}, {"sets": []},
                {"compare": [0]}, {"statistic": "median"}):
        with pytest.raises(ValidationError):
            spec.parse_params(bad)
    rt.datasets.add_files("unlabelled", [(f"{i}.png", b) for i, b in
                                         enumerate(dict(sorted(_images().items())).values())],
                          builtin=False)
    with pytest.raises(InvalidInput, match="no labels to split by"):
        spec.fn(model, rt.datasets.reader("unlabelled"), None,
                spec.parse_params({"layers": "act"}), lambda f: None)


def _images() -> dict[str, bytes]:
    from tests.engine.methods.dataset.test_dataset_analyses import images

    return images()


def _answer(result: Any) -> bytes:
    dist, table = parts(result)
    return render(dist, "json") + json.dumps(table.rows).encode() + render(dist, "png")


def test_one_chunk_equals_many_chunks(tmp_path: Path) -> None:
    answers = []
    for chunk in (N, 7, 1):
        rt = rt_with(tmp_path / str(chunk), dataset_chunk_images=chunk)
        r, _ = analyse(rt, "activation_distributions", CLASS0, layers="act", bins=8,
                       statistic="max", sets=[{"by": "all"}, *planted_sets(rt)],
                       compare=["planted", "plain"])
        answers.append(_answer(r))
    assert answers[0] == answers[1] == answers[2]


def test_split_job_equals_one_run(tmp_path: Path) -> None:
    def job(rt: Runtime) -> None:
        info = rt.datasets.get("synthetic")
        rt.jobs.create_job(JobRecord(
            id="j", model="planted", version=rt.models.get("planted").version,
            method="activation_distributions", params={"layers": ["act"], "bins": 6},
            objective=CLASS0, input=None,
            dataset={"name": info.name, "version": info.version, "images": info.count},
            cost=info.count,
        ))

    def stored(rt: Runtime) -> list[bytes]:
        packed = rt.jobs.get_artifacts("j")
        assert packed is not None
        artifacts, views = unpack(packed)
        assert views == {"png": "distributions"}
        return [render(a, "json") for a in artifacts]

    whole = rt_with(tmp_path / "whole", dataset_chunk_images=8)
    job(whole)
    assert run_job(whole, "j") == "succeeded"
    split = rt_with(tmp_path / "split", dataset_chunk_images=8, split_min_samples=1,
                    split_chunk_samples=6)
    splitter = InlineSplitter(split)
    job(split)
    assert run_job(split, "j", splitter) == "running"
    splitter.drain()
    rec = split.jobs.get_job("j")
    assert rec is not None and rec.state == "succeeded", rec
    assert splitter.chunks == 7 and rec.model_calls == N
    assert stored(split) == stored(whole)


def test_several_layers_and_the_artifact_round_trip(tmp_path: Path) -> None:
    rt = rt_with(tmp_path)
    analyse(rt, "max_activating", {"kind": "channel", "layer": "act", "channel": 0})
    r, _ = analyse(rt, "activation_distributions", CLASS0, layers=["act", "pre"],
                   sets=planted_sets(rt), rank_by="cohens_d")
    assert r.model_calls == N  # "pre" is new: one pass over the images for both layers
    dist, table = parts(r)
    assert dist.layers == ["act", "act", "pre", "pre"] and dist.channels == [0, 1, 0, 1]
    assert len(table.rows) == 4
    d = [abs(row[4]) for row in table.rows]
    assert d == sorted(d, reverse=True)  # ranked by |Cohen's d|
    again, _ = unpack(pack(r.artifacts, r.views))
    back = next(a for a in again if isinstance(a, Distributions))
    assert render(back, "json") == render(dist, "json")
    np.testing.assert_array_equal(np.load(__import__("io").BytesIO(render(dist, "npy"))),
                                  dist.counts)
    one, _ = analyse(rt, "activation_distributions", CLASS0, layers="act",
                     sets=[{"by": "all"}])
    assert [a.name for a in one.artifacts] == ["distributions"]  # one set: nothing ranked
    assert one.model_calls == 0


def test_the_output_as_a_layer_one_row_per_class(tmp_path: Path) -> None:
    """logits = [1, 10·max(act0)]: class 1's logit tells planted from plain, class 0's is
    the same for every image."""
    rt = rt_with(tmp_path)
    r, _ = analyse(rt, "activation_distributions", CLASS0, layers="logits",
                   sets=planted_sets(rt))
    dist, table = parts(r)
    assert dist.layers == ["logits", "logits"] and dist.order == [1, 0]
    assert table.rows[0][1:4] == ["logits", 1, 1.0]
    assert table.rows[1][1:4] == ["logits", 0, 0.5] and table.rows[1][7] == 1.0
    np.testing.assert_array_equal(dist.edges[0, [0, -1]], [0.5, 1.5])  # constant: 1 ± 0.5
    again, _ = analyse(rt, "activation_distributions", CLASS0, layers=["logits", "act"],
                       sets=planted_sets(rt))
    assert again.model_calls == N  # act is new
    by_label, _ = analyse(rt, "activation_distributions", CLASS0, layers="logits")
    assert by_label.model_calls == 0  # the logits were kept
