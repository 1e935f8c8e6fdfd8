"""The embedding analysis on the planted dataset of test_dataset_analyses (channel 0 of
``act`` fires only on a planted square): on the t-SNE and the UMAP map of ``act``'s max,
a fresh planted image lands among the planted ones (its nearest points in 2-D, and its
nearest images in the layer's space, are planted), a fresh plain one among the plain; the
placing request reuses the stored map (fits nothing, no forward pass over the dataset);
the same analysis as one chunk, as many chunks and split over (inline) workers gives
identical answers; bad params and images are refused with typed errors."""

from __future__ import annotations

import base64
import io
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from engine.artifact_types.embedding import Embedding
from engine.artifacts import pack, unpack
from engine.datasets.maps import MapStore
from engine.errors import InvalidImage, InvalidInput, InvalidObjective, InvalidParams
from engine.explain import check_method
from engine.methods.dataset.embedding import map_key
from engine.methods.registry import get_method
from engine.objectives import resolve_objective
from jobs import split
from jobs.runner import run_job
from jobs.store import JobRecord
from tests.engine.methods.dataset.test_dataset_analyses import (
    PLANTED,
    InlineSplitter,
    N,
    analyse,
    rt_with,
)

LAYER = {"kind": "layer_norm", "layer": "act"}


def png(px: np.ndarray) -> bytes:
    buf = io.BytesIO()
    Image.fromarray(px).save(buf, format="PNG")
    return buf.getvalue()


def fresh_images() -> list[str]:
    """Three images not in the dataset (base64): two planted (at new places, new values),
    one plain."""
    rng = np.random.default_rng(99)
    out = []
    for k in range(3):
        px = rng.integers(0, 61, (8, 8, 3)).astype(np.uint8)
        if k < 2:
            px[2 + k : 4 + k, 3:5, 0] = 235 - 10 * k
        out.append(base64.b64encode(png(px)).decode())
    return out


def planted_ids() -> set[str]:
    return {f"{'0' if i == 29 else '1'}/{i:02d}.png" for i in PLANTED}


def emb(result: Any) -> Embedding:
    a = result.artifacts[0]
    assert isinstance(a, Embedding)
    return a


@pytest.mark.parametrize("algorithm", ["tsne", "umap"])
def test_a_planted_image_lands_among_the_planted_ones(tmp_path: Path, algorithm: str) -> None:
    rt = rt_with(tmp_path, dataset_chunk_images=7)
    first, _ = analyse(rt, "embedding", LAYER, algorithm=algorithm, statistic="max")
    assert first.model_calls == N and first.extras["map"] == "fitted"
    base = emb(first)
    assert base.xy.shape == (N, 2) and np.isfinite(base.xy).all()
    assert first.extras["perplexity" if algorithm == "tsne" else "n_neighbors"] == (
        13.0 if algorithm == "tsne" else 15)  # t-SNE's 30 lowered to (40 - 1) / 3
    placing, _ = analyse(rt, "embedding", LAYER, algorithm=algorithm, statistic="max",
                         place=fresh_images(), neighbours=3)
    # the stored map, reused: nothing fitted, the placed images' passes only
    assert placing.extras["map"] == "reused" and placing.extras["fit_s"] == 0.0
    assert placing.model_calls == 3 and placing.extras["forward_passes"] == 0
    e = emb(placing)
    np.testing.assert_array_equal(e.xy, base.xy)  # the same map
    planted = np.asarray([i in planted_ids() for i in e.ids])
    assert planted.sum() == 4
    placed = e.placed()
    for p, expect_planted in enumerate([True, True, False]):
        d2 = ((e.xy.astype(np.float64) - e.placed_xy[p]) ** 2).sum(axis=1)
        nearest = np.argsort(d2, kind="stable")[:3]
        assert planted[nearest].tolist() == [expect_planted] * 3, (p, nearest)
        # its nearest images in the layer's space, listed with it
        assert [n["id"] in planted_ids() for n in placed[p]["neighbours"]] == [expect_planted] * 3
        assert placed[p]["prediction"] == ("1" if expect_planted else "0")
    d = [n["distance"] for n in placed[0]["neighbours"]]
    assert d == sorted(d)


