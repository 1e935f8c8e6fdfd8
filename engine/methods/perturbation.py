"""Shared machinery of the perturbation methods, and the plan contract that lets a job be split.

Every perturbation method (occlusion, LIME, RISE, KernelSHAP) is three pure steps plus
two small ones, so that one big job can be cut into chunks that run on several workers
and be put back together::

    plan   = builder.build_plan(model, image, objective, params)          # cheap, small, no passes
    refs   = builder.references(model, image, objective, params, plan)    # f(x) [and f(baseline)]
    scores = builder.evaluate(model, image, objective, params, plan, start, stop, progress)
    plan2  = builder.refine(model, image, objective, params, plan, scores, refs)  # adaptive only
    attr   = builder.assemble(model, image, objective, params, plan, scores, refs, forward_passes)

* ``plan.n_samples`` is the number of perturbed inputs. Sample ``i`` depends only on the
  plan and ``i`` (a seed and ``i`` for the random methods: ``default_rng([seed, i])``), never
  on chunk boundaries or the batch size, so evaluating ``[0, k)``, ``[k, 2k)``, … and
  concatenating the scores gives the same array, bit for bit, as evaluating ``[0, n)``.
* ``evaluate`` is the only step with forward passes over samples; it returns the target's
  score (float64, length ``stop - start``). ``references`` does the one or two reference
  passes (the unperturbed image, and the fully hidden one for methods that need it).
* ``refine`` is for adaptive methods (occlusion's drill-down): given the scores of all the
  plan's samples it returns a *longer* plan whose first ``n_samples`` samples are unchanged
  (evaluate only ``[old_n, new_n)``), or ``None`` when the plan is complete. A split job
  runs one group of chunks per round.
* ``assemble`` is pure: scores in, a :class:`~engine.artifacts.Result` out; its ``progress``
  (which may raise to cancel) is for an assembly that is itself long (an embedding's fit).

A method's registered ``fn`` is :func:`run_plan`: build_plan → references → evaluate(0, n)
(→ refine → evaluate the new samples …) → assemble. A method's ``MethodSpec.plan`` is its
builder, which the job layer uses to split a job.

Inside ``evaluate`` masks are made lazily, one forward batch at a time (never all samples'
images at once); identical masks within the call are evaluated once (keyed by the bytes of
the sample's compact mask code); progress is reported after every forward batch.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Annotated, Any, Generic, Literal, Protocol, TypeVar

import numpy as np
from numpy.typing import NDArray
from pydantic import Field

from engine.artifacts import Result
from engine.methods.base import Progress, no_progress
from engine.modalities.baselines import baseline_pixels
from engine.modalities.image import ImageInput
from engine.models.incremental import IncrementalRunner, Reference
from engine.models.runtime import LoadedModel
from engine.objectives import Objective

log = logging.getLogger("lantern")

Colour = tuple[
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
    Annotated[int, Field(ge=0, le=255)],
]

#: What replaces hidden pixels in the segment-based methods: the baselines of
#: :mod:`engine.modalities.baselines`, or every segment's own mean colour (the lime default).
HideColour = Literal["zero", "mean", "blur", "segment_mean"] | Colour


class Plan(Protocol):
    """What every plan has. Plans are frozen dataclasses of plain values and numpy arrays."""

    @property
    def n_samples(self) -> int: ...


class PerturbationParams(Protocol):
    """The params every perturbation method has."""

    @property
    def batch_size(self) -> int | None: ...


PP = TypeVar("PP", bound=PerturbationParams)
PP_contra = TypeVar("PP_contra", bound=PerturbationParams, contravariant=True)
PlanT = TypeVar("PlanT", bound=Plan)


@dataclass(frozen=True)
class References:
    """The reference scores: ``f_x`` of the image, ``f_baseline`` of the fully hidden image
    (``None`` for methods that do not need it), and the passes they took."""

    f_x: float
    f_baseline: float | None
    forward_passes: int


@dataclass
class EvalStats:
    """Counts an ``evaluate`` call adds to (optional): forward passes and deduplicated masks."""

    forward_passes: int = 0
    duplicates: int = 0


class PlanBuilder(Protocol[PP_contra, PlanT]):
    """The scale-out contract (see the module docstring)."""

    name: str

    def build_plan(
        self, model: LoadedModel, image: ImageInput, objective: Objective, params: PP_contra
    ) -> PlanT: ...

    def references(
        self,
        model: LoadedModel,
        image: ImageInput,
        objective: Objective,
        params: PP_contra,
        plan: PlanT,
    ) -> References: ...

    def evaluate(
        self,
        model: LoadedModel,
        image: ImageInput,
        objective: Objective,
        params: PP_contra,
        plan: PlanT,
        start: int,
        stop: int,
        progress: Progress,
        stats: EvalStats | None = None,
    ) -> NDArray[np.float64]: ...

    def refine(
        self,
        model: LoadedModel,
        image: ImageInput,
        objective: Objective,
        params: PP_contra,
        plan: PlanT,
        scores: NDArray[np.float64],
        refs: References,
    ) -> PlanT | None: ...

    def assemble(
        self,
        model: LoadedModel,
        image: ImageInput,
        objective: Objective,
        params: PP_contra,
        plan: PlanT,
        scores: NDArray[np.float64],
        refs: References,
        forward_passes: int | None = None,
        progress: Progress = no_progress,
    ) -> Result: ...

    def expected_samples(self, plan: PlanT) -> int: ...


class PerturbationMethod(ABC, Generic[PP, PlanT]):
    """Base of the built-in builders: a method supplies its plan, its masks and its assembly.

    A sample is described by a small *code* (a window position, a segment on/off vector, a
    RISE grid and shift); :meth:`render_masks` turns codes into keep-masks at the image size
    (``True``/1 = the image's pixel, ``False``/0 = the hide image's pixel; float masks blend).
    """

    name: str = ""
    #: Whether :meth:`references` also scores the fully hidden image.
    needs_baseline_score: bool = True

    # -- what a method supplies -----------------------------------------------------------

    @abstractmethod
    def build_plan(
        self, model: LoadedModel, image: ImageInput, objective: Objective, params: PP
    ) -> PlanT: ...

    @abstractmethod
    def sample_codes(self, plan: PlanT, start: int, stop: int) -> NDArray[Any]:
        """Codes of samples ``start..stop`` (first axis); code ``i`` depends on plan and i only."""

    @abstractmethod
    def render_masks(self, plan: PlanT, codes: NDArray[Any]) -> NDArray[Any]:
        """(n, H, W) keep-masks for n codes: bool, or float32 in [0, 1]."""

    @abstractmethod
    def hide_pixels(self, image: ImageInput, params: PP, plan: PlanT) -> NDArray[np.float32]:
        """The (H, W, 3) image whose pixels replace hidden ones."""

    @abstractmethod
    def assemble(
        self,
        model: LoadedModel,
        image: ImageInput,
        objective: Objective,
        params: PP,
        plan: PlanT,
        scores: NDArray[np.float64],
        refs: References,
        forward_passes: int | None = None,
        progress: Progress = no_progress,
    ) -> Result: ...

    def refine(
        self,
        model: LoadedModel,
        image: ImageInput,
        objective: Objective,
        params: PP,
        plan: PlanT,
        scores: NDArray[np.float64],
        refs: References,
    ) -> PlanT | None:
        return None

    def expected_samples(self, plan: PlanT) -> int:
        """How many samples the whole job will have (for progress); exact unless adaptive."""
        return plan.n_samples

    def incremental(self, model: LoadedModel, params: PP, plan: PlanT) -> IncrementalRunner | None:
        """Incremental inference, for methods whose samples hide one box each (then
        :meth:`changed_boxes` gives the boxes)."""
        return None

    def changed_boxes(self, plan: PlanT, codes: NDArray[Any]) -> NDArray[np.int64]:
        """(n, 4) boxes (y0, x0, y1, x1), end exclusive, holding each code's hidden pixels."""
        raise NotImplementedError

    # -- shared -------------------------------------------------------------------------

    def references(
        self, model: LoadedModel, image: ImageInput, objective: Objective, params: PP, plan: PlanT
    ) -> References:
        imgs = [image.pixels]
        if self.needs_baseline_score:
            imgs.append(self.hide_pixels(image, params, plan))
        s = objective.value(model.scores(np.stack(imgs)))
        return References(
            f_x=float(s[0]),
            f_baseline=float(s[1]) if self.needs_baseline_score else None,
            forward_passes=len(imgs),
        )

    def evaluate(
        self,
        model: LoadedModel,
        image: ImageInput,
        objective: Objective,
        params: PP,
        plan: PlanT,
        start: int,
        stop: int,
        progress: Progress,
        stats: EvalStats | None = None,
    ) -> NDArray[np.float64]:
        if not 0 <= start <= stop <= plan.n_samples:
            raise ValueError(f"samples [{start}, {stop}) outside the plan's 0..{plan.n_samples}")
        runner = self.incremental(model, params, plan)
        # the full model's best batch serves the incremental runner too: timing the runner
        # on its own picked 16 (noise) where 4 and 8 ran drill-down 10-30% faster
        batch = params.batch_size or model.preferred_batch()
        evaluator = _Evaluator(
            model,
            objective,
            batch,
            model.to_model_input(image.pixels[None]),
            model.to_model_input(self.hide_pixels(image, params, plan)[None]),
            lambda codes: self.render_masks(plan, codes),
            None if runner is None else (runner, lambda codes: self.changed_boxes(plan, codes)),
        )
        out = evaluator.run(lambda a, b: self.sample_codes(plan, a, b), start, stop, progress)
        if stats is not None:
            stats.forward_passes += evaluator.forward_passes
            stats.duplicates += evaluator.duplicates
        return out


