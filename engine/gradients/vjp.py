"""Run a VJP model on a batch of any size: pad up to the bucket, slice back, chunk above."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import onnxruntime as ort

from engine.errors import InvalidInput

from .builder import ACTIVATION, GRAD, SEED, GradientModel


@dataclass(frozen=True)
class VJPResult:
    """What a VJP model returns for n images.

    `logits` holds the value of the model's chosen output, ``[n, *output_shape]``: the
    logits ``[n, C]`` for a classifier head, or the inner layer's value when the model was
    built for one (the name stays for the common case; `output` is an alias).
    """

    logits: np.ndarray              # the output's value, [n, *GradientModel.output_shape]
    grad: np.ndarray                # shape of x (or of the layer) for the n images
    activation: np.ndarray | None   # the layer's value, when wrt is a layer

    @property
    def output(self) -> np.ndarray:
        """The value of the chosen output (the same array as `logits`)."""
        return self.logits


def _pad(array: np.ndarray, size: int) -> np.ndarray:
    if array.shape[0] == size:
        return np.ascontiguousarray(array)
    padding = np.zeros((size - array.shape[0], *array.shape[1:]), dtype=array.dtype)
    return np.concatenate([array, padding], axis=0)


def vjp(session: ort.InferenceSession, gm: GradientModel, x: np.ndarray,
        seed: np.ndarray) -> VJPResult:
    """The output, d(sum(seed * output))/d(wrt) and the activation for images `x`.

    `x` is ``[n, ...]`` and `seed` ``[n, *gm.output_shape]`` (``[n, C]`` for logits); n
    may differ from the bucket size. Padding images are zeros with a zero seed, so they
    contribute nothing and are sliced away. A seed of another shape is refused
    (`InvalidInput`).
    """
    n = int(x.shape[0])
    want = (n, *gm.output_shape)
    if tuple(seed.shape) != want:
        raise InvalidInput(f"seed must have shape {list(want)}, got {list(seed.shape)}",
                           details={"seed_shape": list(seed.shape),
                                    "expected": list(want)})
    if n == 0:
        raise InvalidInput("no images given")
    wanted = [gm.output, GRAD] + ([ACTIVATION] if gm.is_layer else [])
    x = x.astype(np.float32, copy=False)
    seed = seed.astype(np.float32, copy=False)
    values: list[np.ndarray] = []
    grads: list[np.ndarray] = []
    activations: list[np.ndarray] = []
    for start in range(0, n, gm.batch):
        stop = min(n, start + gm.batch)
        feeds = {gm.input_name: _pad(x[start:stop], gm.batch),
                 SEED: _pad(seed[start:stop], gm.batch)}
        outputs = session.run(wanted, feeds)
        count = stop - start
        values.append(np.asarray(outputs[0])[:count])
        grads.append(np.asarray(outputs[1])[:count])
        if gm.is_layer:
            activations.append(np.asarray(outputs[2])[:count])

    def join(parts: list[np.ndarray]) -> np.ndarray:
        return parts[0] if len(parts) == 1 else np.concatenate(parts, axis=0)

    return VJPResult(logits=join(values), grad=join(grads),
                     activation=join(activations) if activations else None)
