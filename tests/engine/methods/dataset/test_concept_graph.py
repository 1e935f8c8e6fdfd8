"""concept_graph on a tiny two-convolution model built here, over the planted dataset of
test_dataset_analyses (40 noisy 8×8 images, a bright red 2×2 square planted in 4).

conv1 (2×2): channel 0 fires on the red square only, 1 is the window's mean, 2 its green
sum; conv2 (1×1) mixes them with known weights, so each influence is a weight times a
channel's max (or min, for a negative weight) — computed here from the pixels with numpy,
not by the engine. The partial convolutions are checked by hand on literal numbers and
against scipy's correlate2d with strides, pads and dilations; the graph is the same as one
chunk, as many, and split across (inline) workers; a second class runs no forward pass;
bad layer lists are refused with a 422 saying why."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from pydantic import TypeAdapter
from scipy.signal import correlate2d

from api_schemas.models import ModelManifest
from api_schemas.objectives import ObjectiveRequest
from engine.artifact_types.graph import Graph
from engine.artifacts import Table, unpack
from engine.datasets.influence import (
    ConvLink,
    aggregate,
    default_layers,
    influence_model,
    partial_conv_max,
    partial_conv_top,
    relate,
    top_influences,
)
from engine.errors import Cancelled, InvalidInput, InvalidParams, UnknownLayer
from engine.methods.base import no_progress
from engine.methods.registry import get_method
from engine.objectives import resolve_objective
from jobs.runner import run_job
from jobs.runtime import Runtime
from jobs.store import JobRecord
from lantern.settings import Settings
from lantern_testing.models import manifest
from tests.engine.methods.dataset.test_dataset_analyses import InlineSplitter, N, images

W2 = np.asarray([[2.0, 1.0, -1.0], [0.0, 1.5, 1.0]], np.float32)  # conv2 (out, in)
B2 = np.asarray([0.0, -0.2], np.float32)


def two_conv_model() -> onnx.ModelProto:
    """a1 = ReLU(conv 2×2, 3 → 3): 0 = red window sum / 255 − 3, 1 = window mean / 255,
    2 = green window sum / 255; a2 = ReLU(conv 1×1 by W2, B2); logits over a max pool."""
    w1 = np.zeros((3, 3, 2, 2), np.float32)
    w1[0, 0] = 1.0 / 255.0
    w1[1] = 1.0 / (12 * 255.0)
    w1[2, 1] = 1.0 / 255.0
    b1 = np.asarray([-3.0, 0.0, 0.0], np.float32)
    fc = np.asarray([[0.0, 0.0], [10.0, 0.0]], np.float32)
    fb = np.asarray([1.0, 0.0], np.float32)
    g = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "w1", "b1"], ["c1"], kernel_shape=[2, 2],
                             name="conv1"),
            helper.make_node("Relu", ["c1"], ["a1"]),
            helper.make_node("Conv", ["a1", "w2", "b2"], ["c2"], kernel_shape=[1, 1],
                             name="conv2"),
            helper.make_node("Relu", ["c2"], ["a2"]),
            helper.make_node("GlobalMaxPool", ["a2"], ["pool"]),
            helper.make_node("Flatten", ["pool"], ["flat"]),
            helper.make_node("Gemm", ["flat", "fc", "fb"], ["logits"], transB=1),
        ],
        "two_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(v, k) for k, v in
         {"w1": w1, "b1": b1, "w2": W2[:, :, None, None].copy(), "b2": B2, "fc": fc,
          "fb": fb}.items()],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def rt_with(tmp_path: Path, **settings: Any) -> Runtime:
    rt = Runtime(Settings(data_dir=tmp_path, builtin_model=False, **settings))
    rt.models.add(two_conv_model().SerializeToString(),
                  ModelManifest.model_validate(manifest("two", 8, ["0", "1"])))
    rt.datasets.add_files("synthetic", images().items(), builtin=False)
    return rt


def analyse(rt: Runtime, target: int, progress: Any = no_progress, **params: Any) -> Any:
    model = rt.load("two")
    spec = get_method("concept_graph", "image")
    obj = resolve_objective(TypeAdapter(ObjectiveRequest).validate_python(
        {"kind": "class", "target": target}), model)
    return spec.fn(model, rt.datasets.reader("synthetic"), obj, spec.parse_params(params),
                   progress)


def graph_of(result: Any) -> Graph:
    g = next(a for a in result.artifacts if isinstance(a, Graph))
    assert isinstance(g, Graph)
    return g


# ---------------------------------------------------------------- the reference, by hand

def reference_layers(rt: Runtime) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """a1 (N, 3, 7, 7) from the pixels with numpy window sums; the ids; the labels."""
    reader = rt.datasets.reader("synthetic")
    model = rt.load("two")
    px = np.stack([model.codec.decode(reader.read(i)).pixels for i in range(N)]).astype(
        np.float64)  # (N, 8, 8, 3)

    def window_sum(ch: np.ndarray) -> np.ndarray:  # (N, 8, 8) -> (N, 7, 7)
        return ch[:, :-1, :-1] + ch[:, 1:, :-1] + ch[:, :-1, 1:] + ch[:, 1:, 1:]

    red = window_sum(px[..., 0])
    allc = sum(window_sum(px[..., c]) for c in range(3))
    green = window_sum(px[..., 1])
    a1 = np.stack([np.maximum(red / 255 - 3, 0), allc / (12 * 255), green / 255], axis=1)
    labels = [reader.classes[int(k)] for k in reader.labels]
    return a1, np.asarray(labels), reader.ids()


def reference_influence(a1: np.ndarray) -> np.ndarray:
    """(N, 2, 3): a 1×1 convolution's partial map of i into j is W2[j, i]·a1_i, so its max
    is W2[j, i]·max(a1_i) for a positive weight, W2[j, i]·min(a1_i) for a negative one."""
    mx = a1.reshape(N, 3, -1).max(axis=2)
    mn = a1.reshape(N, 3, -1).min(axis=2)
    w = W2.astype(np.float64)[None]
    return np.where(w >= 0, w * mx[:, None, :], w * mn[:, None, :])


def test_partial_convolution_by_hand() -> None:
    x = np.zeros((1, 2, 3, 3), np.float32)
    x[0, 0, 0, 0], x[0, 0, 1, 1], x[0, 1, 2, 2] = 1, 2, 3
    w = np.zeros((1, 2, 2, 2), np.float32)
    w[0, 0] = [[1, 0], [0, 1]]
    w[0, 1, 1, 1] = -1

    def link(**kw: Any) -> ConvLink:
        base: dict[str, Any] = {
            "lower": "x", "upper": "y", "conv": "c", "input": "x", "weight": w,
            "strides": (1, 1), "dilations": (1, 1), "pads": (0, 0, 0, 0),
            "auto_pad": "NOTSET", "via": (), "after": ()}
        return ConvLink(**{**base, **kw})

    # channel 0 at (0,0): 1·1 + 2·1 = 3 (elsewhere 0 or 2); channel 1: −3 at (1,1), else 0
    np.testing.assert_array_equal(partial_conv_max(x, link()), [[[3, 0]]])
    np.testing.assert_array_equal(partial_conv_max(x, link(pads=(1, 1, 1, 1))), [[[3, 0]]])
    np.testing.assert_array_equal(partial_conv_max(x, link(strides=(2, 2))), [[[3, 0]]])
    # dilation 2: one position, taps (0,0),(0,2),(2,0),(2,2): 1·1 + 0 and −1·3
    np.testing.assert_array_equal(partial_conv_max(x, link(dilations=(2, 2))), [[[1, -3]]])
    idx, val = top_influences(partial_conv_max(x, link(dilations=(2, 2))), 2)
    assert idx.tolist() == [[[0, 1]]] and val.tolist() == [[[1, -3]]]
    counts, sums = aggregate(idx, val, 2)
    assert counts.tolist() == [[1, 0]] and sums.tolist() == [[1.0, 0.0]]  # −3 not counted


@pytest.mark.parametrize(("kernel", "stride", "pads", "dilation", "auto"), [
    ((3, 2), (1, 1), (0, 0, 0, 0), (1, 1), "NOTSET"),
    ((3, 2), (2, 1), (1, 0, 2, 1), (1, 1), "NOTSET"),
    ((3, 2), (1, 2), (1, 1, 1, 1), (2, 1), "NOTSET"),
    ((3, 2), (2, 2), None, (1, 1), "SAME_UPPER"),
    ((3, 2), (1, 1), None, (1, 1), "VALID"),
    ((1, 1), (1, 1), (0, 0, 0, 0), (1, 1), "NOTSET"),  # 1×1: the closed form
    ((1, 1), (2, 2), (1, 0, 0, 1), (1, 1), "NOTSET"),
    ((1, 1), (3, 2), None, (1, 1), "SAME_LOWER"),
])
def test_partial_convolutions_match_scipy_and_sum_to_the_convolution(
        kernel: tuple[int, int], stride: tuple[int, int],
        pads: tuple[int, int, int, int] | None, dilation: tuple[int, int], auto: str) -> None:
    """Each (j, i): scipy's correlate2d of the padded channel with the (dilated) kernel
    slice, subsampled by the stride, maximised; summed over i (plus the bias) the maps are
    ONNX Runtime's Conv output."""
    import onnxruntime as ort

    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    w = rng.standard_normal((4, 3, *kernel)).astype(np.float32)
    bias = rng.standard_normal(4).astype(np.float32)
    attrs: dict[str, Any] = {"strides": list(stride), "dilations": list(dilation)}
    if pads is not None:
        attrs["pads"] = list(pads[:2]) + list(pads[2:])  # (top, left, bottom, right)
    else:
        attrs["auto_pad"] = auto
    g = helper.make_graph(
        [helper.make_node("Conv", ["x", "w", "b"], ["y"], **attrs)], "c",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, [2, 3, 7, 6])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(bias, "b")])
    proto = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    proto.ir_version = 8
    y = ort.InferenceSession(proto.SerializeToString(),
                             providers=["CPUExecutionProvider"]).run(None, {"x": x})[0]
    link = ConvLink("x", "y", "c", "x", w, stride, dilation, pads, auto, (), ())
    top, left, bottom, right = link.padding(7, 6)
    got = partial_conv_max(x, link)
    total = np.zeros(y.shape, np.float64)
    for j in range(4):
        for i in range(3):
            k = np.zeros(((kernel[0] - 1) * dilation[0] + 1, (kernel[1] - 1) * dilation[1] + 1))
            k[:: dilation[0], :: dilation[1]] = w[j, i]
            for n in range(2):
                xp = np.pad(x[n, i].astype(np.float64), ((top, bottom), (left, right)))
                m = correlate2d(xp, k, mode="valid")[:: stride[0], :: stride[1]]
                assert m.shape == y.shape[2:]
                total[n, j] += m
                assert got[n, j, i] == pytest.approx(m.max(), rel=1e-5, abs=1e-5)
    np.testing.assert_allclose(total + bias[None, :, None, None], y, rtol=1e-4, atol=1e-4)
    # the same maxima from ONNX Runtime: Summit's depthwise convolution, reduced by max
    extra = influence_model(proto, [link])
    (maps,) = ort.InferenceSession(extra.SerializeToString(),
                                   providers=["CPUExecutionProvider"]).run(None, {"x": x})
    np.testing.assert_allclose(maps.reshape(2, 3, 4).transpose(0, 2, 1), got, rtol=1e-5,
                               atol=1e-5)