class _Evaluator:
    """Scores samples in forward batches of unique masks."""

    def __init__(
        self,
        model: LoadedModel,
        objective: Objective,
        batch_size: int,
        x0: NDArray[np.float32],
        xb: NDArray[np.float32],
        render: Callable[[NDArray[Any]], NDArray[Any]],
        incremental: tuple[IncrementalRunner, Callable[[NDArray[Any]], NDArray[np.int64]]]
        | None = None,
    ) -> None:
        self.model = model
        self.incremental = incremental
        self._t0: Reference | None = None
        self.objective = objective
        self.batch_size = batch_size
        self.x0 = x0
        self.xb = xb
        self.render = render
        self.forward_passes = 0
        self.duplicates = 0
        self._buffer: NDArray[np.float32] | None = None

    def _forward(self, codes: NDArray[Any]) -> NDArray[np.float64]:
        masks = self.render(codes)
        n = masks.shape[0]
        if self.incremental is not None and masks.dtype == np.bool_:
            try:
                return self._forward_incremental(codes, masks)
            except Exception:  # a user's graph the cut analysis got wrong: full passes
                log.warning("incremental inference failed; using full passes", exc_info=True)
                self.incremental = None
        if self._buffer is None or self._buffer.shape[0] < n:
            self._buffer = np.empty((n, *self.x0.shape[1:]), np.float32)
        # a reused buffer: at most batch_size images exist at a time
        batch = self.model.codec.masked_batch(self.x0, self.xb, masks, self._buffer[:n])
        self.forward_passes += n
        return self.objective.value(self.model.run(batch))

    def _forward_incremental(
        self, codes: NDArray[Any], masks: NDArray[np.bool_]
    ) -> NDArray[np.float64]:
        """Each sample's prefix on a crop around its box only (see engine.models.incremental)."""
        assert self.incremental is not None
        runner, boxes_of = self.incremental
        boxes = boxes_of(codes)
        origins = runner.origins(boxes)
        hc, wc = runner.cut.crop
        n = masks.shape[0]
        crops = np.empty((n, self.x0.shape[1], hc, wc), np.float32)
        for i in range(n):
            oy, ox = int(origins[i, 0]), int(origins[i, 1])
            rows, cols = slice(oy, oy + hc), slice(ox, ox + wc)
            np.copyto(crops[i], self.x0[0, :, rows, cols])
            np.copyto(crops[i], self.xb[0, :, rows, cols], where=~masks[i, None, rows, cols])
        if self._t0 is None:
            self._t0 = runner.reference(self.x0)
        logits = runner.scores(self._t0, crops, boxes, origins)
        self.forward_passes += n
        return self.objective.value(logits.reshape(n, -1))

    def run(
        self,
        codes_of: Callable[[int, int], NDArray[Any]],
        start: int,
        stop: int,
        progress: Progress,
    ) -> NDArray[np.float64]:
        n = stop - start
        out = np.empty(n, dtype=np.float64)
        if n == 0:
            return out
        known: dict[bytes, float] = {}
        pending: dict[bytes, int] = {}  # key -> row in pending_codes
        pending_codes: list[NDArray[Any]] = []
        waiting: list[tuple[int, bytes]] = []  # (index into out, key) not yet scored
        reported = 0.0

        def flush(done: int) -> None:
            nonlocal reported
            if pending_codes:
                scores = self._forward(np.stack(pending_codes))
                for key, row in pending.items():
                    known[key] = float(scores[row])
                pending.clear()
                pending_codes.clear()
                for j, key in waiting:
                    out[j] = known[key]
                waiting.clear()
            fraction = done / n
            if fraction > reported:
                reported = fraction
                progress(fraction)

        step = self.batch_size
        for a in range(start, stop, step):
            b = min(stop, a + step)
            codes = self.codes_block(codes_of, a, b)
            for r in range(b - a):
                j = a - start + r
                key = codes[r].tobytes()
                if key in known:
                    out[j] = known[key]
                    self.duplicates += 1
                    continue
                if key in pending:
                    self.duplicates += 1
                else:
                    pending[key] = len(pending_codes)
                    pending_codes.append(codes[r])
                waiting.append((j, key))
                if len(pending_codes) == step:
                    flush(j + 1)
        flush(n)
        return out

    @staticmethod
    def codes_block(codes_of: Callable[[int, int], NDArray[Any]], a: int, b: int) -> NDArray[Any]:
        codes = np.ascontiguousarray(codes_of(a, b))
        if codes.shape[0] != b - a:
            raise ValueError(f"sample_codes gave {codes.shape[0]} codes for [{a}, {b})")
        return codes


