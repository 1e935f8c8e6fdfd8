"""The time-series codec: wire formats, refusals with codes, layouts, masks, baselines."""

from __future__ import annotations

import io
import json

import numpy as np
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from api_schemas.modalities.time_series import TimeSeriesInputBody, TimeSeriesManifest
from engine.errors import InvalidManifest
from engine.modalities import codec_for
from engine.modalities.time_series import (
    InvalidSeries,
    SeriesInput,
    TimeSeriesCodec,
    check_series_graph,
    series_baseline,
)
from lantern_testing.series import linear_series, series_manifest, spike_cnn


def npy(a: np.ndarray) -> bytes:
    buf = io.BytesIO()
    np.save(buf, a)
    return buf.getvalue()


def codec(length: int = 4, channels: int = 2, layout: str = "NCT", **kw: object) -> TimeSeriesCodec:
    c = codec_for(series_manifest(length, channels, layout, **kw))
    assert isinstance(c, TimeSeriesCodec)
    return c


def test_json_body_bare_array_and_npy_decode_alike() -> None:
    values = [[1.0, 2.0, 3.0, 4.0], [0.5, 0, -1, 2]]
    c = codec()
    a = c.decode(json.dumps({"values": values}).encode()).values
    b = c.decode(json.dumps(values).encode()).values
    d = c.decode(npy(np.asarray(values, np.float64))).values
    e = c.decode(npy(np.asarray(values, np.int16))).values
    for got in (a, b, d, e):
        assert got.dtype == np.float32 and got.shape == (2, 4)
    np.testing.assert_array_equal(a, np.asarray(values, np.float32))
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a, d)
    np.testing.assert_array_equal(np.rint(a), e)


def test_one_flat_list_is_one_channel() -> None:
    item = codec(channels=1).decode(b"[1, 2, 3, 4]")
    assert item.values.shape == (1, 4)
    item = codec(channels=1).decode(npy(np.arange(4.0)))
    np.testing.assert_array_equal(item.values[0], [0, 1, 2, 3])


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (b"[]", "empty"),
        (b'{"values": []}', "empty"),
        (b"[[]]", "empty"),
        (b"not json", "not_json"),
        (b'{"values": [1, 2, 3, 4], "x": 1}', "not_numbers"),
        (b'"abc"', "not_numbers"),
        (b'[[1, 2, "3", 4], [1, 2, 3, 4]]', "not_numbers"),
        (b"[[1, 2, true, 4], [1, 2, 3, 4]]", "not_numbers"),
        (b"[[1, 2, null, 4], [1, 2, 3, 4]]", "not_numbers"),
        (b"[[1, 2, 3, 4], [1, 2, 3]]", "ragged"),
        (b"[[1, 2, 3, 4], 5]", "ragged"),
        (b"[[1, 2, 3, 4]]", "wrong_channels"),
        (b"[[1, 2, 3, 4], [1, 2, 3, 4], [1, 2, 3, 4]]", "wrong_channels"),
        (b"[[1, 2, 3], [1, 2, 3]]", "wrong_length"),
        (b"[[1, 2, 3, 4, 5], [1, 2, 3, 4, 5]]", "wrong_length"),
        (b"[[1, 2, 3, 1e400], [1, 2, 3, 4]]", "not_json"),  # orjson refuses overflow
        (b"[[1, 2, 3, NaN], [1, 2, 3, 4]]", "not_json"),
        (b"[[1, 2, 3, 1e39], [1, 2, 3, 4]]", "non_finite"),  # beyond float32
    ],
)
def test_bad_json_is_refused_with_a_reason(data: bytes, reason: str) -> None:
    with pytest.raises(InvalidSeries) as e:
        codec().validate(data)
    assert e.value.code == "invalid_series"
    assert e.value.status == 422
    assert e.value.details["reason"] == reason
    assert e.value.message.endswith(".")


@pytest.mark.parametrize(
    ("array", "reason"),
    [
        (np.array([[1.0, 2.0, np.nan, 4.0], [1, 2, 3, 4]]), "non_finite"),
        (np.array([[1.0, 2.0, np.inf, 4.0], [1, 2, 3, 4]]), "non_finite"),
        (np.array([["a", "b", "c", "d"], ["a", "b", "c", "d"]]), "not_numbers"),
        (np.array([[1 + 1j, 2, 3, 4], [1, 2, 3, 4]]), "not_numbers"),
        (np.zeros((2, 4, 1)), "wrong_channels"),
        (np.zeros((3, 4)), "wrong_channels"),
        (np.zeros((2, 5)), "wrong_length"),
        (np.zeros((2, 0)), "empty"),
    ],
)
def test_bad_npy_is_refused_with_a_reason(array: np.ndarray, reason: str) -> None:
    with pytest.raises(InvalidSeries) as e:
        codec().decode(npy(array))
    assert e.value.details["reason"] == reason


def test_nan_reports_where() -> None:
    with pytest.raises(InvalidSeries) as e:
        codec().decode(npy(np.array([[1.0, 2, 3, 4], [1, np.nan, 3, 4]])))
    assert (e.value.details["channel"], e.value.details["step"]) == (1, 1)


