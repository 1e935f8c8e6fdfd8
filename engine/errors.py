"""Errors a caller can cause, as types.

Every error carries an HTTP status, a stable machine-readable ``code`` and a sentence
saying what to change. The service translates them to HTTP in one place
(``service/errors.py``); workers store them on the failed job.
"""

from __future__ import annotations

from typing import Any


class LanternError(Exception):
    """Base of every error Lantern reports to a caller."""

    status: int = 400
    code: str = "bad_request"
    headers: dict[str, str] | None = None

    def __init__(self, message: str, *, details: dict[str, Any] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.details: dict[str, Any] = details or {}

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "message": self.message, "details": self.details}


class InvalidImage(LanternError):
    status = 422
    code = "invalid_image"


class ImageTooLarge(LanternError):
    status = 413
    code = "image_too_large"


class UnsupportedImageMode(LanternError):
    status = 422
    code = "unsupported_image_mode"


class PayloadTooLarge(LanternError):
    status = 413
    code = "payload_too_large"


class InvalidInput(LanternError):
    status = 422
    code = "invalid_input"


class InvalidParams(LanternError):
    status = 422
    code = "invalid_params"


class UnknownModel(LanternError):
    status = 404
    code = "unknown_model"


class UnknownMethod(LanternError):
    status = 404
    code = "unknown_method"


class UnknownLabel(LanternError):
    status = 422
    code = "unknown_label"


class InvalidTarget(LanternError):
    status = 422
    code = "invalid_target"


class UnknownLayer(LanternError):
    status = 422
    code = "unknown_layer"


class InvalidModel(LanternError):
    status = 422
    code = "invalid_model"


class InvalidManifest(LanternError):
    status = 422
    code = "invalid_manifest"


class ModelTooLarge(LanternError):
    status = 413
    code = "model_too_large"


class ModelProtected(LanternError):
    status = 409
    code = "model_protected"


class UnsupportedModel(LanternError):
    """The model cannot serve this method (e.g. an op with no gradient rule)."""

    status = 422
    code = "unsupported_model"


class UnknownJob(LanternError):
    status = 404
    code = "unknown_job"


class JobNotReady(LanternError):
    status = 409
    code = "job_not_ready"


class JobFailed(LanternError):
    status = 409
    code = "job_failed"


class JobFinished(LanternError):
    status = 409
    code = "job_finished"


class Unauthorized(LanternError):
    status = 401
    code = "unauthorized"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.headers = {"WWW-Authenticate": "Bearer"}


class Forbidden(LanternError):
    status = 403
    code = "forbidden"


class RateLimited(LanternError):
    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, details={"retry_after_s": retry_after})
        self.headers = {"Retry-After": str(retry_after)}


class JobTooCostly(LanternError):
    status = 422
    code = "job_too_costly"


class TimeLimitExceeded(LanternError):
    status = 422
    code = "time_limit"


class InvalidFormat(LanternError):
    status = 422
    code = "invalid_format"


class InvalidObjective(LanternError):
    """An objective the model or the method cannot take (kind, layer shape, range)."""

    status = 422
    code = "invalid_objective"


class UnsupportedModality(LanternError):
    """A method asked of a model whose input modality it does not take."""

    status = 422
    code = "unsupported_modality"


class UnknownArtifact(LanternError):
    status = 404
    code = "unknown_artifact"


class JobCancelled(LanternError):
    status = 409
    code = "job_cancelled"


class InputExpired(LanternError):
    status = 410
    code = "input_expired"


class QueueFull(LanternError):
    """A key's queued and running jobs would pass its cost cap."""

    status = 429
    code = "queue_full"
    headers = {"Retry-After": "30"}  # noqa: RUF012


class BackendUnavailable(LanternError):
    status = 503
    code = "backend_unavailable"
    headers = {"Retry-After": "5"}  # noqa: RUF012


def status_of(code: str) -> int:
    """The HTTP status of an error ``code`` (a stored job error keeps its real status)."""
    if code == "internal_error":
        return 500
    stack: list[type[LanternError]] = [LanternError]
    while stack:
        cls = stack.pop()
        if cls.code == code and cls is not LanternError:
            return cls.status
        stack.extend(cls.__subclasses__())
    return 422


def internal_error(exc: BaseException) -> dict[str, Any]:
    """The error body of a failure that is Lantern's fault, not the caller's."""
    return {
        "code": "internal_error",
        "message": "The explanation failed inside Lantern; this is a bug, please report it.",
        "details": {"type": type(exc).__name__},
    }


class Cancelled(Exception):
    """Raised inside a running method when its job was cancelled (not a caller error)."""


class ModelRecordDamaged(LanternError):
    """A stored model record that cannot be read (corrupt JSON, or it fails validation).
    An admin can delete it (DELETE /v1/models/{name}) and register the model again."""

    status = 409
    code = "model_damaged"


# datasets (engine/datasets) ------------------------------------------------------------
class UnknownDataset(LanternError):
    status = 404
    code = "unknown_dataset"


class UnknownDatasetImage(LanternError):
    """An image index beyond a dataset's images (``details.count`` says how many)."""

    status = 404
    code = "unknown_image"


class DatasetProtected(LanternError):
    """A built-in dataset's name: it cannot be replaced or deleted."""

    status = 409
    code = "dataset_protected"


class InvalidArchive(LanternError):
    """Not a readable zip archive, or an unreadable index of it."""

    status = 422
    code = "invalid_archive"


class ArchiveBomb(LanternError):
    """More uncompressed bytes, a higher compression ratio or more entries than allowed
    (``details.limit`` says which)."""

    status = 413
    code = "archive_bomb"


class UnsafeArchivePath(LanternError):
    """An entry that would land outside the archive: ``../``, absolute, or a symlink."""

    status = 422
    code = "unsafe_path"


class InvalidImages(LanternError):
    """Files that are not images (``details.rejected``), refused whole on request, or no
    images at all."""

    status = 422
    code = "invalid_images"


class DatasetTooLarge(LanternError):
    """More images, or more pixels, than the dataset limits allow."""

    status = 413
    code = "dataset_too_large"


class DatasetPathForbidden(LanternError):
    """A directory to register that is not under a configured dataset root."""

    status = 403
    code = "dataset_path_forbidden"


class CallbackNotAllowed(LanternError):
    """A request's ``callback_url`` this server may not call (scheme, host, address)."""

    status = 422
    code = "callback_not_allowed"
