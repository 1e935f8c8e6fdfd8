from __future__ import annotations

from fastapi import APIRouter, Depends

from api_schemas.methods import MethodInfo, MethodList
from engine.methods.registry import all_methods
from service.auth import AUTH_RESPONSES, require_user

router = APIRouter(
    prefix="/v1/methods",
    tags=["methods"],
    responses=AUTH_RESPONSES,
    dependencies=[Depends(require_user)],
)


@router.get("", response_model=MethodList, summary="Explanation methods and their params schemas.")
def list_methods() -> MethodList:
    return MethodList(
        methods=[
            MethodInfo(
                name=s.name,
                modality=s.modality,
                modalities=list(s.modalities),
                inputs=s.inputs,
                objectives=list(s.objectives),
                kind=s.kind,
                execution=s.execution,
                description=s.description,
                params_schema=s.params_model.model_json_schema(),
            )
            for s in all_methods()
        ]
    )
