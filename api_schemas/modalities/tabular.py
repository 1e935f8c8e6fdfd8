"""Tabular models: one row of named features in, class scores out.

(The tabular issue fills this in: feature types, training statistics, the input body.)"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from api_schemas.modalities.base import ManifestBase


class TabularFeature(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=200)
    type: Literal["numeric", "categorical", "boolean"] = "numeric"
    values: list[str] | None = Field(
        default=None, description="A categorical feature's categories, in the model's encoding."
    )


class TabularManifest(ManifestBase):
    modality: Literal["tabular"]
    features: list[TabularFeature] = Field(min_length=1, max_length=10_000)


class TabularInputBody(BaseModel):
    """One row: an object by feature name, or an array in the manifest's feature order."""

    model_config = ConfigDict(extra="forbid")

    modality: Literal["tabular"]
    row: dict[str, Any] | list[Any]
