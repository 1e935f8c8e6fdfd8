"""Dataset analyses on a synthetic dataset built here: a tiny model whose channel 0 fires
only on a planted 2×2 bright square. max_activating returns exactly the planted images
first (scores computed by hand), min_activating the quietest; the answer is the same as one
chunk, as many chunks, and split across (inline) workers; a second analysis of the same
layer runs no forward pass; dataset_predictions' confusion cells are known."""

from __future__ import annotations

import io
import random
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from PIL import Image

from api_schemas.models import ModelManifest
from api_schemas.objectives import ChannelObjective
from engine.artifacts import ImageArtifact, Table, unpack
from engine.datasets.activations import ActivationCache, receptive_field
from engine.methods.base import no_progress
from engine.methods.registry import get_method
from engine.models.runtime import LoadedModel
from engine.objectives import resolve_objective
from jobs.runner import run_job
from jobs.runtime import Runtime
from jobs.split import Ranges, finish_round, run_chunk
from jobs.store import JobRecord
from lantern.settings import Settings
from lantern_testing.models import manifest

N = 40
#: image index -> (planted value, top-left y, x): channel 0's peak is 4·v/255 − 3 there
PLANTED = {3: (255, 1, 2), 11: (240, 5, 5), 17: (225, 0, 6), 29: (210, 4, 0)}


def planted_model() -> onnx.ModelProto:
    """act = ReLU(conv 2×2): channel 0 = sum of the red 2×2 window / 255 − 3 (fires only on
    a planted square: the background is ≤ 60), channel 1 = mean of the window / 255;
    logits = [1, 10 · max(act0)] over a global max pool."""
    w = np.zeros((2, 3, 2, 2), np.float32)
    w[0, 0] = 1.0 / 255.0
    w[1] = 1.0 / (12 * 255.0)
    b = np.asarray([-3.0, 0.0], np.float32)
    fc = np.asarray([[0.0, 0.0], [10.0, 0.0]], np.float32)
    fb = np.asarray([1.0, 0.0], np.float32)
    g = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w", "b"], ["pre"], kernel_shape=[2, 2]),
            helper.make_node("Relu", ["pre"], ["act"]),
            helper.make_node("GlobalMaxPool", ["act"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["flat"]),
            helper.make_node("Gemm", ["flat", "fc", "fb"], ["logits"], transB=1),
        ],
        "planted",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(v, k) for k, v in
         {"w": w, "b": b, "fc": fc, "fb": fb}.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def images() -> dict[str, bytes]:
    """40 noisy 8×8 images (0..60) in folders by label: "1" planted, "0" not — but image
    29, planted, is labelled "0" (the one off-diagonal cell)."""
    rng = np.random.default_rng(7)
    out: dict[str, bytes] = {}
    for i in range(N):
        px = rng.integers(0, 61, (8, 8, 3)).astype(np.uint8)
        if i in PLANTED:
            v, y, x = PLANTED[i]
            px[y : y + 2, x : x + 2, 0] = v
        label = "1" if i in PLANTED and i != 29 else "0"
        buf = io.BytesIO()
        Image.fromarray(px).save(buf, format="PNG")
        out[f"{label}/{i:02d}.png"] = buf.getvalue()
    return out


def rt_with(tmp_path: Path, **settings: Any) -> Runtime:
    rt = Runtime(Settings(data_dir=tmp_path, builtin_model=False, **settings))
    rt.models.add(planted_model().SerializeToString(),
                  ModelManifest.model_validate(manifest("planted", 8, ["0", "1"])))
    rt.datasets.add_files("synthetic", images().items(), builtin=False)
    return rt


def analyse(rt: Runtime, method: str, objective: dict[str, Any], **params: Any
            ) -> tuple[Any, LoadedModel]:
    model = rt.load("planted")
    spec = get_method(method, "image")
    from pydantic import TypeAdapter

    from api_schemas.objectives import ObjectiveRequest

    obj = resolve_objective(TypeAdapter(ObjectiveRequest).validate_python(objective), model)
    reader = rt.datasets.reader("synthetic")
    return spec.fn(model, reader, obj, spec.parse_params(params), no_progress), model


def ranking(result: Any) -> Table:
    return next(a for a in result.artifacts if a.name == "ranking")


