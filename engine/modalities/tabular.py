"""The tabular codec: a row of named features (JSON object or array) -> a vector in feature
space -> the model's float input tensor.

Feature space is one float per feature, in the manifest's order: a numeric feature's value,
a categorical feature's code (its index in ``values``), a boolean 0 or 1, NaN for a null
where the feature is nullable. The graph's input is that vector (``encoding: ordinal``) or
it with each categorical code spread over one 0/1 column per category (``onehot``).
Methods perturb rows in feature space (LIME samples codes and bin values, KernelSHAP puts
background values in) and the codec turns any batch of such rows into model input.

Every row a caller can get wrong is an :class:`~engine.errors.InvalidRow` with a
``details.reason``: ``missing_column``, ``extra_column``, ``unknown_category``,
``wrong_type``, ``missing_value``, ``out_of_range`` (beyond float32), ``wrong_length``,
``too_many_rows``, ``not_a_row``.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import onnxruntime as ort
import orjson
from numpy.typing import NDArray

from api_schemas.modalities.tabular import (
    MAX_ROWS,
    TabularFeature,
    TabularManifest,
    TabularStatistics,
)
from engine.errors import InvalidInput, InvalidManifest, InvalidModel, LanternError
from engine.modalities.base import GraphCheck, Modality, check_label_count
from engine.modalities.registry import register_modality

TabularBaseline = Literal["mean", "median", "zero"]
_FLOAT32_MAX = float(np.finfo(np.float32).max)


class InvalidRow(InvalidInput):
    """A row the model's manifest does not describe: a missing or extra column, a category
    never seen, a value of the wrong type, a null where the feature takes none
    (``details.reason`` says which, ``details.feature`` where)."""

    code = "invalid_row"


class InvalidTrainingSample(LanternError):
    """A training sample (CSV or Parquet) that cannot give a tabular model its statistics:
    unreadable, a feature's column missing, values of the wrong type."""

    status = 422
    code = "invalid_training_sample"


class TrainingSampleTooLarge(LanternError):
    """A training sample over the size or row limit of a registration."""

    status = 413
    code = "training_sample_too_large"


@dataclass(frozen=True, eq=False)
class TabularRow:
    """One decoded row: ``values`` (d,) float64 in feature space, and the row as sent, in
    feature order (``raw``: what a bar chart prints beside each feature)."""

    values: NDArray[np.float64]
    raw: tuple[Any, ...]

    def shown(self, i: int) -> str:
        """Feature ``i``'s value as text."""
        v = self.raw[i]
        if v is None:
            return "null"
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, float):
            return f"{v:.4g}"
        return str(v)


@dataclass(frozen=True, eq=False)
class TabularRows:
    """Several decoded rows (``rows``, or a CSV file), each explained on its own:
    ``values`` (n, d) in feature space."""

    rows: tuple[TabularRow, ...]

    @property
    def values(self) -> NDArray[np.float64]:
        return np.stack([r.values for r in self.rows])


def rows_of(item: TabularRow | TabularRows) -> tuple[TabularRow, ...]:
    return item.rows if isinstance(item, TabularRows) else (item,)


def _stats(manifest: TabularManifest) -> TabularStatistics:
    if manifest.statistics is None:
        raise InvalidManifest(
            f"Tabular model {manifest.name!r} has no training statistics. Register it with a "
            "training sample (a CSV or Parquet file in a 'training' part beside the model), "
            "or give `statistics` in the manifest.",
            details={"model": manifest.name, "field": "statistics"},
        )
    return manifest.statistics


def _bad(reason: str, message: str, **details: Any) -> InvalidRow:
    return InvalidRow(message, details={"reason": reason, **details})


