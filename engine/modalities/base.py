"""The modality codec contract (MLServer's codecs are the model): one codec per kind of
input turns what a caller sends into what a model and a method need.

A codec is built per model from its manifest. It

* ``validate``\\ s a caller's raw input at submit (cheap; typed errors, never a 500),
* ``decode``\\ s it into an *item* — for images an :class:`~engine.modalities.image.ImageInput`
  at the model's input size — once per process and job,
* turns a batch of items into the model's input tensor (``to_model_input``), and one item
  into a batch of one (``item_input``),
* gives baselines (the reference a perturbation hides towards, a path's start), and
* composes masked batches: each sample keeps the item where its mask is true and the
  baseline elsewhere.

Methods declare which modalities they take (``MethodSpec.modalities``).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import numpy as np
import onnxruntime as ort
from numpy.typing import NDArray

ItemT = TypeVar("ItemT")
ItemT_co = TypeVar("ItemT_co", covariant=True)


class Codec(Protocol[ItemT]):
    modality: str

    def validate(self, data: bytes) -> None:
        """Refuse (typed error) input this codec cannot decode."""

    def decode(self, data: bytes) -> ItemT:
        """The caller's bytes -> one item ready for the model's preprocessing."""

    def to_model_input(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """A batch of items' features -> the model's input tensor."""

    def item_input(self, item: ItemT) -> NDArray[np.float32]:
        """One decoded item -> the model's input tensor at batch 1 (what ``explain`` runs
        to name "top1" and to score the target, whatever the modality)."""

    def baseline(self, item: ItemT, name: Any, blur_radius: float = 10.0) -> NDArray[np.float32]:
        """A reference of the item's shape (the hidden value of perturbation methods)."""

    def masked_batch(
        self,
        x0: NDArray[np.float32],
        xb: NDArray[np.float32],
        masks: NDArray[Any],
        out: NDArray[np.float32],
    ) -> NDArray[np.float32]:
        """Model-space samples: ``x0`` where ``masks`` keep, ``xb`` where they hide."""


@dataclass(frozen=True)
class GraphCheck:
    """What a modality found in an uploaded graph that agrees with its manifest: the input
    fed, the output explained (the class scores) and its class count."""

    input_name: str
    output_name: str
    num_classes: int


@dataclass(frozen=True)
class Modality:
    """One kind of input, registered once by its module in ``engine/modalities/``.

    * ``codec(manifest, max_pixels)``: the model's codec (see :class:`Codec`).
    * ``check_graph(session, manifest)``: at registration, refuse (typed errors) a graph
      whose inputs and outputs disagree with the manifest; run it once on a test input.
    * ``inference_dims(manifest)``: the input's shape at batch 1 for static shape inference
      (None: leave the graph's own).
    """

    name: str
    codec: Callable[[Any, int], Codec[Any]]
    check_graph: Callable[[ort.InferenceSession, Any], GraphCheck]
    inference_dims: Callable[[Any], list[int] | None]


def check_label_count(num_classes: int, labels: list[str]) -> None:
    """Refuse a manifest whose labels do not name the output's classes one to one."""
    from engine.errors import InvalidManifest

    if num_classes != len(labels):
        raise InvalidManifest(
            f"The model's output has {num_classes} classes but the manifest lists "
            f"{len(labels)} labels. Give exactly one label per output class.",
            details={"outputs": num_classes, "labels": len(labels)},
        )
