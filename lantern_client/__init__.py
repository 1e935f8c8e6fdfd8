"""Python client of the Lantern service: :class:`LanternClient` and :class:`AsyncLanternClient`.

Both speak the v1 HTTP API with httpx and answer the pydantic models of ``api_schemas``.
"""

from lantern_client._common import (
    Colormap,
    ImageInput,
    ManifestInput,
    ModelInput,
    ProgressCallback,
    ResultFormat,
    Target,
)
from lantern_client.aio import AsyncLanternClient
from lantern_client.errors import LanternAPIError, LanternError, LanternTimeoutError
from lantern_client.inside import NmfGroups, SemanticDictionary
from lantern_client.sync import LanternClient

__all__ = [
    "AsyncLanternClient",
    "Colormap",
    "ImageInput",
    "LanternAPIError",
    "LanternClient",
    "LanternError",
    "LanternTimeoutError",
    "ManifestInput",
    "ModelInput",
    "NmfGroups",
    "ProgressCallback",
    "ResultFormat",
    "SemanticDictionary",
    "Target",
]