class TabularCodec:
    """The tabular codec (see :mod:`engine.modalities.base`)."""

    modality = "tabular"

    def __init__(self, manifest: TabularManifest, max_pixels: int = 0) -> None:
        self.manifest = manifest
        self.features: list[TabularFeature] = list(manifest.features)
        self.names = [f.name for f in self.features]
        self.index = {n: i for i, n in enumerate(self.names)}
        self.codes = [
            {v: c for c, v in enumerate(f.values or [])} if f.type == "categorical" else {}
            for f in self.features
        ]
        self.statistics = manifest.statistics
        # one-hot: the input column of each feature's first category
        self.onehot = manifest.encoding == "onehot" and any(
            f.type == "categorical" for f in self.features
        )
        starts, width = [], 0
        for f in self.features:
            starts.append(width)
            width += len(f.values or []) if (self.onehot and f.type == "categorical") else 1
        self.starts = np.asarray(starts, np.int64)
        self.width = width
        #: the feature each column of the graph's input holds
        self.feature_of_column = np.repeat(
            np.arange(len(self.features)), np.diff(np.append(self.starts, width))
        )

    @property
    def stats(self) -> TabularStatistics:
        return _stats(self.manifest)

    # -- the caller's row ------------------------------------------------------------------

    def validate(self, data: bytes) -> None:
        self.decode(data)

    def decode(self, data: bytes) -> TabularRow | TabularRows:
        """The input body's JSON (``row`` or ``rows``), or a CSV file of rows."""
        try:
            body = orjson.loads(data)
        except orjson.JSONDecodeError:
            return self.decode_csv(data)
        if isinstance(body, dict) and body.get("rows") is not None:
            return self.decode_rows(body["rows"])
        row = body.get("row") if isinstance(body, dict) and "row" in body else body
        return self.decode_row(row)

    def decode_rows(self, rows: Any) -> TabularRow | TabularRows:
        if not isinstance(rows, list) or not rows:
            raise _bad("not_a_row", "`rows` is a non-empty list of rows.")
        if len(rows) > MAX_ROWS:
            raise _bad(
                "too_many_rows",
                f"{len(rows)} rows; one request explains at most {MAX_ROWS}. Split them.",
                rows=len(rows),
                limit=MAX_ROWS,
            )
        decoded = []
        for i, r in enumerate(rows):
            try:
                decoded.append(self.decode_row(r))
            except InvalidRow as e:
                raise InvalidRow(
                    f"Row {i + 1}: {e.message}", details={**e.details, "row": i + 1}
                ) from None
        return decoded[0] if len(decoded) == 1 else TabularRows(tuple(decoded))

    def decode_csv(self, data: bytes) -> TabularRow | TabularRows:
        """A CSV file: a header of feature names, then one line per row (an empty cell is
        null)."""
        import csv
        import io

        try:
            text = data.decode("utf-8-sig")
            lines = [r for r in csv.reader(io.StringIO(text)) if r]
        except (UnicodeDecodeError, csv.Error):
            lines = []
        if len(lines) < 2:
            raise _bad(
                "not_a_row",
                "The input is neither JSON nor a CSV file with a header of feature names "
                "and at least one row.",
            )
        header = [h.strip() for h in lines[0]]
        rows: list[dict[str, Any]] = []
        for n, line in enumerate(lines[1:], start=2):
            if len(line) != len(header):
                raise _bad(
                    "wrong_length",
                    f"Line {n} of the CSV has {len(line)} cells; its header has {len(header)}.",
                    line=n,
                )
            rows.append({h: self._csv_cell(h, c) for h, c in zip(header, line, strict=True)})
        return self.decode_rows(rows)

    def _csv_cell(self, name: str, cell: str) -> Any:
        """A CSV cell as the JSON value the feature takes (text that is none stays text,
        so decode_row names what is wrong)."""
        i = self.index.get(name)
        text = cell.strip()
        if i is None:
            return text
        kind = self.features[i].type
        if text == "" and kind != "categorical":
            return None
        if kind == "numeric":
            try:
                return float(text)
            except ValueError:
                return text
        if kind == "boolean":
            low = text.lower()
            return True if low in ("true", "1", "yes") else False if low in (
                "false", "0", "no") else text
        return text

    def decode_row(self, row: Any) -> TabularRow:
        """A row as an object by feature name or an array in feature order."""
        d = len(self.features)
        if isinstance(row, dict):
            missing = [n for n in self.names if n not in row]
            if missing:
                raise _bad(
                    "missing_column",
                    f"The row has no value for {', '.join(map(repr, missing[:5]))}"
                    + (f" (and {len(missing) - 5} more)" if len(missing) > 5 else "")
                    + f". Give all {d} features: {', '.join(self.names[:10])}"
                    + ("…" if d > 10 else "")
                    + " (null where a feature is nullable).",
                    feature=missing[0],
                    missing=missing[:50],
                )
            extra = [k for k in row if k not in self.index]
            if extra:
                raise _bad(
                    "extra_column",
                    f"The row has columns the model does not take: "
                    f"{', '.join(map(repr, extra[:5]))}. Send only the manifest's features.",
                    feature=extra[0],
                    extra=extra[:50],
                )
            cells = [row[n] for n in self.names]
        elif isinstance(row, list):
            if len(row) != d:
                raise _bad(
                    "wrong_length",
                    f"The row has {len(row)} values; the model takes {d} features "
                    f"({', '.join(self.names[:10])}{'…' if d > 10 else ''}), in that order.",
                    length=len(row),
                    features=d,
                )
            cells = list(row)
        else:
            raise _bad(
                "not_a_row",
                "A row is a JSON object by feature name or an array in feature order.",
            )
        values = np.empty(d, np.float64)
        for i, (f, v) in enumerate(zip(self.features, cells, strict=True)):
            values[i] = self._cell(i, f, v)
        return TabularRow(values, tuple(cells))

    def _cell(self, i: int, f: TabularFeature, v: Any) -> float:
        if v is None:
            if f.nullable:
                return math.nan
            raise _bad(
                "missing_value",
                f"Feature {f.name!r} is null, and the model takes no missing value there. "
                "Give a value.",
                feature=f.name,
            )
        if f.type == "numeric":
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise _bad(
                    "wrong_type",
                    f"Feature {f.name!r} is numeric; got {type(v).__name__} {str(v)[:40]!r}. "
                    "Send a JSON number.",
                    feature=f.name,
                    expected="number",
                )
            try:
                x = float(v)
            except OverflowError:  # an integer beyond a double
                x = math.inf
            if not math.isfinite(x):
                raise _bad(
                    "missing_value",
                    f"Feature {f.name!r} is {x}; send a finite number"
                    + (" or null." if f.nullable else "."),
                    feature=f.name,
                )
            if abs(x) > _FLOAT32_MAX:
                raise _bad(
                    "out_of_range",
                    f"Feature {f.name!r} is {x:.3g}, beyond what the model's float32 input "
                    "holds (±3.4e38). Send a smaller number.",
                    feature=f.name,
                )
            return x
        if f.type == "boolean":
            if isinstance(v, bool):
                return 1.0 if v else 0.0
            if isinstance(v, int) and v in (0, 1):
                return float(v)
            raise _bad(
                "wrong_type",
                f"Feature {f.name!r} is boolean; got {str(v)[:40]!r}. Send true or false.",
                feature=f.name,
                expected="boolean",
            )
        if not isinstance(v, str):
            raise _bad(
                "wrong_type",
                f"Feature {f.name!r} is categorical; got {type(v).__name__} {str(v)[:40]!r}. "
                "Send the category's name as a string.",
                feature=f.name,
                expected="string",
            )
        code = self.codes[i].get(v)
        if code is None:
            shown = ", ".join(map(repr, (f.values or [])[:10]))
            raise _bad(
                "unknown_category",
                f"Feature {f.name!r} has no category {v[:80]!r}: the model knows {shown}"
                + ("…" if len(f.values or []) > 10 else "")
                + ".",
                feature=f.name,
                value=v[:200],
            )
        return float(code)

    # -- feature space -> model input -----------------------------------------------------

    def to_model_input(self, batch: NDArray[Any]) -> NDArray[np.float32]:
        """Rows in feature space (N, d) -> the graph's input (N, width) float32."""
        x = np.asarray(batch)
        if not self.onehot:
            return np.ascontiguousarray(x, np.float32)
        out = np.zeros((x.shape[0], self.width), np.float32)
        for i, f in enumerate(self.features):
            col = x[:, i]
            s = int(self.starts[i])
            if f.type != "categorical":
                out[:, s] = col
                continue
            ok = np.isfinite(col)
            rows = np.nonzero(ok)[0]
            out[rows, s + col[ok].astype(np.int64)] = 1.0
            out[~ok, s : s + len(f.values or [])] = np.nan
        return out

    def item_input_of(self, values: NDArray[np.float64]) -> NDArray[np.float32]:
        """A row (d,) in feature space as the graph's input (1, width)."""
        return self.to_model_input(values[None])

    def item_input(self, item: TabularRow | TabularRows) -> NDArray[np.float32]:
        """The row (1, width), or the rows (n, width): "top1" and the reported score are
        the first row's."""
        values = item.values
        return self.to_model_input(values[None] if values.ndim == 1 else values)

    def baseline(
        self, item: TabularRow, name: Any = "mean", blur_radius: float = 0.0
    ) -> NDArray[np.float32]:
        """A reference row (d,): the training means (categorical and boolean features:
        their most frequent category), medians, or zeros."""
        if name == "zero":
            return np.zeros(len(self.features), np.float32)
        st = self.stats
        out = np.empty(len(self.features), np.float64)
        for i, (f, s) in enumerate(zip(self.features, st.features, strict=True)):
            if f.type != "numeric":
                out[i] = float(np.argmax(s.frequencies or [1.0]))
            elif name == "median" and s.quartiles:
                out[i] = s.quartiles[min(1, len(s.quartiles) - 1)]
            else:
                out[i] = s.mean
        return out.astype(np.float32)

    def masked_batch(
        self,
        x0: NDArray[np.float32],
        xb: NDArray[np.float32],
        masks: NDArray[Any],
        out: NDArray[np.float32],
    ) -> NDArray[np.float32]:
        """Rows (n, d): ``x0`` where ``masks`` keep, ``xb`` (a row, or one per mask) else."""
        np.copyto(out, np.broadcast_to(xb, out.shape))
        np.copyto(out, np.broadcast_to(x0, out.shape), where=masks.astype(bool))
        return out

    def is_categorical(self) -> NDArray[np.bool_]:
        """Which features take categories (categorical and boolean)."""
        return np.asarray([f.type != "numeric" for f in self.features])