def test_the_map_is_stored_per_layer_statistic_and_params(tmp_path: Path) -> None:
    rt = rt_with(tmp_path, dataset_chunk_images=16)
    r, model = analyse(rt, "embedding", LAYER, statistic="max", iterations=100)
    reader = rt.datasets.reader("synthetic")
    store = MapStore(rt.datasets.activations.root)
    spec = get_method("embedding", "image")
    obj = resolve_objective(_objective(LAYER), model)
    path = store.path(map_key(model, reader, obj, spec.parse_params(
        {"statistic": "max", "iterations": 100})))
    assert path.is_file()
    assert path.parent.parent.name == "@maps"
    assert path.is_relative_to(rt.datasets.activations.root / model.version / reader.version)
    # colouring is not a fitting param: the same map
    again, _ = analyse(rt, "embedding", LAYER, statistic="max", iterations=100,
                       colour_by="correct")
    assert again.extras["map"] == "reused" and again.model_calls == 0
    assert emb(again).colour_by == "correct"
    # another seed, statistic or layer: another map (the activations stay cached)
    for params, objective in [({"statistic": "max", "iterations": 100, "seed": 1}, LAYER),
                              ({"statistic": "mean", "iterations": 100}, LAYER),
                              ({"iterations": 100}, {"kind": "class", "target": 0})]:
        other, _ = analyse(rt, "embedding", objective, **params)
        assert other.extras["map"] == "fitted" and other.model_calls == 0, params
    assert emb(other).info_["layer"] == "output"  # the class objective: the logits
    assert len(list((path.parent.parent).rglob("*.pkl"))) == 4
    # a damaged file is fitted again (never a 500), and rewritten
    path.write_bytes(b"not a pickle")
    redone, _ = analyse(rt, "embedding", LAYER, statistic="max", iterations=100)
    assert redone.extras["map"] == "fitted"
    np.testing.assert_array_equal(emb(redone).xy, emb(r).xy)  # seeded: the same map
    # deleting the dataset deletes its maps with its activations
    rt.datasets.delete("synthetic")
    assert not path.exists()


def _objective(raw: dict[str, Any]) -> Any:
    from pydantic import TypeAdapter

    from api_schemas.objectives import ObjectiveRequest

    return TypeAdapter(ObjectiveRequest).validate_python(raw)


def _answer(result: Any) -> tuple[bytes, ...]:
    e = emb(result)
    return (e.xy.tobytes(), e.prediction.tobytes(), e.correct.tobytes(),
            e.placed_xy.tobytes(), e.neighbours.tobytes(), repr(e.ids).encode())


@pytest.mark.parametrize("algorithm", ["tsne", "umap"])
def test_one_chunk_equals_many_chunks(tmp_path: Path, algorithm: str) -> None:
    """Fresh data dirs (each fits its own map): one shard of 40, shards of 7, of 1."""
    answers = []
    for chunk in (N, 7, 1):
        rt = rt_with(tmp_path / str(chunk), dataset_chunk_images=chunk)
        r, _ = analyse(rt, "embedding", LAYER, algorithm=algorithm, statistic="mean",
                       iterations=200, place=fresh_images()[:1])
        assert r.extras["map"] == "fitted"
        answers.append(_answer(r))
    assert answers[0] == answers[1] == answers[2]


def _job(rt: Any, job_id: str, params: dict[str, Any]) -> None:
    info = rt.datasets.get("synthetic")
    rt.jobs.create_job(JobRecord(
        id=job_id, model="planted", version=rt.models.get("planted").version,
        method="embedding", params=params, objective=LAYER, input=None,
        dataset={"name": info.name, "version": info.version, "images": info.count},
        cost=info.count,
    ))


def _stored(rt: Any, job_id: str) -> Embedding:
    packed = rt.jobs.get_artifacts(job_id)
    assert packed is not None
    artifacts, views = unpack(packed)
    assert views.get("png") == "embedding"
    a = artifacts[0]
    assert isinstance(a, Embedding)
    return a


def test_split_over_workers_equals_one_run(tmp_path: Path) -> None:
    params = {"statistic": "max", "iterations": 150, "place": fresh_images()}
    whole = rt_with(tmp_path / "whole", dataset_chunk_images=8)
    _job(whole, "j", params)
    assert run_job(whole, "j") == "succeeded"
    split = rt_with(tmp_path / "split", dataset_chunk_images=8, split_min_samples=1,
                    split_chunk_samples=6)
    splitter = InlineSplitter(split)
    _job(split, "j", params)
    assert run_job(split, "j", splitter) == "running"
    splitter.drain()
    rec = split.jobs.get_job("j")
    assert rec is not None and rec.state == "succeeded", rec
    assert splitter.chunks == 7
    a, b = _stored(whole, "j"), _stored(split, "j")
    assert a.to_json() == b.to_json()
    assert rec.model_calls == N + 3


