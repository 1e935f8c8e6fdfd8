"""Lantern's wire contract: pydantic models shared by the service, the workers and clients.

No logic lives here: only the shapes of requests, responses and the error body.
"""

from api_schemas.errors import ErrorBody
from api_schemas.explanations import (
    AttributionValues,
    ExplanationRequest,
    ExplanationResult,
    TargetInfo,
    Timings,
)
from api_schemas.jobs import JobLinks, JobState, JobStatus
from api_schemas.methods import MethodInfo, MethodList
from api_schemas.models import (
    LayerInfo,
    ModelInfo,
    ModelList,
    ModelManifest,
    Prediction,
    PredictRequest,
    PredictResponse,
    TensorInfo,
)

__all__ = [
    "AttributionValues",
    "ErrorBody",
    "ExplanationRequest",
    "ExplanationResult",
    "JobLinks",
    "JobState",
    "JobStatus",
    "LayerInfo",
    "MethodInfo",
    "MethodList",
    "ModelInfo",
    "ModelList",
    "ModelManifest",
    "PredictRequest",
    "PredictResponse",
    "Prediction",
    "TargetInfo",
    "TensorInfo",
    "Timings",
]