# -- registration ----------------------------------------------------------------------------

_FLOAT_OUT = "tensor(float)"


def _explained_output(sess: ort.InferenceSession) -> str:
    """The output holding class scores: a float tensor of rank 2 (skl2onnx classifiers name
    it ``probabilities``; their ``label`` output is int64)."""
    outs = sess.get_outputs()
    floats = [o for o in outs if o.type == _FLOAT_OUT and len(o.shape) in (1, 2)]
    if not floats:
        kinds = {o.name: o.type for o in outs}
        zipmap = any(t.startswith("seq(map") for t in kinds.values())
        raise InvalidModel(
            "The model has no float output of class scores"
            + (
                " (its probabilities are a ZipMap: a list of dicts). Convert it with "
                "skl2onnx's options={'zipmap': False}."
                if zipmap
                else f" (outputs: {kinds}). Export the class scores as a float tensor [N, classes]."
            ),
            details={"outputs": kinds},
        )
    named = [o for o in floats if "prob" in o.name.lower()]
    return str((named or floats)[-1].name)


def check_tabular_graph(sess: ort.InferenceSession, manifest: TabularManifest) -> GraphCheck:
    """One float input [N, width]; a float output of one score per label (run once on the
    training sample's k-means rows)."""
    stats = _stats(manifest)
    inputs = sess.get_inputs()
    codec = TabularCodec(manifest)
    if len(inputs) != 1:
        raise InvalidModel(
            f"The model has {len(inputs)} inputs ({', '.join(i.name for i in inputs)}); a "
            f"tabular model takes one float tensor [N, {codec.width}] of the features in "
            "manifest order. Export with one input, e.g. skl2onnx's "
            f"initial_types=[('input', FloatTensorType([None, {codec.width}]))].",
            details={"inputs": [i.name for i in inputs]},
        )
    inp = inputs[0]
    if inp.type != _FLOAT_OUT:
        raise InvalidModel(
            f"The model input is {inp.type}; Lantern feeds tabular rows as float32.",
            details={"input_type": inp.type},
        )
    shape = list(inp.shape)
    if len(shape) != 2:
        raise InvalidManifest(
            f"The model input has rank {len(shape)}; a tabular model takes [N, features].",
            details={"input_shape": shape},
        )
    if isinstance(shape[1], int) and shape[1] != codec.width:
        raise InvalidManifest(
            f"The model input has {shape[1]} columns; the manifest's features make "
            f"{codec.width} ({manifest.encoding} encoding). Fix the features or the encoding.",
            details={"input_shape": shape, "width": codec.width},
        )
    output = _explained_output(sess)
    rows = np.asarray(stats.background, np.float64)
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else len(rows)
    x = codec.to_model_input(np.resize(rows, (batch, rows.shape[1])))
    try:
        out = np.asarray(sess.run([output], {inp.name: x})[0])
    except Exception as e:  # ORT raises many types; any failure means "cannot run"
        raise InvalidModel(
            "The model failed on rows of its training sample. Check the features and encoding.",
            details={"reason": str(e)[:500]},
        ) from None
    num_classes = int(out.size // max(batch, 1))
    check_label_count(num_classes, manifest.labels)
    return GraphCheck(inp.name, output, num_classes)


def tabular_inference_dims(manifest: TabularManifest) -> list[int]:
    return [1, TabularCodec(manifest).width]


register_modality(
    Modality(
        name="tabular",
        codec=TabularCodec,
        check_graph=check_tabular_graph,
        inference_dims=tabular_inference_dims,
    )
)
