from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict


class MethodInfo(BaseModel):
    name: str
    modality: Literal["image", "tabular", "text", "timeseries"]
    kind: Literal["perturbation", "gradient", "cam", "activation", "dataset"]
    execution: Literal["sync", "job"]
    description: str
    params_schema: dict[str, Any]


class MethodList(BaseModel):
    model_config = ConfigDict(
        json_schema_extra={
            "examples": [
                {
                    "methods": [
                        {
                            "name": "grad_cam",
                            "modality": "image",
                            "kind": "cam",
                            "execution": "sync",
                            "description": "Grad-CAM: feature maps weighted by their mean "
                            "gradients.",
                            "params_schema": {"type": "object", "properties": {}},
                        }
                    ]
                }
            ]
        }
    )

    methods: list[MethodInfo]
