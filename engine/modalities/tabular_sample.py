"""A tabular model's training statistics, from a training sample (CSV or Parquet).

What the statistics hold, and why:

* numeric features: mean, std, min, max, the distinct quartiles (``np.percentile`` at 25,
  50, 75 %, as the ``lime`` package's QuartileDiscretizer) and, for each bin they cut
  (``np.searchsorted``), the share of rows in it and their mean, std, min and max — LIME's
  sampling distribution (``training_data_stats``), so it runs from the statistics alone;
* categorical and boolean features: the frequency of each category;
* the sample summarised by k-means (``shap.kmeans``: scikit-learn's KMeans with
  ``random_state=0, n_init=10``, each centroid's value rounded to the nearest value the
  sample holds, weighted by its cluster's size): KernelSHAP's background.

A sample is bounded (``MAX_SAMPLE_BYTES``, ``MAX_SAMPLE_ROWS``); its columns are the
manifest's feature names in any order (other columns, such as a label, are ignored).
"""

from __future__ import annotations

import csv
import io
import math
import warnings
from typing import Any

import numpy as np
from numpy.typing import NDArray

from api_schemas.modalities.tabular import (
    FeatureStatistics,
    QuartileBin,
    TabularManifest,
    TabularStatistics,
)
from engine.modalities.tabular import InvalidTrainingSample, TrainingSampleTooLarge

MAX_SAMPLE_BYTES = 64 * 1024 * 1024
MAX_SAMPLE_ROWS = 200_000
BACKGROUND_K = 10
"""k-means rows of the KernelSHAP background (fewer when the sample has fewer rows)."""

_FLOAT32_MAX = float(np.finfo(np.float32).max)
_TRUE = {"true", "1", "yes", "t", "y"}
_FALSE = {"false", "0", "no", "f", "n"}
_NULL = {"", "na", "nan", "null", "none"}


def _sample_format(data: bytes, filename: str | None) -> str:
    if data[:4] == b"PAR1" or (filename or "").lower().endswith((".parquet", ".pq")):
        return "parquet"
    return "csv"


def read_columns(data: bytes, filename: str | None = None) -> dict[str, list[Any]]:
    """The sample's columns by name (CSV cells as strings; Parquet as Python values)."""
    if len(data) == 0:
        raise InvalidTrainingSample("The training sample is empty. Send a CSV or Parquet file.")
    if len(data) > MAX_SAMPLE_BYTES:
        raise TrainingSampleTooLarge(
            f"The training sample is {len(data)} bytes; the limit is {MAX_SAMPLE_BYTES}. "
            "Send a random subset of the training rows.",
            details={"size": len(data), "limit": MAX_SAMPLE_BYTES},
        )
    if _sample_format(data, filename) == "parquet":
        return _read_parquet(data)
    return _read_csv(data)


def _read_parquet(data: bytes) -> dict[str, list[Any]]:
    try:
        import pyarrow.parquet as pq
    except ImportError:  # pragma: no cover - pyarrow is a dependency
        raise InvalidTrainingSample(
            "Parquet is not available here; send the sample as CSV."
        ) from None
    try:
        meta = pq.ParquetFile(io.BytesIO(data)).metadata
        if meta.num_rows > MAX_SAMPLE_ROWS:
            raise _too_many(meta.num_rows)
        table = pq.read_table(io.BytesIO(data))
    except TrainingSampleTooLarge:
        raise
    except Exception as e:  # pyarrow raises assorted errors on damaged files
        raise InvalidTrainingSample(
            "The training sample is not a readable Parquet file.",
            details={"reason": str(e)[:300]},
        ) from None
    return {str(name): table.column(name).to_pylist() for name in table.column_names}


def _too_many(rows: int) -> TrainingSampleTooLarge:
    return TrainingSampleTooLarge(
        f"The training sample has {rows} rows; the limit is {MAX_SAMPLE_ROWS}. Send a random "
        "subset of the training rows.",
        details={"rows": rows, "limit": MAX_SAMPLE_ROWS},
    )


