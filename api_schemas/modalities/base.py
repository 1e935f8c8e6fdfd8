"""Fields every manifest has, whatever its modality."""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict, Field

NAME_PATTERN = r"^[a-z0-9][a-z0-9._-]{0,63}$"


class RemotePredictorConfig(BaseModel):
    """An Open Inference Protocol (KServe V2 / Triton / MLServer) server that serves the
    model: forward passes go to ``{url}/v2/models/{model}[/versions/{version}]/infer``."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    url: str = Field(pattern=r"^https?://[^\s/]+(/[^\s]*)?$", max_length=2000,
                     examples=["http://digits-predictor.models.svc:8080"])
    model: str | None = Field(default=None, max_length=200,
                              description="The model's name there (default: this name).")
    version: str | None = Field(default=None, max_length=200)
    batch: int = Field(default=16, ge=1, le=1024, description="Items per request.")
    concurrency: int = Field(default=4, ge=1, le=64, description="Requests in flight.")
    timeout_s: float = Field(default=30.0, gt=0, le=600)
    retries: int = Field(default=3, ge=0, le=10,
                         description="Retries (with backoff) of a refused, timed-out, 429 or "
                         "5xx request.")


class ManifestBase(BaseModel):
    """A model's name, its class labels and a description. Every number must be finite
    (NaN and ±Infinity, which Python's json.dumps writes, are refused)."""

    model_config = ConfigDict(extra="forbid", allow_inf_nan=False)

    name: str = Field(pattern=NAME_PATTERN, examples=["my-classifier"])
    labels: list[str] = Field(min_length=1, max_length=100_000)
    description: str = Field(default="", max_length=2000)
    predictor: RemotePredictorConfig | None = Field(
        default=None,
        description="Run the model's forward passes on this Open Inference Protocol server "
        "instead of locally (black-box methods then explain what it answers; gradients and "
        "inner layers still use the registered graph). Numeric inputs only.",
    )
