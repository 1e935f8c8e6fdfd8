"""The method contract: a params model and a function to an Attribution.

A method is one module. It declares a pydantic params model (defaults and bounds) and a
function ``(model, image, target, params, progress) -> Attribution``, and registers both
under its name with :func:`engine.methods.registry.register`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel

from engine.modalities.image import ImageInput

if TYPE_CHECKING:
    from engine.models.runtime import LoadedModel

Kind = Literal["perturbation", "gradient", "cam", "activation", "dataset"]
Execution = Literal["sync", "job"]


class Progress(Protocol):
    """Called by a method with its completed fraction (0..1).

    It raises :class:`engine.errors.Cancelled` when the job was cancelled, so a method
    stops at its next report.
    """

    def __call__(self, fraction: float) -> None: ...


def no_progress(fraction: float) -> None:
    """A Progress that does nothing (for direct calls and tests)."""


@dataclass
class Attribution:
    """A method's answer: one value per input pixel, plus what it cost."""

    values: NDArray[np.float32]
    model_calls: int
    extras: dict[str, Any] = field(default_factory=dict)
    #: Named arrays too big for ``extras`` (e.g. LIME's superpixel label image, ``segment_map``).
    arrays: dict[str, NDArray[Any]] = field(default_factory=dict)


P = TypeVar("P", bound=BaseModel)

MethodFn = Callable[["LoadedModel", ImageInput, int, P, Progress], Attribution]
CheckFn = Callable[[P, "LoadedModel"], None]


def _no_check(params: Any, model: LoadedModel) -> None:
    """Default pre-submit check: nothing beyond the params model's own bounds."""


CostFn = Callable[[P, "LoadedModel"], int]


def _one_pass(params: Any, model: LoadedModel) -> int:
    """Default cost estimate: one forward (and backward) pass."""
    return 1


@dataclass(frozen=True)
class MethodSpec(Generic[P]):
    name: str
    params_model: type[P]
    fn: MethodFn[P]
    description: str
    kind: Kind
    execution: Execution
    modality: Literal["image"] = "image"
    check: CheckFn[P] = _no_check
    #: The forward passes a request will use, estimated before it runs (for the cost limit).
    cost: CostFn[P] = _one_pass

    def parse_params(self, raw: dict[str, Any]) -> P:
        return self.params_model.model_validate(raw)
