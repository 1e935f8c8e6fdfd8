"""The tabular codec (rows by name or position, typed refusals, one-hot input), training
statistics from CSV and Parquet (lime's quartile bins, shap's k-means background), and the
graph checks at registration."""

from __future__ import annotations

import io
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api_schemas.modalities.tabular import TabularManifest
from engine.errors import InvalidManifest, InvalidModel
from engine.modalities import tabular_sample
from engine.modalities.tabular import (
    InvalidRow,
    InvalidTrainingSample,
    TabularCodec,
    TrainingSampleTooLarge,
)
from engine.modalities.tabular_sample import (
    kmeans_background,
    numeric_statistics,
    read_columns,
    sample_matrix,
    statistics_of,
    with_statistics,
)
from engine.models.store import ModelStore
from lantern_testing.tabular import linear_data, numeric_manifest, skl_onnx, with_stats

MIXED: dict[str, Any] = {
    "name": "mixed",
    "modality": "tabular",
    "labels": ["no", "yes"],
    "features": [
        {"name": "age"},
        {"name": "city", "type": "categorical", "values": ["Lyon", "Paris", "Nice"]},
        {"name": "member", "type": "boolean"},
        {"name": "income", "nullable": True},
    ],
}
CSV = (
    "age,city,member,income,label\n"
    "30,Lyon,true,1000,1\n41,Paris,false,,0\n52,Nice,1,3000,1\n23,Paris,0,1500,0\n"
    "35,Lyon,yes,2500,1\n60,Paris,no,4000,0\n"
)


def mixed(encoding: str = "ordinal") -> TabularManifest:
    m = TabularManifest.model_validate({**MIXED, "encoding": encoding})
    return with_statistics(m, CSV.encode())


def decode(row: Any, manifest: TabularManifest | None = None) -> Any:
    codec = TabularCodec(manifest or mixed())
    return codec.decode(json.dumps({"row": row}).encode())


def test_a_row_by_name_and_by_position_is_the_same_vector() -> None:
    a = decode({"income": 1200.5, "age": 40, "city": "Nice", "member": True})
    b = decode([40, "Nice", True, 1200.5])
    np.testing.assert_array_equal(a.values, [40.0, 2.0, 1.0, 1200.5])
    np.testing.assert_array_equal(a.values, b.values)
    assert a.shown(1) == "Nice" and a.shown(2) == "true" and a.shown(3) == "1200"


def test_a_nullable_feature_takes_null_as_nan() -> None:
    row = decode({"age": 40, "city": "Nice", "member": False, "income": None})
    assert np.isnan(row.values[3]) and row.shown(3) == "null"


@pytest.mark.parametrize(
    ("row", "reason", "feature"),
    [
        ({"age": 1, "city": "Nice", "member": True}, "missing_column", "income"),
        ({"age": 1, "city": "Nice", "member": True, "income": 1, "zip": 3}, "extra_column", "zip"),
        ({"age": 1, "city": "Rome", "member": True, "income": 1}, "unknown_category", "city"),
        ({"age": "old", "city": "Nice", "member": True, "income": 1}, "wrong_type", "age"),
        ({"age": True, "city": "Nice", "member": True, "income": 1}, "wrong_type", "age"),
        ({"age": 1, "city": 2, "member": True, "income": 1}, "wrong_type", "city"),
        ({"age": 1, "city": "Nice", "member": "yes", "income": 1}, "wrong_type", "member"),
        ({"age": None, "city": "Nice", "member": True, "income": 1}, "missing_value", "age"),
        ([1, "Nice", True], "wrong_length", None),
        ("1,2,3", "not_a_row", None),
    ],
)
def test_bad_rows_are_refused_with_a_reason(row: Any, reason: str, feature: str | None) -> None:
    with pytest.raises(InvalidRow) as e:
        decode(row)
    assert e.value.status == 422 and e.value.code == "invalid_row"
    assert e.value.details["reason"] == reason
    if feature is not None:
        assert e.value.details["feature"] == feature
        assert feature in e.value.message


def test_onehot_encoding_spreads_a_category_over_its_columns() -> None:
    codec = TabularCodec(mixed("onehot"))
    assert codec.width == 6
    x = codec.item_input(decode([40, "Paris", True, 7.0], mixed("onehot")))
    np.testing.assert_array_equal(x, [[40, 0, 1, 0, 1, 7]])
    assert x.dtype == np.float32


def test_statistics_of_a_csv_sample() -> None:
    st = mixed().statistics
    assert st is not None and st.rows == 6
    age, city, member, income = st.features
    x = np.array([30, 41, 52, 23, 35, 60], np.float64)
    assert age.mean == pytest.approx(x.mean()) and age.std == pytest.approx(x.std())
    assert age.quartiles == pytest.approx(np.percentile(x, [25, 50, 75]).tolist())
    assert city.frequencies == pytest.approx([2 / 6, 3 / 6, 1 / 6]) and city.mean == 1
    assert member.frequencies == pytest.approx([3 / 6, 3 / 6])
    # the empty income cell is left out of its statistics
    assert income.mean == pytest.approx(np.mean([1000, 3000, 1500, 2500, 4000]))
    assert sum(w for w in st.background_weights) == 6