def _read_csv(data: bytes) -> dict[str, list[Any]]:
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError:
        raise InvalidTrainingSample("The training sample is not UTF-8 text (CSV).") from None
    reader = csv.reader(io.StringIO(text))
    try:
        header = next(reader)
    except (StopIteration, csv.Error):
        raise InvalidTrainingSample("The training sample has no header row.") from None
    header = [h.strip() for h in header]
    if len(set(header)) != len(header):
        raise InvalidTrainingSample("The training sample's header repeats a column name.")
    columns: list[list[str]] = [[] for _ in header]
    try:
        for n, row in enumerate(reader, start=2):
            if not row:
                continue
            if len(row) != len(header):
                raise InvalidTrainingSample(
                    f"Line {n} of the training sample has {len(row)} cells; the header has "
                    f"{len(header)}.",
                    details={"line": n},
                )
            for col, cell in zip(columns, row, strict=True):
                col.append(cell)
            if len(columns[0]) > MAX_SAMPLE_ROWS:
                raise _too_many(len(columns[0]))
    except csv.Error as e:
        raise InvalidTrainingSample(
            f"The training sample is not valid CSV ({e}).", details={"reason": str(e)[:200]}
        ) from None
    return dict(zip(header, columns, strict=True))


def sample_matrix(manifest: TabularManifest, columns: dict[str, list[Any]]) -> NDArray[np.float64]:
    """The sample in feature space (n, d): numeric values, category codes, 0/1, NaN."""
    missing = [f.name for f in manifest.features if f.name not in columns]
    if missing:
        raise InvalidTrainingSample(
            f"The training sample has no column {', '.join(map(repr, missing[:5]))}. Its "
            "header must name every feature of the manifest.",
            details={"missing": missing[:50]},
        )
    n = len(columns[manifest.features[0].name]) if manifest.features else 0
    if n == 0:
        raise InvalidTrainingSample("The training sample has no rows.")
    out = np.empty((n, len(manifest.features)), np.float64)
    for j, f in enumerate(manifest.features):
        col = columns[f.name]
        codes = {v: c for c, v in enumerate(f.values or [])}
        for i, v in enumerate(col):
            out[i, j] = _cell(f.name, f.type, codes, v, i)
        if not f.nullable and np.isnan(out[:, j]).any():
            row = int(np.argmax(np.isnan(out[:, j])))
            raise InvalidTrainingSample(
                f"Column {f.name!r} of the training sample is empty at row {row + 1}, and the "
                "feature is not nullable. Fill it, or mark the feature nullable.",
                details={"feature": f.name, "row": row + 1},
            )
    return out


def _cell(name: str, kind: str, codes: dict[str, int], v: Any, i: int) -> float:
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return math.nan
    text = v.strip() if isinstance(v, str) else v
    if isinstance(text, str) and text.lower() in _NULL and kind != "categorical":
        return math.nan
    if kind == "numeric":
        try:
            x = float(text)
        except (TypeError, ValueError):
            raise _wrong(name, v, i, "a number") from None
        if math.isinf(x) or abs(x) > _FLOAT32_MAX:
            raise _wrong(name, v, i, "a finite number within float32 (±3.4e38)")
        return x
    if kind == "boolean":
        if isinstance(text, bool | int | float):
            if text in (0, 1):
                return float(text)
            raise _wrong(name, v, i, "true or false")
        low = str(text).lower()
        if low in _TRUE:
            return 1.0
        if low in _FALSE:
            return 0.0
        raise _wrong(name, v, i, "true or false")
    key = str(text) if not isinstance(text, str) else text
    if key == "":
        return math.nan
    code = codes.get(key)
    if code is None:
        raise InvalidTrainingSample(
            f"Column {name!r} of the training sample holds {key[:80]!r} at row {i + 1}, which "
            "is not one of the feature's values. List every category in the manifest.",
            details={"feature": name, "row": i + 1, "value": key[:200]},
        )
    return float(code)


def _wrong(name: str, v: Any, i: int, want: str) -> InvalidTrainingSample:
    return InvalidTrainingSample(
        f"Column {name!r} of the training sample holds {str(v)[:80]!r} at row {i + 1}; "
        f"the feature takes {want}.",
        details={"feature": name, "row": i + 1},
    )


