"""One explanation, start to end: decode, prepare, resolve the target, run the method."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from PIL import Image

from engine.data.image import prepare_image
from engine.methods.base import Attribution, MethodSpec, Progress
from engine.models.runtime import LoadedModel, softmax
from engine.targets import resolve_target


@dataclass
class Explanation:
    attribution: Attribution
    target_index: int
    target_label: str
    target_score: float
    model_calls: int


def explain(
    model: LoadedModel,
    image: Image.Image,
    spec: MethodSpec[Any],
    params: Any,
    target: int | str,
    progress: Progress,
) -> Explanation:
    inp = prepare_image(image, model.manifest)
    logits = model.scores(inp.pixels[None])[0]
    index = resolve_target(target, model.labels, logits)
    attribution = spec.fn(model, inp, index, params, progress)
    return Explanation(
        attribution=attribution,
        target_index=index,
        target_label=model.labels[index],
        target_score=float(softmax(logits[None])[0, index]),
        model_calls=1 + attribution.model_calls,
    )
