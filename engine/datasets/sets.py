"""Input sets of a dataset: which images a request means by "label 3", "predicted cat",
"the misclassified ones" or a list of ids — one rule for every dataset analysis (the
activation distributions compare sets; an embedding can colour its points by them).

A set is a :class:`SetSpec`::

    {"by": "label", "value": "3"}        the images labelled 3 (the dataset's class name)
    {"by": "prediction", "value": "cat"} the images the model predicts as cat (a label of
                                         the model, or a class index)
    {"by": "correct"} / {"by": "incorrect"}  the labelled images the model gets right/wrong
    {"by": "all"}                        every image
    {"ids": ["3/0001.png", ...]}         these images (ids as GET /v1/datasets lists them)

each with an optional ``name``. A request gives a list of them, or a shorthand that splits
the dataset by every label (``"by_label"``) or every predicted class (``"by_prediction"``).

Checks come in two steps, so that a request is refused before it is queued: against the
model (:func:`check_against_model`: prediction values are its classes) and against the
dataset (:func:`check_against_dataset`: labels and ids exist); the membership itself
(:func:`resolve_sets`) needs the model's predictions when a set is by prediction or by
correctness, and refuses an empty set.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field, model_validator

from engine.errors import InvalidInput, InvalidParams, UnknownLabel

By = Literal["label", "prediction", "correct", "incorrect", "all"]
Shorthand = Literal["by_label", "by_prediction"]

#: The most ids one set may list (a request body bound, not a dataset's).
MAX_IDS = 100_000


class SetSpec(BaseModel):
    """One input set: ``by`` a rule (with its ``value`` for a label or a prediction), or an
    explicit list of image ``ids``."""

    model_config = ConfigDict(extra="forbid")

    by: By | None = Field(default=None, description="label, prediction, correct, incorrect "
                          "or all (leave out with `ids`).")
    value: str | int | None = Field(default=None, description="The label (by label) or the "
                                    "predicted class, by label name or index (by prediction).")
    ids: list[str] | None = Field(default=None, min_length=1, max_length=MAX_IDS,
                                  description="Image ids of the dataset (instead of `by`).")
    name: str | None = Field(default=None, min_length=1, max_length=80,
                             description="What to call the set (default: from its rule).")

    @model_validator(mode="after")
    def _one_rule(self) -> SetSpec:
        if (self.by is None) == (self.ids is None):
            raise ValueError('give a set either "by" (label, prediction, correct, incorrect, '
                             'all) or "ids", not both')
        if self.by in ("label", "prediction") and self.value is None:
            raise ValueError(f'a set by {self.by} needs its "value"')
        if self.by in ("correct", "incorrect", "all") and self.value is not None:
            raise ValueError(f'a set by {self.by} takes no "value"')
        if self.ids is not None and self.value is not None:
            raise ValueError('a set of "ids" takes no "value"')
        return self

    @property
    def title(self) -> str:
        if self.name is not None:
            return self.name
        if self.ids is not None:
            return f"ids ({len(self.ids)})"
        if self.by in ("label", "prediction"):
            return f"{self.by} {self.value}"
        return str(self.by)

    @property
    def needs_predictions(self) -> bool:
        return self.by in ("prediction", "correct", "incorrect")


@dataclass(frozen=True)
class InputSet:
    """A resolved set: its name, its rule (JSON) and its members (dataset indices, sorted)."""

    name: str
    rule: dict[str, Any]
    members: NDArray[np.int64]

    def __len__(self) -> int:
        return int(self.members.shape[0])


def class_index(value: str | int, labels: Sequence[str], n_classes: int | None = None
                ) -> int | None:
    """A model class by label name, or by index (an int, or a digit string that is not a
    label name); None when it names none."""
    n = len(labels) if n_classes is None else n_classes
    if isinstance(value, str) and value in labels:
        return list(labels).index(value)
    text = str(value)
    if text.lstrip("-").isdigit() and 0 <= int(text) < n:
        return int(text)
    return None


def true_classes(dataset: Any, model_labels: Sequence[str]) -> NDArray[np.int64]:
    """Each image's true class as the model's class index (-1: unlabelled, or a label that
    names no class of the model): by label name, else a numeric label as the index."""
    pos = {name: i for i, name in enumerate(model_labels)}
    out = np.full(len(dataset), -1, np.int64)
    mapped = [pos.get(c, int(c) if c.isdigit() and int(c) < len(model_labels) else -1)
              for c in dataset.classes]
    for i, k in enumerate(np.asarray(dataset.labels).tolist()):
        if k >= 0:
            out[i] = mapped[k]
    return out


def expand(sets: Sequence[SetSpec] | Shorthand, dataset: Any, model_labels: Sequence[str],
           predicted: Callable[[], NDArray[np.int64]] | None = None) -> list[SetSpec]:
    """The set specs of a request (a shorthand split into one set per label present, or
    per class predicted)."""
    if sets == "by_label":
        present = sorted({int(k) for k in np.asarray(dataset.labels).tolist() if k >= 0})
        if not present:
            raise InvalidInput(
                f"Dataset {dataset.name!r} has no labels to split by: give the sets by "
                'prediction or by ids, or label the dataset (a folder per class).',
                details={"dataset": dataset.name, "sets": "by_label"},
            )
        return [SetSpec(by="label", value=dataset.classes[k]) for k in present]
    if sets == "by_prediction":
        if predicted is None:
            return []
        classes = sorted(set(predicted().tolist()))
        return [SetSpec(by="prediction", value=int(c),
                        name=f"prediction {name_of(c, model_labels)}") for c in classes]
    return list(sets)


def name_of(c: int, labels: Sequence[str]) -> str:
    return labels[c] if 0 <= c < len(labels) else str(c)


def check_names(specs: Sequence[SetSpec]) -> None:
    titles = [s.title for s in specs]
    twice = sorted({t for t in titles if titles.count(t) > 1})
    if twice:
        raise InvalidParams(
            f"Two sets are called {twice[0]!r}: give each set its own `name`.",
            details={"sets": titles, "repeated": twice},
        )


def check_against_model(specs: Sequence[SetSpec] | Shorthand, model_labels: Sequence[str],
                        n_classes: int | None = None) -> None:
    """Refuse a prediction value that names no class of the model (422 unknown_label)."""
    if isinstance(specs, str):
        return
    check_names(specs)
    for s in specs:
        if s.by == "prediction" and s.value is not None and class_index(
                s.value, model_labels, n_classes) is None:
            raise UnknownLabel(
                f"Set {s.title!r}: the model has no class {s.value!r}. Name a prediction by "
                "one of the model's labels (GET /v1/models/{model}) or by a class index.",
                details={"set": s.title, "value": s.value, "labels": list(model_labels)[:50]},
            )


def check_against_dataset(specs: Sequence[SetSpec] | Shorthand, dataset: Any) -> None:
    """Refuse a label the dataset has not (422 unknown_label) and ids it has not (422
    invalid_params, naming the first few)."""
    if specs == "by_label":
        expand(specs, dataset, [])
        return
    if isinstance(specs, str):
        return
    known_ids: set[str] | None = None
    for s in specs:
        if s.by == "label" and str(s.value) not in dataset.classes:
            raise UnknownLabel(
                f"Set {s.title!r}: dataset {dataset.name!r} has no label {str(s.value)!r}. "
                "Use one of its classes (GET /v1/datasets/{dataset}).",
                details={"set": s.title, "value": s.value, "classes": dataset.classes[:50]},
            )
        if s.ids is not None:
            known_ids = set(dataset.ids()) if known_ids is None else known_ids
            unknown = [i for i in s.ids if i not in known_ids]
            if unknown:
                raise InvalidParams(
                    f"Set {s.title!r}: {len(unknown)} of its ids are not images of dataset "
                    f"{dataset.name!r} (first: {unknown[0]!r}). Use the ids the dataset's "
                    "analyses report (its paths, such as \"3/0001.png\").",
                    details={"set": s.title, "unknown_ids": unknown[:20],
                             "unknown": len(unknown)},
                )


def resolve_sets(specs: Sequence[SetSpec] | Shorthand, dataset: Any,
                 model_labels: Sequence[str],
                 predicted: Callable[[], NDArray[np.int64]] | None = None,
                 allow_empty: bool = False) -> list[InputSet]:
    """The members of each set. ``predicted()`` gives each image's predicted class (asked
    only when a set needs it). An empty set is refused (422 invalid_params) unless
    ``allow_empty``."""
    check_against_dataset(specs, dataset)
    specs = expand(specs, dataset, model_labels, predicted)
    check_against_model(specs, model_labels)
    check_names(specs)
    n = len(dataset)
    labels = np.asarray(dataset.labels)
    pred: NDArray[np.int64] | None = None
    truth: NDArray[np.int64] | None = None
    index: dict[str, int] | None = None
    out: list[InputSet] = []
    for s in specs:
        if s.needs_predictions and pred is None:
            if predicted is None:
                raise InvalidParams(  # pragma: no cover - the callers pass predictions
                    f"Set {s.title!r} needs the model's predictions.", details={"set": s.title})
            pred = np.asarray(predicted(), np.int64)
        if s.ids is not None:
            index = {k: i for i, k in enumerate(dataset.ids())} if index is None else index
            mask = np.zeros(n, bool)
            mask[[index[k] for k in s.ids]] = True
        elif s.by == "all":
            mask = np.ones(n, bool)
        elif s.by == "label":
            mask = labels == dataset.classes.index(str(s.value))
        elif s.by == "prediction":
            assert pred is not None and s.value is not None
            mask = pred == class_index(s.value, model_labels, None)
        else:
            assert pred is not None
            truth = true_classes(dataset, model_labels) if truth is None else truth
            if not (truth >= 0).any():
                raise InvalidInput(
                    f"Set {s.title!r}: dataset {dataset.name!r} has no labels that name the "
                    "model's classes, so no image is correct or incorrect. Label it with the "
                    "model's labels, or give the sets by label, prediction or ids.",
                    details={"set": s.title, "dataset": dataset.name,
                             "classes": dataset.classes[:50]},
                )
            hit = pred == truth
            mask = (truth >= 0) & (hit if s.by == "correct" else ~hit)
        members = np.flatnonzero(mask).astype(np.int64)
        if not len(members) and not allow_empty:
            raise InvalidParams(
                f"Set {s.title!r} holds no image of dataset {dataset.name!r}: there is "
                "nothing to describe. Choose another set (or leave this one out).",
                details={"set": s.title, "rule": s.model_dump(exclude_none=True)},
            )
        out.append(InputSet(s.title, s.model_dump(exclude_none=True), members))
    return out