def test_top_influences_are_a_stable_sorts_first_k() -> None:
    rng = np.random.default_rng(9)
    v = rng.integers(-3, 4, (5, 6, 11)).astype(np.float32)  # many ties
    for k in (1, 3, 10, 11, 20):
        idx, val = top_influences(v, k)
        order = np.argsort(-v, axis=2, kind="stable")[:, :, : min(k, 11)]
        np.testing.assert_array_equal(idx, order)
        np.testing.assert_array_equal(val, np.take_along_axis(v, order, axis=2))


def test_top_influences_image_by_image_and_in_position_chunks(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.datasets.influence as influence

    rng = np.random.default_rng(5)
    x = np.maximum(rng.standard_normal((3, 6, 5, 5)), 0).astype(np.float32)
    w = rng.standard_normal((7, 6, 3, 3)).astype(np.float32)
    link = ConvLink("x", "y", "c", "x", w, (1, 1), (1, 1), (1, 1, 1, 1), "NOTSET", (), ())
    whole = partial_conv_max(x, link)
    idx, val = partial_conv_top(x, link, 4)
    ref_idx, ref_val = top_influences(whole, 4)
    np.testing.assert_array_equal(idx, ref_idx)
    np.testing.assert_array_equal(val, ref_val)
    assert idx.shape == (3, 7, 4)
    # a large pair: 4 of the 25 positions a matmul, 1 image an im2col, top-k image by image
    monkeypatch.setattr(influence, "MAX_VALUES", 6 * 7 * 4)
    np.testing.assert_allclose(partial_conv_max(x, link), whole, rtol=1e-6, atol=1e-6)
    _, v2 = partial_conv_top(x, link, 4)
    np.testing.assert_allclose(v2, val, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------- the analysis

def test_the_graph_is_the_hand_computed_one(tmp_path: Path) -> None:
    rt = rt_with(tmp_path, dataset_chunk_images=9)
    a1, labels, _ = reference_layers(rt)
    infl = reference_influence(a1)
    for target in (0, 1):
        result = analyse(rt, target, nodes_per_layer=3, top_channels=1, top_influences=2,
                         edges_per_node=3)
        g = graph_of(result)
        members = np.flatnonzero(labels == str(target))
        n = len(members)
        assert result.extras["class_images"] == n == (37 if target == 0 else 3)
        assert g.layers == ["a1", "a2"]
        # activation aggregation of a1: each image's top channel by max, counted
        mx = a1[members].reshape(n, 3, -1).max(axis=2)
        count = np.bincount(mx.argmax(axis=1), minlength=3)
        mean = mx.mean(axis=0)
        got = {nd["channel"]: nd for nd in g.nodes if nd["layer"] == "a1"}
        assert sorted(got) == [0, 1, 2]
        for c in range(3):
            assert got[c]["count"] == count[c]
            assert got[c]["mean"] == pytest.approx(mean[c], rel=1e-5)
        order = [nd["channel"] for nd in g.nodes if nd["layer"] == "a1"]
        assert order == sorted(range(3), key=lambda c: (-count[c], -mean[c], c))
        # influence aggregation: top-2 inputs per image and output channel, positive ones
        expected: dict[tuple[str, str], tuple[int, float]] = {}
        for j in range(2):
            for m in members:
                for i in np.argsort(-infl[m, j], kind="stable")[:2]:
                    if infl[m, j, i] > 0:
                        c0, s0 = expected.get((f"a1:{i}", f"a2:{j}"), (0, 0.0))
                        expected[(f"a1:{i}", f"a2:{j}")] = (c0 + 1, s0 + infl[m, j, i])
        got_edges = {(e["source"], e["target"]): e for e in g.edges}
        assert set(got_edges) == set(expected)
        for key, (c, s) in expected.items():
            assert got_edges[key]["count"] == c
            assert got_edges[key]["weight"] == pytest.approx(c / n)
            assert got_edges[key]["influence"] == pytest.approx(s / c, rel=1e-5)
        # edges join consecutive layers only, from the input side
        assert all(e["source"].startswith("a1:") and e["target"].startswith("a2:")
                   for e in g.edges)
    # by hand for the planted class: conv2's channel 0 is driven by the square's channel
    # (2·max a1_0 ≥ 2·(4·225/255 − 3) > 1 > any other input) in all 3 images; channel 2
    # never counts for it (weight −1 times a non-negative min); channel 0 never drives
    # channel 1 (weight 0)
    edges = {(e["source"], e["target"]): e for e in g.edges}
    assert edges[("a1:0", "a2:0")]["count"] == 3 and edges[("a1:0", "a2:0")]["weight"] == 1
    assert ("a1:2", "a2:0") not in edges and ("a1:0", "a2:1") not in edges
    top = next(nd for nd in g.nodes if nd["id"] == "a1:0")
    assert top["image"] == "1/03.png" and top["box"] == [1, 2, 3, 4]  # the 255 square
    patch = g.patches[top["patch"]]
    assert patch.shape == (32, 32, 3) and tuple(patch[0, 0]) == (255, *patch[0, 0][1:])
    table = next(a for a in result.artifacts if isinstance(a, Table))
    assert len(table.rows) == 3 + 2  # every channel of both layers


def test_top_node_of_the_last_layer_by_mean(tmp_path: Path) -> None:
    rt = rt_with(tmp_path)
    a1, labels, _ = reference_layers(rt)
    members = np.flatnonzero(labels == "0")
    infl_w = W2.astype(np.float64)
    a2 = np.maximum(np.einsum("ji,nihw->njhw", infl_w, a1) + B2[None, :, None, None], 0)
    class_mean = a2[members].reshape(len(members), 2, -1).max(axis=2).mean(axis=0)
    g = graph_of(analyse(rt, 0, rank_by="mean"))
    last = [nd for nd in g.nodes if nd["layer"] == "a2"]
    assert last[0]["channel"] == int(np.argmax(class_mean))
    assert last[0]["score"] == pytest.approx(class_mean.max(), rel=1e-5)


def test_one_chunk_equals_many_chunks_and_a_second_class_runs_no_pass(tmp_path: Path
                                                                      ) -> None:
    answers = []
    for chunk in (N, 7, 1):
        rt = rt_with(tmp_path / str(chunk), dataset_chunk_images=chunk)
        r = analyse(rt, 0)
        assert r.model_calls == 2 * N  # the cache's pass and the influence pass
        g = graph_of(r)
        answers.append((g.nodes, g.edges, g.patches.tobytes()))
        again = analyse(rt, 1)
        assert again.model_calls == 0  # another class: both read from the shards
    assert answers[0] == answers[1] == answers[2]


def test_onnx_runtime_and_numpy_paths_agree(tmp_path: Path) -> None:
    """3×3 pairs (digits-cnn's) go to ONNX Runtime (Summit's depthwise Conv added to the
    model), 1×1 ones to numpy's closed form; each path gives the other's maxima."""
    from engine.datasets.influence import ort_partial_max, ort_plan, resolve_layers

    rt = Runtime(Settings(data_dir=tmp_path / "d", builtin_models=["digits-cnn"]))
    rt.ensure_builtin()
    digits = rt.load("digits-cnn")
    links = resolve_layers(digits, None)
    by_ort, by_numpy, batch = ort_plan(digits, links)
    assert by_ort == links and not by_numpy and 1 <= batch <= digits.options.max_batch
    reader = rt.datasets.reader("digits")
    px = np.stack([digits.codec.decode(reader.read(i)).pixels for i in range(40)])
    x = digits.to_model_input(px.astype(np.float32))
    values = digits.probe(x, [ln.input for ln in links])[: len(links)]
    for ln, m, v in zip(links, ort_partial_max(digits, x, links, 7), values, strict=True):
        np.testing.assert_allclose(m, partial_conv_max(v, ln), rtol=1e-4, atol=1e-4)
    two = rt_with(tmp_path / "two")
    model = two.load("two")
    (link,) = resolve_layers(model, None)
    assert ort_plan(model, [link])[1] == [link]  # a 1×1 pair: numpy
    px = np.stack([model.codec.decode(two.datasets.reader("synthetic").read(i)).pixels
                   for i in range(N)])
    x = model.to_model_input(px.astype(np.float32))
    (a1,) = model.probe(x, ["a1"])[:1]
    (m,) = ort_partial_max(model, x, [link], 16)
    np.testing.assert_allclose(partial_conv_max(a1, link), m, rtol=1e-6, atol=1e-6)


def _job(rt: Runtime, job_id: str, params: dict[str, Any]) -> None:
    info = rt.datasets.get("synthetic")
    rt.jobs.create_job(JobRecord(
        id=job_id, model="two", version=rt.models.get("two").version, method="concept_graph",
        params=params, objective={"kind": "class", "target": 0}, input=None,
        dataset={"name": info.name, "version": info.version, "images": info.count},
        cost=info.count,
    ))


def _stored_graph(rt: Runtime, job_id: str) -> Graph:
    packed = rt.jobs.get_artifacts(job_id)
    assert packed is not None
    artifacts, views = unpack(packed)
    assert views.get("png") == "graph"
    g = next(a for a in artifacts if isinstance(a, Graph))
    assert isinstance(g, Graph)
    return g


def test_split_job_equals_one_run(tmp_path: Path) -> None:
    params = {"nodes_per_layer": 2}
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
    a, b = _stored_graph(split, "j"), _stored_graph(whole, "j")
    assert (a.nodes, a.edges, a.patches.tobytes()) == (b.nodes, b.edges, b.patches.tobytes())
    assert rec.model_calls == 2 * N


def test_progress_and_cancel_keep_the_shards_done(tmp_path: Path) -> None:
    rt = rt_with(tmp_path, dataset_chunk_images=10)
    reports: list[float] = []

    def cancel_late(f: float) -> None:
        reports.append(f)
        if len(reports) == 6:  # 4 activation shards, then the second influence shard
            raise Cancelled()

    with pytest.raises(Cancelled):
        analyse(rt, 0, cancel_late)
    assert reports == sorted(reports) and reports[3] == pytest.approx(0.475)
    rest = analyse(rt, 0)
    assert rest.model_calls == 20  # the two influence shards left
    seen: list[float] = []
    again = analyse(rt, 0, seen.append)
    assert again.model_calls == 0 and graph_of(again).edges == graph_of(rest).edges


# ---------------------------------------------------------------- refusals

def _graph(nodes: list[Any], inits: dict[str, np.ndarray]) -> onnx.ModelProto:
    g = helper.make_graph(
        nodes, "g", [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, 8, 8])],
        [helper.make_tensor_value_info("out", TensorProto.FLOAT, None)],
        [numpy_helper.from_array(v, k) for k, v in inits.items()])
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def skip_and_depthwise() -> onnx.ModelProto:
    """conv c1 → r1; conv c2 → r2; s = r1 + r2 (a skip connection); conv c5 of s → r5;
    conv c3 (depthwise, group 4) of s → r3; pool p = MaxPool(r3); conv c4 reads p → r4."""
    rng = np.random.default_rng(0)
    w = {k: rng.standard_normal(s).astype(np.float32) for k, s in {
        "w1": (4, 3, 1, 1), "w2": (4, 4, 3, 3), "w3": (4, 1, 3, 3), "w4": (2, 4, 1, 1),
        "w5": (3, 4, 1, 1)}.items()}
    return _graph([
        helper.make_node("Conv", ["input", "w1"], ["c1"]),
        helper.make_node("Relu", ["c1"], ["r1"]),
        helper.make_node("Conv", ["r1", "w2"], ["c2"], pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c2"], ["r2"]),
        helper.make_node("Add", ["r1", "r2"], ["s"]),
        helper.make_node("Conv", ["s", "w5"], ["c5"]),  # a full conv of the block's output
        helper.make_node("Relu", ["c5"], ["r5"]),
        helper.make_node("Conv", ["s", "w3"], ["c3"], group=4, pads=[1, 1, 1, 1]),
        helper.make_node("Relu", ["c3"], ["r3"]),
        helper.make_node("MaxPool", ["r3"], ["p"], kernel_shape=[2, 2], strides=[2, 2]),
        helper.make_node("Conv", ["p", "w4"], ["c4"]),
        helper.make_node("Relu", ["c4"], ["r4"]),
        helper.make_node("GlobalAveragePool", ["r4"], ["out"]),
    ], w)


@pytest.mark.parametrize(("lower", "upper", "reason"), [
    ("r2", "r3", "grouped_convolution"),
    ("s", "r3", "grouped_convolution"),
    ("r2", "r4", "not_consecutive"),  # r4's conv reads a pool of the depthwise block
    ("c1", "r1", "no_convolution"),
    ("r1", "s", "upper_from_Add"),
    ("r3", "r1", "not_consecutive"),
    ("r1", "r5", "not_consecutive"),  # c5 reads the sum, not r1 alone
    ("r2", "r5", "not_consecutive"),
])
def test_unrelated_pairs_are_refused(lower: str, upper: str, reason: str) -> None:
    with pytest.raises(InvalidParams) as err:
        relate(skip_and_depthwise(), lower, upper)
    assert err.value.details["reason"] == reason
    assert lower in err.value.message or upper in err.value.message


def test_related_pairs_and_the_default_chain() -> None:
    proto = skip_and_depthwise()
    link = relate(proto, "r1", "r2")
    assert (link.conv, link.input, link.via, link.after) == ("c2", "r1", (), ("Relu",))
    pooled = relate(proto, "r3", "r4")  # through the MaxPool: channels kept
    assert pooled.input == "p" and pooled.via == ("MaxPool",)
    assert relate(proto, "c1", "r2").via == ("Relu",)  # the pre-activation layer
    assert relate(proto, "s", "r5").conv == "c5"  # the block's output, read by a full conv
    assert default_layers(proto) == ["r3", "r4"]  # back from the last conv to the block
    assert default_layers(two_conv_model()) == ["a1", "a2"]


def test_bad_layer_lists_are_refused_at_submit(tmp_path: Path) -> None:
    rt = rt_with(tmp_path)
    model = rt.load("two")
    spec = get_method("concept_graph", "image")
    with pytest.raises(UnknownLayer):
        spec.check(spec.parse_params({"layers": ["a1", "nope"]}), model)
    with pytest.raises(InvalidParams) as err:
        spec.check(spec.parse_params({"layers": ["a2", "a1"]}), model)
    assert err.value.details["reason"] == "not_consecutive"
    with pytest.raises(InvalidParams):
        spec.check(spec.parse_params({"layers": ["a1", "a1"]}), model)
    with pytest.raises(InvalidParams) as err:
        spec.check(spec.parse_params({"layers": ["c1", "a1"]}), model)
    assert err.value.details["reason"] == "no_convolution"
    spec.check(spec.parse_params({"layers": ["c1", "a2"]}), model)  # pre-activation: fine
    with pytest.raises(Exception) as short:  # a single layer: a pydantic refusal
        spec.parse_params({"layers": ["a1"]})
    assert "layers" in str(short.value)
    with pytest.raises(InvalidInput):  # a class with no image
        _no_images(rt)


def _no_images(rt: Runtime) -> None:
    """Class 1 of the planted images all relabelled 0: no image is labelled 1."""
    reader_images = {k.replace("1/", "0/"): v for k, v in images().items()}
    rt.datasets.add_files("zeros", reader_images.items(), builtin=False)
    model = rt.load("two")
    spec = get_method("concept_graph", "image")
    obj = resolve_objective(TypeAdapter(ObjectiveRequest).validate_python(
        {"kind": "class", "target": 1}), model)
    spec.fn(model, rt.datasets.reader("zeros"), obj, spec.parse_params({}), no_progress)