def test_object_npy_is_never_unpickled() -> None:
    buf = io.BytesIO()
    np.save(buf, np.array([{"a": 1}], dtype=object), allow_pickle=True)
    with pytest.raises(InvalidSeries) as e:
        codec().decode(buf.getvalue())
    assert e.value.details["reason"] == "bad_npy"
    with pytest.raises(InvalidSeries) as e:
        codec().decode(npy(np.zeros((2, 4)))[:20])  # truncated
    assert e.value.details["reason"] == "bad_npy"


def test_max_length_mode_takes_shorter_series() -> None:
    c = codec(length=6, channels=1, length_mode="max", min_length=3)
    assert c.decode(b"[1, 2, 3]").length == 3
    assert c.decode(b"[1, 2, 3, 4, 5, 6]").length == 6
    for bad in (b"[1, 2]", b"[1, 2, 3, 4, 5, 6, 7]"):
        with pytest.raises(InvalidSeries) as e:
            c.decode(bad)
        assert e.value.details["reason"] == "wrong_length"


def test_manifest_checks() -> None:
    with pytest.raises(ValidationError):
        series_manifest(4, 2, channel_names=["only-one"])
    with pytest.raises(ValidationError):
        series_manifest(4, 1, min_length=5)
    assert series_manifest(4, 2).names() == ["ch0", "ch1"]
    assert series_manifest(4, 2, channel_names=["x", "y"]).names() == ["x", "y"]


def test_input_body_refuses_strings_booleans_and_nan() -> None:
    ok = TimeSeriesInputBody.model_validate({"modality": "time_series", "values": [[1, 2.5]]})
    assert ok.values == [[1.0, 2.5]]
    for bad in (["1", 2], [True, 2], [float("nan"), 1.0]):
        with pytest.raises(ValidationError):
            TimeSeriesInputBody.model_validate({"modality": "time_series", "values": bad})


@pytest.mark.parametrize("layout", ["NCT", "NTC"])
def test_layout_and_masked_batch(layout: str) -> None:
    c = codec(layout=layout)
    x = np.arange(8, dtype=np.float32).reshape(1, 2, 4)
    mx = c.to_model_input(x)
    assert mx.shape == ((1, 2, 4) if layout == "NCT" else (1, 4, 2))
    np.testing.assert_array_equal(c.from_model_space(mx), x)
    xb = c.to_model_input(np.full((1, 2, 4), -1.0, np.float32))
    masks = np.array([[True, False, True, True]])  # (n, T): every channel alike
    out = c.masked_batch(mx, xb, masks, np.empty((1, *mx.shape[1:]), np.float32))
    want = x.copy()
    want[:, :, 1] = -1.0
    np.testing.assert_array_equal(c.from_model_space(out), want)
    per_channel = np.ones((1, 2, 4), np.float32)
    per_channel[0, 1, 3] = 0.25  # blend: 0.25·x + 0.75·(−1)
    out = c.masked_batch(mx, xb, per_channel, np.empty((1, *mx.shape[1:]), np.float32))
    want = x.copy()
    want[0, 1, 3] = 0.25 * 7 - 0.75
    np.testing.assert_allclose(c.from_model_space(out), want)
    assert c.item_input(SeriesInput(x[0])).shape == mx.shape


def test_baselines_by_hand() -> None:
    v = np.array([[0.0, 2.0, 4.0, 10.0]], np.float32)
    np.testing.assert_array_equal(series_baseline(v, "zero"), np.zeros((1, 4)))
    np.testing.assert_array_equal(series_baseline(v, "mean"), np.full((1, 4), 4.0))
    np.testing.assert_allclose(series_baseline(v, "linear"), [[0.0, 10 / 3, 20 / 3, 10.0]])
    # moving average of 3 with edges repeated: [0,0,2,4,10,10] -> [2/3, 2, 16/3, 8]
    np.testing.assert_allclose(series_baseline(v, "blur", 1.0), [[2 / 3, 2.0, 16 / 3, 8.0]])


def _session(model: object) -> ort.InferenceSession:
    return ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])  # type: ignore[attr-defined]


@pytest.mark.parametrize("layout", ["NCT", "NTC"])
def test_check_graph_accepts_matching_manifests(layout: str) -> None:
    sess = _session(spike_cnn(32, layout))
    found = check_series_graph(sess, series_manifest(32, 1, layout))
    assert (found.input_name, found.output_name, found.num_classes) == ("x", "logits", 2)


@pytest.mark.parametrize(
    ("manifest", "words"),
    [
        (dict(length=31), "length"),
        (dict(channels=2), "channels"),
        (dict(layout="NTC"), "channels"),  # (N, 1, 32) read as NTC: 32 channels
        (dict(labels=["a", "b", "c"]), "labels"),
    ],
)
def test_check_graph_refuses_mismatches(manifest: dict[str, object], words: str) -> None:
    sess = _session(spike_cnn(32))
    base = {"modality": "time_series", "name": "m", "labels": ["a", "b"], "length": 32}
    with pytest.raises(InvalidManifest) as e:
        check_series_graph(sess, TimeSeriesManifest.model_validate({**base, **manifest}))
    assert words in e.value.message


def test_linear_model_channels_check() -> None:
    sess = _session(linear_series(np.ones((3, 5))))
    assert check_series_graph(sess, series_manifest(5, 3)).num_classes == 2