def hide_image(
    image: ImageInput,
    hide: HideColour,
    blur_radius: float,
    segments: NDArray[np.int32] | None = None,
) -> NDArray[np.float32]:
    """The (H, W, 3) hide image for a hide colour (``segment_mean`` needs the segments)."""
    if hide == "segment_mean":
        if segments is None:
            raise ValueError("segment_mean needs the segments")
        from engine.methods.segments import segment_mean_pixels

        return segment_mean_pixels(image.pixels, segments)
    return baseline_pixels(image.pixels, hide, blur_radius)


def sample_rng(seed: int, i: int) -> np.random.Generator:
    """The random generator of sample ``i``: a function of (seed, i) only."""
    return np.random.default_rng([seed, i])


def run_plan(
    builder: PlanBuilder[PP, PlanT],
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: PP,
    progress: Progress,
    chunk: int | None = None,
) -> Result:
    """A whole job in this process: what the registry's ``fn`` does.

    ``chunk`` evaluates each round in pieces of that many samples, as split jobs do (the
    result is the same bit for bit; progress is reported per forward batch either way).
    """
    plan = builder.build_plan(model, image, objective, params)
    refs = builder.references(model, image, objective, params, plan)
    stats = EvalStats()
    parts: list[NDArray[np.float64]] = []
    reported = [0.0]
    done = 0
    while True:
        n = plan.n_samples
        total = max(builder.expected_samples(plan), n, 1)
        step = n - done if chunk is None else chunk
        for a in range(done, n, max(step, 1)):
            b = min(n, a + max(step, 1))

            def scaled(fraction: float, a: int = a, b: int = b, total: int = total) -> None:
                # never backwards, even when an adaptive plan outgrows its estimate
                reported[0] = max(reported[0], min(1.0, (a + fraction * (b - a)) / total))
                progress(reported[0])

            parts.append(
                builder.evaluate(model, image, objective, params, plan, a, b, scaled, stats)
            )
        done = n
        scores = np.concatenate(parts) if parts else np.empty(0, dtype=np.float64)
        nxt = builder.refine(model, image, objective, params, plan, scores, refs)
        if nxt is None:
            break
        if nxt.n_samples < n:
            raise ValueError("refine must keep the plan's samples")
        plan = nxt
    return builder.assemble(
        model,
        image,
        objective,
        params,
        plan,
        scores,
        refs,
        refs.forward_passes + stats.forward_passes,
    )


