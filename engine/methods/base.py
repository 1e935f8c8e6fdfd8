"""The method contract: a params model and a function to a Result of typed artifacts.

A method is one module. It declares a pydantic params model (defaults and bounds) and a
function ``(model, item, objective, params, progress) -> Result`` — ``item`` comes from the
model's modality codec (one decoded input, or ``None`` for methods that take none), the
objective is what it explains or maximises (:mod:`engine.objectives`) — and registers both
under its name with :func:`engine.methods.registry.register`, with what it takes: its
modalities, its inputs, its objective kinds, its cost estimate, for methods that can be
split across workers, its perturbation plan and, for one-pass methods, a batched entry
point (``batch_fn``: several items, each with its own objective, in one pass).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Generic, Literal, Protocol, TypeVar

from pydantic import BaseModel

from engine.artifacts import Artifact, Result
from engine.objectives import ObjectiveKind

if TYPE_CHECKING:
    from engine.methods.perturbation import PlanBuilder
    from engine.models.runtime import LoadedModel

Kind = Literal["perturbation", "gradient", "cam", "activation", "dataset", "visualisation"]
Execution = Literal["sync", "job"]
#: What a method takes as input: one item from the codec, none, or a dataset reader.
Inputs = Literal["item", "none", "dataset"]


class Progress(Protocol):
    """Called by a method with its completed fraction (0..1).

    It raises :class:`engine.errors.Cancelled` when the job was cancelled, so a method
    stops at its next report.
    """

    def __call__(self, fraction: float) -> None: ...


def no_progress(fraction: float) -> None:
    """A Progress that does nothing (for direct calls and tests)."""


def publish_preview(progress: Progress, artifacts: list[Artifact]) -> None:
    """Hand artifacts readable while the job runs (e.g. a feature visualisation every 64
    steps) to the job layer, when the progress it was given takes them."""
    preview = getattr(progress, "preview", None)
    if preview is not None:
        preview(artifacts)


class ScaledProgress:
    """A Progress reporting ``start + width · f`` to another, passing previews through."""

    def __init__(self, progress: Progress, start: float, width: float) -> None:
        self.progress = progress
        self.start = start
        self.width = width

    def __call__(self, fraction: float) -> None:
        self.progress(self.start + self.width * min(max(fraction, 0.0), 1.0))

    def preview(self, artifacts: list[Artifact]) -> None:
        publish_preview(self.progress, artifacts)


P = TypeVar("P", bound=BaseModel)

MethodFn = Callable[["LoadedModel", Any, Any, P, Progress], Result]
#: The batched entry point: ``(model, items, objectives, params) -> one Result per item``,
#: each equal to ``fn``'s for that item and objective, from one forward (or VJP) over the
#: stacked items; items of one call share the params.
BatchFn = Callable[["LoadedModel", list[Any], list[Any], P], list[Result]]
CheckFn = Callable[[P, "LoadedModel"], None]


def _no_check(params: Any, model: LoadedModel) -> None:
    """Default pre-submit check: nothing beyond the params model's own bounds."""


#: A check that needs the resolved objective too (e.g. more channels of its layer).
ObjectiveCheckFn = Callable[[P, "LoadedModel", Any], None]

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
    modalities: tuple[str, ...] = ("image",)
    inputs: Inputs = "item"
    objectives: tuple[ObjectiveKind, ...] = ("class",)
    check: CheckFn[P] = _no_check
    #: Run at submit after the objective is resolved (None: nothing more to check).
    check_objective: ObjectiveCheckFn[P] | None = None
    #: The forward passes a request will use, estimated before it runs (for the cost limit).
    cost: CostFn[P] = _one_pass
    #: The plan that lets one job be split into chunks for several workers.
    plan: PlanBuilder[Any, Any] | None = None
    #: Several items at once (sync requests batched across callers: jobs/batching.py).
    batch_fn: BatchFn[P] | None = None

    def parse_params(self, raw: dict[str, Any]) -> P:
        return self.params_model.model_validate(raw)

    @property
    def modality(self) -> str:
        """The first modality (the wire's single ``modality`` field)."""
        return self.modalities[0]
