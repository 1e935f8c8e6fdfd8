from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class MethodInfo(BaseModel):
    name: str
    modality: str = Field(description="The first modality the method takes.")
    modalities: list[str] = Field(default_factory=list, description="Every modality it takes.")
    inputs: Literal["item", "none", "dataset"] = Field(
        default="item", description="One input, none (the objective alone), or a dataset."
    )
    objectives: list[str] = Field(
        default_factory=list, description="The objective kinds it takes (class, channel, ...)."
    )
    kind: str
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
                            "modalities": ["image"],
                            "inputs": "item",
                            "objectives": ["class"],
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