def test_quartile_bins_are_lime_s() -> None:
    # as lime.discretize.QuartileDiscretizer computes them (means/stds/mins/maxs per bin)
    x = np.random.default_rng(3).gamma(2.0, size=500)
    s = numeric_statistics(x)
    qts = np.percentile(x, [25, 50, 75])
    disc = np.searchsorted(qts, x)
    assert s.bins is not None and len(s.bins) == 4
    for b, stats in enumerate(s.bins):
        sel = x[disc == b]
        assert stats.frequency == pytest.approx(sel.size / x.size)
        assert stats.mean == pytest.approx(sel.mean()) and stats.std == pytest.approx(sel.std())
    assert [b.min for b in s.bins] == pytest.approx([x.min(), *qts])
    assert [b.max for b in s.bins] == pytest.approx([*qts, x.max()])
    # a column of few distinct values has fewer (distinct) quartiles and bins
    s2 = numeric_statistics(np.array([0.0, 0.0, 0.0, 1.0, 1.0]))
    assert s2.quartiles == [0.0, 1.0] and s2.bins is not None and len(s2.bins) == 3


def test_kmeans_background_rounds_to_sample_values() -> None:
    x = np.random.default_rng(0).normal(size=(200, 3))
    centres, weights = kmeans_background(x, 10)
    assert centres.shape == (10, 3) and weights.sum() == 200
    for j in range(3):
        assert np.isin(centres[:, j], x[:, j]).all()
    small, w = kmeans_background(x[:4], 10)  # fewer rows than k
    assert small.shape[0] == 4 and w.sum() == 4


def test_parquet_sample_gives_the_csv_statistics() -> None:
    import pyarrow as pa  # a run-time dependency (Parquet training samples)
    import pyarrow.parquet as pq
    table = pa.table(
        {
            "age": [30, 41, 52, 23, 35, 60],
            "city": ["Lyon", "Paris", "Nice", "Paris", "Lyon", "Paris"],
            "member": [True, False, True, False, True, False],
            "income": [1000.0, None, 3000.0, 1500.0, 2500.0, 4000.0],
        }
    )
    buf = io.BytesIO()
    pq.write_table(table, buf)
    m = TabularManifest.model_validate(MIXED)
    from_parquet = with_statistics(m, buf.getvalue(), "train.parquet").statistics
    assert from_parquet == mixed().statistics


@pytest.mark.parametrize(
    ("csv", "what"),
    [
        ("age,city,member\n1,Lyon,true\n", "no column 'income'"),
        ("age,city,member,income\nx,Lyon,true,1\n", "takes a number"),
        ("age,city,member,income\n1,Rome,true,1\n", "not one of the feature's values"),
        ("age,city,member,income\n1,Lyon,maybe,1\n", "true or false"),
        ("age,city,member,income\n,Lyon,true,1\n", "not nullable"),
        ("age,city,member,income\n1,Lyon\n", "cells"),
        ("age,city,member,income\n", "no rows"),
        ("", "empty"),
    ],
)
def test_bad_training_samples_are_refused(csv: str, what: str) -> None:
    m = TabularManifest.model_validate(MIXED)
    with pytest.raises(InvalidTrainingSample) as e:
        with_statistics(m, csv.encode())
    assert e.value.code == "invalid_training_sample" and what in e.value.message


