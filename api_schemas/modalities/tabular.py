"""Tabular models: one row of named features in, class scores out.

The graph takes one float tensor ``[N, width]``: a numeric feature is its value, a boolean
0 or 1, a categorical feature its category's index in ``values`` (``encoding: ordinal``) or
one column per category (``encoding: onehot``), in the order of ``features``. This is what
a scikit-learn pipeline exported by skl2onnx with one ``FloatTensorType`` input takes.

``statistics`` are the training data's, computed at registration from a training sample
the admin uploads (CSV or Parquet) and kept with the model version: the sampling
distribution of LIME (quartile bins with their means, spreads and bounds, category
frequencies, as the ``lime`` package's ``training_data_stats``), the k-means summary that
is KernelSHAP's background (as ``shap.kmeans``), and the means that are baselines.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from api_schemas.modalities.base import ManifestBase

FeatureType = Literal["numeric", "categorical", "boolean"]


class TabularFeature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    type: FeatureType = "numeric"
    values: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=10_000,
        description="A categorical feature's categories, in the model's encoding (the first "
        "is code 0).",
    )
    nullable: bool = Field(
        default=False,
        description="Whether a row may leave it null (fed as NaN, for a graph that imputes).",
    )

    @model_validator(mode="after")
    def _values(self) -> TabularFeature:
        if self.type == "categorical" and not self.values:
            raise ValueError(f"categorical feature {self.name!r} needs its `values`")
        if self.type != "categorical" and self.values is not None:
            raise ValueError(
                f"only a categorical feature has `values` ({self.name!r} is {self.type})"
            )
        if self.values is not None and len(set(self.values)) != len(self.values):
            raise ValueError(f"the values of {self.name!r} repeat")
        return self


class QuartileBin(BaseModel):
    """One bin of a numeric feature between its quartiles (the training rows in it)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    frequency: float = Field(ge=0, le=1)
    mean: float
    std: float = Field(ge=0)
    min: float
    max: float


class FeatureStatistics(BaseModel):
    """A feature's training statistics. Numeric: mean, std, min, max, the distinct
    quartiles (25, 50, 75 %) and the bins they cut; categorical and boolean: the
    frequency of each category (boolean: false, true)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    mean: float = Field(description="Numeric: the mean; else the mode's code.")
    std: float = Field(default=0.0, ge=0)
    min: float | None = None
    max: float | None = None
    quartiles: list[float] | None = Field(default=None, max_length=3)
    bins: list[QuartileBin] | None = Field(default=None, max_length=4)
    frequencies: list[float] | None = Field(default=None, max_length=10_000)

    @model_validator(mode="after")
    def _bins(self) -> FeatureStatistics:
        if self.quartiles is not None and (
            self.bins is None or len(self.bins) != len(self.quartiles) + 1
        ):
            raise ValueError("a numeric feature has one bin more than it has quartiles")
        return self


class TabularStatistics(BaseModel):
    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    rows: int = Field(ge=1, description="Rows of the training sample.")
    features: list[FeatureStatistics] = Field(min_length=1, max_length=10_000)
    background: list[list[float]] = Field(
        min_length=1,
        max_length=1000,
        description="The training sample summarised by k-means (centroids rounded to values "
        "the sample holds, as shap.kmeans), in feature space: numeric values, category codes.",
    )
    background_weights: list[float] = Field(
        min_length=1, max_length=1000, description="Rows of the sample in each centroid."
    )

    @model_validator(mode="after")
    def _shapes(self) -> TabularStatistics:
        if len(self.background) != len(self.background_weights):
            raise ValueError("one weight per background row")
        d = len(self.features)
        if any(len(r) != d for r in self.background):
            raise ValueError(f"every background row has one value per feature ({d})")
        return self


class TabularManifest(ManifestBase):
    modality: Literal["tabular"]
    features: list[TabularFeature] = Field(min_length=1, max_length=10_000)
    encoding: Literal["ordinal", "onehot"] = Field(
        default="ordinal",
        description="How a categorical feature reaches the graph: its code as one column, or "
        "one 0/1 column per category.",
    )
    scores: Literal["logits", "probabilities"] = Field(
        default="probabilities",
        description="What the explained output holds: probabilities (a scikit-learn "
        "classifier through skl2onnx with zipmap off) or logits (softmax taken for the "
        "reported score).",
    )
    statistics: TabularStatistics | None = Field(
        default=None,
        description="The training data's statistics; computed at registration from the "
        "training sample uploaded beside the model (`training` part), or given here.",
    )

    @model_validator(mode="after")
    def _consistent(self) -> TabularManifest:
        names = [f.name for f in self.features]
        if len(set(names)) != len(names):
            raise ValueError("feature names repeat")
        st = self.statistics
        if st is None:
            return self
        if len(st.features) != len(self.features):
            raise ValueError(
                f"statistics describe {len(st.features)} features; the manifest has "
                f"{len(self.features)}"
            )
        for j, (f, s) in enumerate(zip(self.features, st.features, strict=True)):
            if f.type == "numeric":
                if s.quartiles is None:
                    raise ValueError(f"numeric feature {f.name!r} needs quartiles and bins")
                if s.quartiles != sorted(s.quartiles) or any(
                    b.min > b.max for b in s.bins or []
                ):
                    raise ValueError(f"the quartiles and bins of {f.name!r} are not in order")
                continue
            want = len(f.values or []) if f.type == "categorical" else 2
            if s.frequencies is None or len(s.frequencies) != want:
                raise ValueError(f"feature {f.name!r} needs {want} category frequencies")
            if any(p < 0 for p in s.frequencies) or sum(s.frequencies) <= 0:
                raise ValueError(f"the frequencies of {f.name!r} are not a distribution")
            codes = {float(c) for c in range(want)}
            if any(r[j] not in codes for r in st.background):
                raise ValueError(
                    f"background values of {f.name!r} must be its category codes 0..{want - 1}"
                )
        return self

    @property
    def width(self) -> int:
        """Columns of the graph's input."""
        if self.encoding == "ordinal":
            return len(self.features)
        return sum(len(f.values or []) if f.type == "categorical" else 1 for f in self.features)


MAX_ROWS = 100
"""Rows one request may explain (``rows``, or a CSV file)."""


class TabularInputBody(BaseModel):
    """One row (``row``): an object by feature name, or an array in the manifest's feature
    order; or several (``rows``, at most MAX_ROWS), each explained. Numbers for numeric
    features, a category's name for categorical ones, true/false for booleans, null where
    the feature is nullable. A multipart request may send the rows as a CSV file instead
    (a header of feature names, a line per row)."""

    model_config = ConfigDict(extra="forbid")

    modality: Literal["tabular"]
    row: dict[str, Any] | list[Any] | None = Field(
        default=None, examples=[{"age": 41, "income": 52000.0, "city": "Lyon", "member": True}]
    )
    rows: list[dict[str, Any] | list[Any]] | None = Field(
        default=None, min_length=1, max_length=MAX_ROWS
    )

    @model_validator(mode="after")
    def _one(self) -> TabularInputBody:
        if (self.row is None) == (self.rows is None):
            raise ValueError("give either `row` (one row) or `rows` (several)")
        return self
