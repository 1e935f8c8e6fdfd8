"""Neuron groups by non-negative matrix factorisation (Olah et al., "The Building Blocks of
Interpretability", Distill 2018).

One image's activations at a layer, as a (positions × channels) matrix A ≥ 0, are
factorised by scikit-learn's NMF into k groups: A ≈ W H, W (positions × k) ≥ 0 says where
each group is, H (k × channels) ≥ 0 what it is (its direction in channel space).

* **Group maps**: the part of the reconstruction's norm at each position that each group
  carries, M_g(p) = W_pg ⟨H_g, R_p⟩ / ‖R_p‖ with R = W H. They are non-negative (every
  factor is) and sum to ‖R_p‖ exactly, so their sum differs from the activation norm map
  ‖A_p‖ by at most ‖A_p − R_p‖ at each position: over the map, by at most the
  factorisation's (Frobenius) error.
* **Attributions** to the target: gradient × activation at the layer, split among the
  groups in proportion to their share of each reconstructed entry,
  attr_g = Σ_{p,c} G_pc A_pc W_pg H_gc / R_pc (an entry with R_pc = 0 is split evenly),
  so the groups' attributions sum to the layer's total Σ G ⊙ A.
* **Feature visualisations**: each group's direction H_g as a ``direction`` objective at
  the layer, optimised as one batch as ``feature_visualisation`` does.

Answer: ``groups`` (the maps, colours and attributions; ``?format=png`` the colour-coded
map, ``overlay`` over the image), ``key`` (the colour key as a table), ``group_<g>``
(each group's visualisation). Groups are ordered by their total map, largest first.
"""

from __future__ import annotations

import warnings

import numpy as np
from numpy.typing import NDArray
from pydantic import BaseModel, ConfigDict, Field
from sklearn.decomposition import NMF
from sklearn.exceptions import ConvergenceWarning

from engine.artifact_types.inside import Groups, hex_colour
from engine.artifacts import Artifact, ImageArtifact, Result, Table
from engine.errors import InvalidParams
from engine.methods.backprop import gradients
from engine.methods.base import MethodSpec, Progress, ScaledProgress
from engine.methods.layer_maps import to_chw
from engine.methods.registry import register
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import Direction, Objective, ScoreKind, class_index
from engine.render.groups import group_colours
from engine.visualisation.grid import to_uint8
from engine.visualisation.layers import check_size, layer_dims, spatial_layer
from engine.visualisation.optimise import Settings, optimise

MAX_GROUPS = 12


class NmfGroupsParams(BaseModel):
    model_config = ConfigDict(extra="forbid")

    layer: str | None = Field(
        default=None,
        description="A spatial layer with non-negative activations (after a ReLU); default: "
        "the last spatial layer before global pooling.",
    )
    groups: int = Field(default=6, ge=1, le=MAX_GROUPS, description="Groups (NMF components).")
    max_iter: int = Field(default=500, ge=10, le=5000, description="NMF iterations at most.")
    visualise: bool = Field(
        default=True, description="Draw each group's feature visualisation (its direction)."
    )
    size: int = Field(default=128, ge=8, le=4096,
                      description="Side of each group's visualisation (≤ the model's input).")
    steps: int = Field(default=256, ge=1, le=4096, description="Optimisation steps.")
    learning_rate: float = Field(default=0.05, gt=0.0, le=10.0, description="Adam's step.")
    transforms: bool = Field(default=True, description="Lucid's random transforms.")
    decorrelate: bool = Field(default=True, description="Lucid's colour decorrelation.")
    seed: int = Field(default=0, ge=0, le=2**32 - 1,
                      description="Seed of the NMF's initialisation and the visualisations.")
    score: ScoreKind = Field(default="logit", description="The target's score.")


def cost(params: NmfGroupsParams, model: LoadedModel) -> int:
    """A forward+backward pass, and a step per group per step of the visualisations."""
    return 1 + (params.groups * params.steps if params.visualise else 0)


def check(params: NmfGroupsParams, model: LoadedModel) -> None:
    layer = spatial_layer(model, params.layer)
    c, h, w = layer_dims(model, layer)
    if c is not None and h is not None and w is not None and params.groups > min(c, h * w):
        raise InvalidParams(
            f"{params.groups} groups cannot be found in layer {layer!r} ({c} channels at "
            f"{h}×{w} positions): ask for at most {min(c, h * w)}.",
            details={"groups": params.groups, "limit": min(c, h * w)},
        )
    if params.visualise:
        check_size(params.size, model)
    model.check_gradients(layer)


def factorise(
    a: NDArray[np.floating], k: int, seed: int, max_iter: int
) -> tuple[NDArray[np.float64], NDArray[np.float64], float, int]:
    """scikit-learn's NMF of a (positions × channels) ≥ 0: (W, H, reconstruction error
    (Frobenius), iterations)."""
    nmf = NMF(n_components=k, random_state=seed, max_iter=max_iter)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        w = nmf.fit_transform(np.asarray(a, np.float64))
    return w, np.asarray(nmf.components_, np.float64), float(nmf.reconstruction_err_), int(
        nmf.n_iter_
    )