def numeric_statistics(x: NDArray[np.float64]) -> FeatureStatistics:
    """The statistics of one numeric column (NaN left out), as lime's discretizer has them."""
    x = x[~np.isnan(x)]
    if x.size == 0:
        x = np.zeros(1)
    qts = np.unique(np.percentile(x, [25, 50, 75]))
    disc = np.searchsorted(qts, x)
    lo, hi = float(x.min()), float(x.max())
    mins = [lo, *qts.tolist()]
    maxs = [*qts.tolist(), hi]
    bins = []
    for b in range(len(qts) + 1):
        sel = x[disc == b]
        bins.append(
            QuartileBin(
                frequency=float(sel.size / x.size),
                mean=float(sel.mean()) if sel.size else 0.0,
                std=float(sel.std()) if sel.size else 0.0,
                min=float(mins[b]),
                max=float(maxs[b]),
            )
        )
    return FeatureStatistics(
        mean=float(x.mean()),
        std=float(x.std()),
        min=lo,
        max=hi,
        quartiles=[float(q) for q in qts],
        bins=bins,
    )


def category_statistics(codes: NDArray[np.float64], categories: int) -> FeatureStatistics:
    c = codes[~np.isnan(codes)].astype(np.int64)
    counts = np.bincount(c, minlength=categories).astype(np.float64)
    freqs = counts / max(counts.sum(), 1.0)
    return FeatureStatistics(mean=float(np.argmax(counts)), frequencies=freqs.tolist())


def kmeans_background(
    x: NDArray[np.float64], k: int = BACKGROUND_K, categorical: NDArray[np.bool_] | None = None
) -> tuple[NDArray[np.float64], NDArray[np.float64]]:
    """``shap.kmeans(x, k)``: centroids (NaN imputed by column means first — by the most
    frequent code in ``categorical`` columns, so a centroid keeps a category), each value
    rounded to the nearest value of its column, and the cluster sizes as weights."""
    from sklearn.cluster import KMeans

    x = np.array(x, np.float64)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # an all-null column: its mean is NaN, then 0
        means = np.nanmean(x, axis=0) if x.size else np.zeros(x.shape[1])
    means = np.where(np.isnan(means), 0.0, means)
    for c in np.nonzero(categorical if categorical is not None else [])[0]:
        codes = x[:, c][~np.isnan(x[:, c])].astype(np.int64)
        means[c] = float(np.argmax(np.bincount(codes))) if codes.size else 0.0
    holes = np.isnan(x)
    if holes.any():
        x[holes] = np.take(means, np.nonzero(holes)[1])
    k = max(1, min(k, x.shape[0]))
    from threadpoolctl import threadpool_limits

    # one thread: on small samples KMeans' thread pools cost 10x its work (2 cores)
    with warnings.catch_warnings(), threadpool_limits(1):
        warnings.simplefilter("ignore")  # fewer distinct rows than k: KMeans says so
        km = KMeans(n_clusters=k, random_state=0, n_init=10).fit(x)
    centres = np.array(km.cluster_centers_, np.float64)
    for j in range(x.shape[1]):
        col = x[:, j]
        nearest = np.abs(col[None, :] - centres[:, j : j + 1]).argmin(axis=1)
        centres[:, j] = col[nearest]
    weights = np.bincount(km.labels_, minlength=k).astype(np.float64)
    return centres, weights


def statistics_of(
    manifest: TabularManifest, x: NDArray[np.float64], k: int = BACKGROUND_K
) -> TabularStatistics:
    """The training statistics of a sample in feature space (n, d)."""
    feats = []
    for j, f in enumerate(manifest.features):
        if f.type == "numeric":
            feats.append(numeric_statistics(x[:, j]))
        else:
            feats.append(category_statistics(x[:, j], len(f.values or []) or 2))
    categorical = np.asarray([f.type != "numeric" for f in manifest.features])
    centres, weights = kmeans_background(x, k, categorical)
    return TabularStatistics(
        rows=int(x.shape[0]),
        features=feats,
        background=centres.tolist(),
        background_weights=weights.tolist(),
    )


def with_statistics(
    manifest: TabularManifest, data: bytes, filename: str | None = None
) -> TabularManifest:
    """The manifest with the statistics of the training sample ``data`` (CSV or Parquet)."""
    x = sample_matrix(manifest, read_columns(data, filename))
    stats = statistics_of(manifest, x)
    return manifest.model_copy(update={"statistics": stats})