def test_a_sample_over_the_row_limit_is_413(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(tabular_sample, "MAX_SAMPLE_ROWS", 3)
    with pytest.raises(TrainingSampleTooLarge) as e:
        read_columns(CSV.encode())
    assert e.value.status == 413


def test_extra_sample_columns_are_ignored() -> None:
    m = TabularManifest.model_validate(MIXED)
    x = sample_matrix(m, read_columns(CSV.encode()))
    assert x.shape == (6, 4)


def test_registration_checks_the_graph(tmp_path: Path) -> None:
    from sklearn.linear_model import LogisticRegression

    x, y = linear_data([1.0, -1.0, 0.5])
    lr = LogisticRegression().fit(x, y)
    store = ModelStore(tmp_path / "m")
    m = with_stats(numeric_manifest("lr", 3), x)
    info = store.add(skl_onnx(lr, 3), m)
    assert info.output == "probabilities" and info.manifest.statistics is not None
    # ZipMap probabilities: refused with the option that fixes it
    from skl2onnx import to_onnx
    from skl2onnx.common.data_types import FloatTensorType

    zipmap = to_onnx(lr, initial_types=[("input", FloatTensorType([None, 3]))],
                     target_opset={"": 17, "ai.onnx.ml": 3}).SerializeToString()
    with pytest.raises(InvalidModel, match="zipmap"):
        store.add(zipmap, m.model_copy(update={"name": "zm"}))
    with pytest.raises(InvalidManifest, match="columns"):
        store.add(skl_onnx(lr, 3), with_stats(numeric_manifest("wide", 4), np.c_[x, x[:, :1]]))
    with pytest.raises(InvalidManifest, match="training statistics"):
        store.add(skl_onnx(lr, 3), numeric_manifest("nostats", 3))
    with pytest.raises(InvalidManifest, match="labels"):
        store.add(skl_onnx(lr, 3), with_stats(numeric_manifest("lab", 3, labels=["a"]), x))


def test_statistics_must_match_the_features() -> None:
    m = numeric_manifest("m", 2)
    x = np.random.default_rng(0).normal(size=(20, 2))
    st = statistics_of(m, x).model_dump()
    with pytest.raises(ValueError, match="describe 2 features"):
        TabularManifest.model_validate(
            {**numeric_manifest("m3", 3).model_dump(), "statistics": st}
        )


def test_several_rows_as_json_or_csv() -> None:
    from engine.modalities.tabular import TabularRows

    codec = TabularCodec(mixed())
    rows = codec.decode(json.dumps({"row": None, "rows": [
        [40, "Nice", True, 1.0], {"age": 50, "city": "Lyon", "member": False, "income": None},
    ]}).encode())
    assert isinstance(rows, TabularRows) and rows.values.shape == (2, 4)
    csv = b"city,age,member,income\nNice,40,true,1\nLyon,50,no,\n"
    from_csv = codec.decode(csv)
    assert isinstance(from_csv, TabularRows)
    np.testing.assert_array_equal(from_csv.values, rows.values)
    assert codec.item_input(from_csv).shape == (2, 4)
    one = codec.decode(b"age,city,member,income\n40,Nice,1,1\n")
    assert not isinstance(one, TabularRows) and one.values.tolist() == [40, 2, 1, 1]


@pytest.mark.parametrize(
    ("data", "reason", "row"),
    [
        (b"age,city,member,income\n40,Rome,true,1\n", "unknown_category", 1),
        (b"age,city,member,income\n40,Nice,true,1\nx,Nice,true,1\n", "wrong_type", 2),
        (b"age,city,member,zip\n40,Nice,true,1\n", "missing_column", 1),
        (b"age,city,member,income\n40,Nice\n", "wrong_length", None),
        (b"just one line\n", "not_a_row", None),
    ],
)
def test_bad_csv_rows_name_the_row(data: bytes, reason: str, row: int | None) -> None:
    with pytest.raises(InvalidRow) as e:
        TabularCodec(mixed()).decode(data)
    assert e.value.details["reason"] == reason
    if row is not None:
        assert e.value.details["row"] == row and f"Row {row}" in e.value.message


def test_too_many_rows_are_refused() -> None:
    from api_schemas.modalities.tabular import MAX_ROWS

    with pytest.raises(InvalidRow) as e:
        TabularCodec(mixed()).decode_rows([[40, "Nice", True, 1.0]] * (MAX_ROWS + 1))
    assert e.value.details["reason"] == "too_many_rows"


def test_a_nullable_category_keeps_codes_in_the_background() -> None:
    m = TabularManifest.model_validate({
        **MIXED,
        "features": [*MIXED["features"][:1],
                     {"name": "city", "type": "categorical", "values": ["Lyon", "Paris", "Nice"],
                      "nullable": True},
                     *MIXED["features"][2:]],
    })
    csv = CSV.replace("52,Nice", "52,").replace("60,Paris", "60,")
    st = with_statistics(m, csv.encode()).statistics
    assert st is not None and {r[1] for r in st.background} <= {0.0, 1.0, 2.0}


def test_inconsistent_statistics_are_refused() -> None:
    st = mixed().statistics
    assert st is not None
    bad = st.model_dump()
    bad["background"][0][1] = 7.0  # not a code of city
    with pytest.raises(ValueError, match="category codes"):
        TabularManifest.model_validate({**MIXED, "statistics": bad})
    bad = st.model_dump()
    bad["features"][1]["frequencies"] = [0.0, 0.0, 0.0]
    with pytest.raises(ValueError, match="distribution"):
        TabularManifest.model_validate({**MIXED, "statistics": bad})


def test_an_integer_beyond_a_double_is_refused() -> None:
    with pytest.raises(InvalidRow) as e:
        TabularCodec(mixed()).decode_row([10**400, "Nice", True, 1.0])
    assert e.value.details["reason"] == "missing_value"


def test_a_number_beyond_float32_is_refused() -> None:
    with pytest.raises(InvalidRow) as e:
        TabularCodec(mixed()).decode_row([1e39, "Nice", True, 1.0])
    assert e.value.details["reason"] == "out_of_range" and e.value.details["feature"] == "age"