def test_max_activating_returns_exactly_the_planted_images(tmp_path: Path) -> None:
    rt = rt_with(tmp_path, dataset_chunk_images=7)
    result, model = analyse(rt, "max_activating", {"kind": "channel", "layer": "act",
                                                   "channel": 0}, k=6)
    rows = ranking(result).rows
    top = [int(r[2].split("/")[1][:2]) for r in rows[:4]]
    assert top == [3, 11, 17, 29]  # the planted ones, strongest first
    expected = [4 * PLANTED[i][0] / 255 - 3 for i in top]
    np.testing.assert_allclose([r[4] for r in rows[:4]], expected, rtol=1e-5)
    assert [r[4] for r in rows[4:]] == [0.0, 0.0]  # nothing else fires
    for r in rows[:4]:
        i = int(r[2].split("/")[1][:2])
        _, y, x = PLANTED[i]
        assert (r[5], r[6]) == (y, x)  # the unit's strongest position: the square
        y0, x0, y1, x1 = r[7:11]
        assert (y1 - y0, x1 - x0) == (2, 2) and y0 <= y < y1 and x0 <= x < x1
    assert receptive_field(model, "act") == (2, 2)
    grid = next(a for a in result.artifacts if isinstance(a, ImageArtifact))
    assert grid.pixels.shape == (2 + 64 + 2, 6 * 66 + 2, 3)
    assert result.model_calls == N and result.extras["k"] == 6
    # the first tile is the planted square, scaled up: red 255 at its top-left
    assert tuple(grid.pixels[4, 4]) == (255, *grid.pixels[4, 4][1:])


def test_min_and_class_and_neuron_rankings_from_the_cache(tmp_path: Path) -> None:
    rt = rt_with(tmp_path, dataset_chunk_images=9)
    first, _ = analyse(rt, "max_activating", {"kind": "channel", "layer": "act", "channel": 1})
    assert first.model_calls == N
    low, _ = analyse(rt, "min_activating", {"kind": "channel", "layer": "act", "channel": 1},
                     k=3, reduce="mean")
    assert low.model_calls == 0  # the same layer: no forward pass
    scores = [r[4] for r in ranking(low).rows]
    assert scores == sorted(scores)
    cls, _ = analyse(rt, "max_activating", {"kind": "class", "target": 1}, k=4)
    assert cls.model_calls == 0  # the logits were cached with the layer
    assert sorted(int(r[2].split("/")[1][:2]) for r in ranking(cls).rows) == sorted(PLANTED)
    neuron, _ = analyse(rt, "max_activating",
                        {"kind": "neuron", "layer": "act", "channel": 0, "y": 5, "x": 5}, k=1)
    assert neuron.model_calls == N  # a new value to keep: one pass, then cached
    assert ranking(neuron).rows[0][2].endswith("/11.png")
    again, _ = analyse(rt, "max_activating",
                       {"kind": "neuron", "layer": "act", "channel": 0, "y": 5, "x": 5}, k=1)
    assert again.model_calls == 0


def test_one_chunk_equals_many_chunks(tmp_path: Path) -> None:
    answers = []
    for chunk in (N, 7, 1):
        rt = rt_with(tmp_path / str(chunk), dataset_chunk_images=chunk)
        r, _ = analyse(rt, "max_activating", {"kind": "channel", "layer": "act", "channel": 1},
                       k=10, reduce="mean")
        grid = next(a for a in r.artifacts if isinstance(a, ImageArtifact))
        answers.append((ranking(r).rows, grid.pixels.tobytes()))
    assert answers[0] == answers[1] == answers[2]


def test_memory_one_chunk_of_images_at_a_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch
                                              ) -> None:
    rt = rt_with(tmp_path, dataset_chunk_images=6)
    seen: list[int] = []
    original = LoadedModel.to_model_input

    def spy(self: LoadedModel, pixels: np.ndarray) -> np.ndarray:
        seen.append(pixels.shape[0])
        return original(self, pixels)

    monkeypatch.setattr(LoadedModel, "to_model_input", spy)
    analyse(rt, "max_activating", {"kind": "channel", "layer": "act", "channel": 0})
    assert max(seen) == 6 and sum(seen) == N


def test_dataset_predictions_confusion(tmp_path: Path) -> None:
    rt = rt_with(tmp_path, dataset_chunk_images=16)
    r, _ = analyse(rt, "dataset_predictions", {"kind": "class", "target": 0})
    per_class = next(a for a in r.artifacts if a.name == "per_class")
    assert per_class.rows == [[0, "0", 37, 36, 36 / 37], [1, "1", 3, 3, 1.0]]
    conf = next(a for a in r.artifacts if a.name == "confusion")
    assert conf.rows == [[36, 1], [0, 3]]
    cells = {(c[0], c[1]): c for c in next(a for a in r.artifacts if a.name == "cells").rows}
    assert cells[(0, 1)][4:] == [1, ["0/29.png"]]
    assert sorted(cells[(1, 1)][5]) == ["1/03.png", "1/11.png", "1/17.png"]
    assert r.extras["accuracy"] == pytest.approx(39 / 40)


class InlineSplitter:
    """Chunks drained here in a shuffled order (one delivered twice), then the assembly."""

    def __init__(self, rt: Runtime) -> None:
        self.rt = rt
        self.rng = random.Random(0)
        self.queue: list[tuple[str, str, int, int]] = []
        self.chunks = 0

    def submit_round(self, job_id: str, chunk_ranges: Ranges) -> None:
        order = list(chunk_ranges)
        self.rng.shuffle(order)
        self.chunks += len(order)
        self.queue += [("chunk", job_id, a, b) for a, b in [*order, order[0]]]

    def submit_assemble(self, job_id: str) -> None:
        self.queue.append(("assemble", job_id, 0, 0))

    def drain(self) -> None:
        while self.queue:
            kind, job_id, a, b = self.queue.pop(0)
            if kind == "chunk":
                run_chunk(self.rt, job_id, a, b, self)
            else:
                finish_round(self.rt, job_id, self)