def group_maps(w: NDArray[np.float64], h: NDArray[np.float64]) -> NDArray[np.float64]:
    """(k, positions): M_g(p) = W_pg ⟨H_g, R_p⟩ / ‖R_p‖, summing to ‖R_p‖ over g."""
    r = w @ h
    norm = np.linalg.norm(r, axis=1)
    dots = r @ h.T  # (positions, k): ⟨R_p, H_g⟩
    out = w * dots / np.where(norm > 0, norm, 1.0)[:, None]
    return np.ascontiguousarray(out.T)


def group_attributions(
    a: NDArray[np.float64], g: NDArray[np.float64], w: NDArray[np.float64], h: NDArray[np.float64]
) -> NDArray[np.float64]:
    """(k,): gradient × activation split by each group's share of each reconstructed entry."""
    ga = g * a
    r = w @ h
    positive = r > 0
    q = np.where(positive, ga / np.where(positive, r, 1.0), 0.0)
    attr: NDArray[np.float64] = (w * (q @ h.T)).sum(axis=0) + float(ga[~positive].sum()) / (
        w.shape[1]
    )
    return attr


def nmf_groups(
    model: LoadedModel,
    image: ImageInput,
    objective: Objective,
    params: NmfGroupsParams,
    progress: Progress,
) -> Result:
    class_index(objective)
    check(params, model)
    layer = spatial_layer(model, params.layer)
    x = model.to_model_input(image.pixels[None])
    out, grad, act, passes = gradients(model, x, objective, wrt=layer)
    assert act is not None
    a3, g3 = to_chw(act, model), to_chw(grad, model)  # (C, h, w)
    c, hh, ww = a3.shape
    a = a3.reshape(c, -1).T.astype(np.float64)  # positions × channels
    g = g3.reshape(c, -1).T.astype(np.float64)
    low = float(a.min())
    if low < 0:
        raise InvalidParams(
            f"Layer {layer!r} has negative activations (down to {low:.3g}) on this image; NMF "
            "needs non-negative ones: pick a layer after a ReLU (e.g. an activation layer).",
            details={"layer": layer, "min": low},
        )
    k = min(params.groups, c, hh * ww)
    w, h, err, iters = factorise(a, k, params.seed, params.max_iter)
    maps = group_maps(w, h)
    attr = group_attributions(a, g, w, h)
    order = np.argsort(-maps.sum(axis=1), kind="stable")
    w, h, maps, attr = w[:, order], h[order], maps[order], attr[order]
    progress(0.1 if params.visualise else 1.0)
    colours = group_colours(k)
    names = [f"group_{i}" for i in range(k)]
    artifacts: list[Artifact] = [
        Groups("groups", maps.reshape(k, hh, ww).astype(np.float32), colours, attr,
               names if params.visualise else [], layer),
    ]
    total = float((g * a).sum())
    share = attr / total if total != 0 else np.zeros_like(attr)
    artifacts.append(Table(
        "key", ["group", "colour", "attribution", "share", "mass"],
        [[i, hex_colour(colours[i]), float(attr[i]), float(share[i]), float(maps[i].sum())]
         for i in range(k)],
    ))
    backward = 1
    if params.visualise:
        axis = -1 if model.channels_last else 1
        units: list[Objective] = []
        for i in range(k):
            v = h[i] / (np.linalg.norm(h[i]) or 1.0)
            units.append(Direction(layer, axis, tuple(float(t) for t in v)))
        settings = Settings(size=params.size, steps=params.steps,
                            learning_rate=params.learning_rate, transforms=params.transforms,
                            decorrelate=params.decorrelate, seed=params.seed)
        run = optimise(model, units, list(range(k)), settings, ScaledProgress(progress, 0.1, 0.9))
        passes += run.passes
        backward += params.steps * k
        artifacts.extend(
            ImageArtifact(names[i], to_uint8(run.rgb[i]), f"group {i} of {layer}")
            for i in range(k)
        )
    norm_a = float(np.linalg.norm(a))
    return Result(
        artifacts,
        model_calls=passes,
        views={"png": "groups", "overlay": "groups"},
        output=out.reshape(out.shape[0], -1),
        extras={
            "layer": layer,
            "layer_shape": [c, hh, ww],
            "groups": k,
            "reconstruction_error": err,
            "relative_error": err / norm_a if norm_a > 0 else 0.0,
            "nmf_iterations": iters,
            "attribution": [float(v) for v in attr],
            "attribution_total": total,
            "attribution_of_reconstruction": float((g * (w @ h)).sum()),
            "directions": [[float(t) for t in row] for row in h] if c <= 64 else None,
            "backward_passes": backward,
        },
    )


SPEC = register(
    MethodSpec(
        name="nmf_groups",
        params_model=NmfGroupsParams,
        fn=nmf_groups,
        description="Building Blocks' neuron groups: NMF of a layer's activations on the image "
        "into k groups; a colour-coded map, each group's attribution to the target "
        "(gradient × activation) and its feature visualisation.",
        kind="visualisation",
        execution="job",
        inputs="item",
        objectives=("class",),
        check=check,
        cost=cost,
    )
)