# -- plans on the wire ----------------------------------------------------------------------

_PLAN_TYPES: dict[str, type[Any]] = {}

T = TypeVar("T")


def plan_type(cls: type[T]) -> type[T]:
    """Class decorator: a plan dataclass that :func:`dump_plan`/:func:`load_plan` may carry."""
    _PLAN_TYPES[cls.__name__] = cls
    return cls


def dump_plan(plan: Plan) -> bytes:
    """A plan as bytes (an ``.npz``: arrays as arrays, other fields as JSON; no pickle),
    for handing it to the workers that evaluate its chunks."""
    import dataclasses
    import io
    import json

    if not dataclasses.is_dataclass(plan) or type(plan).__name__ not in _PLAN_TYPES:
        raise TypeError(f"{type(plan).__name__} is not a registered plan type")
    arrays: dict[str, NDArray[Any]] = {}
    meta: dict[str, Any] = {}
    for f in dataclasses.fields(plan):
        v = getattr(plan, f.name)
        if isinstance(v, np.ndarray):
            arrays[f.name] = v
        else:
            meta[f.name] = v
    buf = io.BytesIO()
    header = json.dumps({"type": type(plan).__name__, "fields": meta})
    np.savez(buf, __plan__=np.frombuffer(header.encode(), dtype=np.uint8), **arrays)
    return buf.getvalue()


def load_plan(data: bytes) -> Any:
    """The plan :func:`dump_plan` wrote."""
    import io
    import json

    with np.load(io.BytesIO(data), allow_pickle=False) as npz:
        header = json.loads(bytes(npz["__plan__"]).decode())
        arrays = {k: npz[k] for k in npz.files if k != "__plan__"}
    cls = _PLAN_TYPES[header["type"]]
    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in header["fields"].items()}
    return cls(**fields, **arrays)
