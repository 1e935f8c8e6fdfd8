"""What the "inside the network" methods on an image share (`nmf_groups`,
`semantic_dictionary`): their layer, checked with stable codes, and the size of the
images they optimise."""

from __future__ import annotations

from engine.errors import InvalidParams, UnknownLayer
from engine.methods.layer_maps import resolve_layer
from engine.models.runtime import LoadedModel


def spatial_layer(model: LoadedModel, layer: str | None) -> str:
    """The named layer, or the default CAM layer: 422 ``unknown_layer`` for a name the
    model does not have, ``invalid_params`` for a layer with no spatial extent."""
    if layer is not None and layer not in model.layer_shapes():
        raise UnknownLayer(
            f"The model has no layer {layer!r}. Pick one listed by GET /v1/models/{{model}}.",
            details={"layer": layer, "layers": list(model.layer_shapes())[-20:]},
        )
    return resolve_layer(model, layer)


def layer_dims(model: LoadedModel, layer: str) -> tuple[int | None, int | None, int | None]:
    """(channels, height, width) of a rank-4 layer from shape inference (None: unknown)."""
    shape = model.layer_shapes().get(layer, ())
    if len(shape) != 4:
        return None, None, None
    axes = (3, 1, 2) if model.channels_last else (1, 2, 3)
    dims = [shape[a] for a in axes]
    c, h, w = (d if isinstance(d, int) and d > 0 else None for d in dims)
    return c, h, w


def check_size(size: int, model: LoadedModel) -> None:
    h, w = model.input_hw
    if size > min(h, w):
        raise InvalidParams(
            f"size {size} is larger than the model's input ({h}×{w}); ask for at "
            f"most {min(h, w)}.",
            details={"size": size, "input_size": [h, w]},
        )