def _job(rt: Runtime, job_id: str, method: str, objective: dict[str, Any]) -> None:
    info = rt.datasets.get("synthetic")
    rt.jobs.create_job(JobRecord(
        id=job_id, model="planted", version=rt.models.get("planted").version, method=method,
        params={"k": 5}, objective=objective, input=None,
        dataset={"name": info.name, "version": info.version, "images": info.count},
        cost=info.count,
    ))


def _stored(rt: Runtime, job_id: str) -> list[list[Any]]:
    packed = rt.jobs.get_artifacts(job_id)
    assert packed is not None
    artifacts, views = unpack(packed)
    assert views.get("png") == "grid"
    return next(a for a in artifacts if isinstance(a, Table)).rows


def test_split_job_equals_one_run_and_reuses_the_cache(tmp_path: Path) -> None:
    objective = {"kind": "channel", "layer": "act", "channel": 0}
    whole = rt_with(tmp_path / "whole", dataset_chunk_images=8)
    _job(whole, "j", "max_activating", objective)
    assert run_job(whole, "j") == "succeeded"
    split = rt_with(tmp_path / "split", dataset_chunk_images=8, split_min_samples=1,
                    split_chunk_samples=6)
    splitter = InlineSplitter(split)
    _job(split, "j", "max_activating", objective)
    assert run_job(split, "j", splitter) == "running"
    splitter.drain()
    rec = split.jobs.get_job("j")
    assert rec is not None and rec.state == "succeeded", rec
    assert splitter.chunks == 7  # 40 images in chunks of 6
    assert _stored(split, "j") == _stored(whole, "j")
    assert rec.model_calls == N == whole.jobs.get_job("j").model_calls  # type: ignore[union-attr]
    # a second analysis of the same layer, split too: no forward pass at all
    _job(split, "k", "min_activating", objective)
    assert run_job(split, "k", splitter) == "running"
    splitter.drain()
    rec2 = split.jobs.get_job("k")
    assert rec2 is not None and rec2.state == "succeeded" and rec2.model_calls == 0


def test_cache_is_per_model_and_dataset_version(tmp_path: Path) -> None:
    rt = rt_with(tmp_path)
    analyse(rt, "dataset_predictions", {"kind": "class", "target": 0})
    cache = rt.datasets.activations
    assert isinstance(cache, ActivationCache)
    model = rt.load("planted")
    version_dirs = list((cache.root / model.version).iterdir())
    assert [d.name for d in version_dirs] == [rt.datasets.get("synthetic").version]
    changed = images()
    changed["0/00.png"] = changed["0/01.png"]
    rt.datasets.add_files("synthetic", changed.items(), builtin=False)
    again, _ = analyse(rt, "dataset_predictions", {"kind": "class", "target": 0})
    assert again.model_calls == N  # a new dataset version: computed again


def test_cancel_between_chunks_keeps_the_shards_done(tmp_path: Path) -> None:
    """Progress is reported after every shard; a cancel there stops the extraction, and the
    shards already written are reused by the next run (only the rest is computed)."""
    from engine.errors import Cancelled

    rt = rt_with(tmp_path, dataset_chunk_images=10)
    model = rt.load("planted")
    spec = get_method("max_activating", "image")
    obj = resolve_objective(ChannelObjective(kind="channel", layer="act", channel=0), model)
    reports: list[float] = []

    def cancel_after_two(fraction: float) -> None:
        reports.append(fraction)
        if len(reports) == 2:
            raise Cancelled()

    reader = rt.datasets.reader("synthetic")
    with pytest.raises(Cancelled):
        spec.fn(model, reader, obj, spec.parse_params({}), cancel_after_two)
    cache = rt.datasets.activations
    from engine.methods.dataset.max_activating import targets

    assert len(cache.missing(model, reader, targets(model, obj, None))) == 2  # of 4
    result = spec.fn(model, reader, obj, spec.parse_params({"k": 4}), no_progress)
    assert result.model_calls == 20  # the two shards left
    assert [r[2] for r in ranking(result).rows] == ["1/03.png", "1/11.png", "1/17.png",
                                                    "0/29.png"]


def test_deleting_a_dataset_drops_its_activations(tmp_path: Path) -> None:
    rt = rt_with(tmp_path)
    analyse(rt, "dataset_predictions", {"kind": "class", "target": 0})
    model = rt.load("planted")
    version = rt.datasets.get("synthetic").version
    rt.datasets.add_files("twin", images().items(), builtin=False)  # same content
    rt.datasets.delete("synthetic")
    assert (rt.datasets.activations.root / model.version / version).is_dir()  # twin's
    rt.datasets.delete("twin")
    assert not (rt.datasets.activations.root / model.version / version).exists()