def test_a_split_job_cancelled_during_its_fit_stops_there(tmp_path: Path,
                                                           monkeypatch: pytest.MonkeyPatch
                                                           ) -> None:
    """The assembly of a split embedding fits the map: a cancel that arrives while t-SNE
    runs (here: at the fit's first progress report, after 50 of its iterations) stops the
    fit there; the job stays cancelled, with no result and no stored map."""
    rt = rt_with(tmp_path, dataset_chunk_images=8, split_min_samples=1, split_chunk_samples=6)
    reports: list[float] = []

    class CancelledWhileFitting(split.JobProgress):
        def __call__(self, fraction: float) -> None:
            reports.append(fraction)
            rt.jobs.update_job(self.job_id, state="cancelled")  # as DELETE /v1/jobs/{id}
            super().__call__(fraction)

    monkeypatch.setattr(split, "JobProgress", CancelledWhileFitting)
    splitter = InlineSplitter(rt)
    _job(rt, "j", {"statistic": "max", "iterations": 400})
    assert run_job(rt, "j", splitter) == "running"
    splitter.drain()
    rec = rt.jobs.get_job("j")
    assert rec is not None and rec.state == "cancelled", rec
    assert rt.jobs.get_artifacts("j") is None
    assert len(reports) == 1 and 0.99 <= reports[0] < 1.0  # one report: the fit stopped
    assert not list(rt.datasets.activations.root.rglob("*.pkl"))  # no map stored


def test_artifact_round_trip_and_json(tmp_path: Path) -> None:
    rt = rt_with(tmp_path, dataset_chunk_images=20)
    r, _ = analyse(rt, "embedding", LAYER, statistic="max", iterations=100,
                   place=fresh_images()[:2], colour_by="prediction")
    e = emb(r)
    (back,), _ = unpack(pack([e]))
    assert isinstance(back, Embedding) and back.to_json() == e.to_json()
    data = e.to_json()["data"]
    assert data["colour_by"] == "prediction" and data["dataset"] == "synthetic"
    assert len(data["points"]) == N and len(data["placed"]) == 2
    point = next(p for p in data["points"] if p["id"] == "0/29.png")
    # planted but labelled "0": predicted "1", so wrong
    assert (point["label"], point["prediction"], point["correct"]) == ("0", "1", False)
    assert {p["id"] for p in data["points"] if p["correct"] is False} == {"0/29.png"}
    assert sorted(p["index"] for p in data["points"]) == list(range(N))
    assert set(data["placed"][0]) == {"place", "name", "x", "y", "prediction", "neighbours"}
    assert e.shape == [N, 2] and e.axes == ["point", "xy"]


@pytest.mark.parametrize(
    ("params", "error"),
    [
        ({"algorithm": "pca"}, ValidationError),
        ({"statistic": "median"}, ValidationError),
        ({"perplexity": 1.0}, ValidationError),
        ({"perplexity": 500}, ValidationError),
        ({"n_neighbors": 1}, ValidationError),
        ({"iterations": 1}, ValidationError),
        ({"seed": -1}, ValidationError),
        ({"colour_by": "size"}, ValidationError),
        ({"place": ["aGk="] * 17}, ValidationError),
        ({"place": ["not base64!"]}, InvalidParams),
        ({"place": [base64.b64encode(b"plain text, not a picture").decode()]}, InvalidImage),
    ],
)
def test_bad_params_are_refused(tmp_path: Path, params: dict[str, Any], error: type) -> None:
    rt = rt_with(tmp_path)
    model = rt.load("planted")
    spec = get_method("embedding", "image")
    with pytest.raises(error):
        spec.check(spec.parse_params(params), model)


def test_bad_objectives_and_datasets_are_refused(tmp_path: Path) -> None:
    rt = rt_with(tmp_path)
    model = rt.load("planted")
    spec = get_method("embedding", "image")
    with pytest.raises(InvalidObjective):
        check_method(spec, model, _objective({"kind": "channel", "layer": "act", "channel": 0}))
    # every image gives the same logit 0 and ... an all-zero channel: nothing to embed
    plain = {f"0/{i:02d}.png": png(np.full((8, 8, 3), 10, np.uint8)) for i in range(8)}
    rt.datasets.add_files("flat", plain.items(), builtin=False)
    reader = rt.datasets.reader("flat")
    obj = resolve_objective(_objective(LAYER), model)
    with pytest.raises(InvalidInput, match="same for every image"):
        spec.fn(model, reader, obj, spec.parse_params({}), lambda f: None)
    rt.datasets.add_files("tiny", list(plain.items())[:3], builtin=False)
    with pytest.raises(InvalidInput, match="at least 5"):
        spec.fn(model, rt.datasets.reader("tiny"), obj, spec.parse_params({}), lambda f: None)
