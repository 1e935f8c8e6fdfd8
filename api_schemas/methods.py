from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel


class MethodInfo(BaseModel):
    name: str
    modality: Literal["image", "tabular", "text", "timeseries"]
    kind: Literal["perturbation", "gradient", "cam", "activation", "dataset"]
    execution: Literal["sync", "job"]
    description: str
    params_schema: dict[str, Any]


class MethodList(BaseModel):
    methods: list[MethodInfo]
