"""What the sync and async clients share: inputs to bytes, request pieces, answers to models."""

from __future__ import annotations

import io
import json
import os
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Literal, TypeAlias, TypeVar
from urllib.parse import quote

import httpx
import numpy as np
from numpy.typing import NDArray
from PIL import Image
from pydantic import BaseModel

from api_schemas.explanations import ExplanationResult
from api_schemas.jobs import JobStatus
from api_schemas.modalities.base import ManifestBase
from lantern_client.errors import LanternAPIError

ImageInput: TypeAlias = str | os.PathLike[str] | bytes | Image.Image | NDArray[np.uint8]
"""An image: a file path, the file's bytes, a PIL image, or a uint8 array H×W×3 (RGB)."""

ModelInput: TypeAlias = str | os.PathLike[str] | bytes
"""An ONNX model: a path to the ``.onnx`` file, or its bytes."""

ManifestInput: TypeAlias = ManifestBase | Mapping[str, Any] | str | os.PathLike[str]
"""A manifest (of any modality: ImageManifest, TabularManifest, ...), a dict, a JSON string,
or a path to a JSON file."""

ProgressCallback: TypeAlias = Callable[[float, str], None]
"""Called with (progress 0..1, state) while a job is polled."""

Target: TypeAlias = int | str
ResultFormat = Literal["png", "overlay"]
Colormap = Literal["jet", "viridis", "inferno", "coolwarm", "gray"]

DEFAULT_URL = "http://localhost:8000"
BACKOFF_START_S = 0.05
BACKOFF_FACTOR = 1.5
BACKOFF_CAP_S = 1.0

M = TypeVar("M", bound=BaseModel)


def default_url() -> str:
    return os.environ.get("LANTERN_URL") or DEFAULT_URL


def job_path(job_id: str, suffix: str = "") -> str:
    return f"/v1/jobs/{quote(job_id, safe='')}{suffix}"


def model_path(name: str, suffix: str = "") -> str:
    return f"/v1/models/{quote(name, safe='')}{suffix}"


def headers(api_key: str | None) -> dict[str, str]:
    h = {"Accept": "application/json", "User-Agent": "lantern-client"}
    if api_key:
        h["Authorization"] = f"Bearer {api_key}"
    return h


def image_bytes(image: ImageInput) -> tuple[str, bytes]:
    """(file name, bytes) for an image given as a path, bytes, PIL image or uint8 array."""
    if isinstance(image, bytes | bytearray | memoryview):
        return "image", bytes(image)
    if isinstance(image, str | os.PathLike):
        path = Path(image)
        return path.name, path.read_bytes()
    if isinstance(image, Image.Image):
        return "image.png", _png(image)
    if isinstance(image, np.ndarray):
        arr = np.asarray(image)
        if arr.dtype != np.uint8 or arr.ndim != 3 or arr.shape[2] != 3:
            raise ValueError(
                f"An image array must be uint8 with shape (H, W, 3); got {arr.dtype} "
                f"{tuple(arr.shape)}."
            )
        return "image.png", _png(Image.fromarray(np.ascontiguousarray(arr), mode="RGB"))
    raise TypeError(
        f"Unsupported image type {type(image).__name__}: give a path, bytes, a PIL image "
        "or a uint8 numpy array H×W×3."
    )


def _png(img: Image.Image) -> bytes:
    buf = io.BytesIO()
    img.save(buf, format="PNG")
    return buf.getvalue()


def model_bytes(model: ModelInput) -> tuple[str, bytes]:
    if isinstance(model, bytes | bytearray | memoryview):
        return "model.onnx", bytes(model)
    path = Path(model)
    return path.name, path.read_bytes()


def sample_bytes(sample: ModelInput) -> tuple[str, bytes, str]:
    """A training sample's multipart file: (name, bytes, content type)."""
    if isinstance(sample, bytes | bytearray | memoryview):
        data = bytes(sample)
        parquet = data[:4] == b"PAR1"
        return ("train.parquet" if parquet else "train.csv"), data, "application/octet-stream"
    path = Path(sample)
    return path.name, path.read_bytes(), "application/octet-stream"


def manifest_json(manifest: ManifestInput) -> str:
    if isinstance(manifest, ManifestBase):
        return manifest.model_dump_json()
    if isinstance(manifest, Mapping):
        return json.dumps(dict(manifest))
    if isinstance(manifest, str) and manifest.lstrip().startswith("{"):
        return manifest
    return Path(manifest).read_text(encoding="utf-8")


def explanation_form(
    model: str,
    method: str,
    target: Target,
    params: Mapping[str, Any] | None,
    objective: Mapping[str, Any] | None = None,
    callback_url: str | None = None,
) -> dict[str, str]:
    """The multipart text fields of POST /v1/explanations (the image goes in ``file``);
    an ``objective`` (e.g. ``{"kind": "channel", "layer": ..., "channel": 3}``) replaces
    the ``target`` class; ``callback_url`` is POSTed the job's status when it ends."""
    form = {
        "model": model,
        "method": method,
        "params": json.dumps(dict(params or {})),
        "outputs": json.dumps(["values"]),
    }
    if objective is not None:
        form["objective"] = json.dumps(dict(objective))
    else:
        form["target"] = str(target)
    if callback_url is not None:
        form["callback_url"] = callback_url
    return form


def artifact_path(job_id: str, name: str) -> str:
    return job_path(job_id, f"/artifacts/{quote(name, safe='')}")


def check(response: httpx.Response) -> httpx.Response:
    if response.is_error:
        raise LanternAPIError.from_response(response)
    return response


def parse(model: type[M], response: httpx.Response) -> M:
    return model.model_validate_json(check(response).content)


def explanation_answer(response: httpx.Response) -> ExplanationResult | JobStatus:
    """POST /v1/explanations answers a result (200) or a job (202)."""
    check(response)
    if response.status_code == 200:
        return ExplanationResult.model_validate_json(response.content)
    return JobStatus.model_validate_json(response.content)


def result_params(fmt: ResultFormat, colormap: Colormap, alpha: float) -> dict[str, str]:
    if fmt not in ("png", "overlay"):
        raise ValueError(f"format must be 'png' or 'overlay', not {fmt!r}")
    return {"format": fmt, "colormap": colormap, "alpha": repr(float(alpha))}


def load_array(response: httpx.Response) -> NDArray[np.float32]:
    return np.asarray(load_npy(response), dtype=np.float32)


def load_npy(response: httpx.Response) -> NDArray[Any]:
    """A ``.npy`` download as stored (uint8 pixels stay uint8, labels int32)."""
    arr: NDArray[Any] = np.load(io.BytesIO(check(response).content), allow_pickle=False)
    return arr


def load_image(response: httpx.Response) -> Image.Image:
    img = Image.open(io.BytesIO(check(response).content))
    img.load()
    return img


def backoff() -> Iterator[float]:
    """Poll delays: 0.05 s, growing by 1.5× up to 1 s."""
    delay = BACKOFF_START_S
    while True:
        yield delay
        delay = min(delay * BACKOFF_FACTOR, BACKOFF_CAP_S)


def report(progress: ProgressCallback | None, status: JobStatus, last: list[float]) -> None:
    """Call ``progress`` with a non-decreasing value (1.0 once succeeded)."""
    if progress is None:
        return
    value = 1.0 if status.state.value == "succeeded" else status.progress
    value = max(value, last[0]) if last else value
    if last:
        last[0] = value
    else:
        last.append(value)
    progress(value, status.state.value)
