"""Methods over a folder of images: deletion and insertion AUC, runtime and cost per method.

:func:`evaluate_folder` explains every image of a folder with each method (target "top1"
by default, resolved on the image's own prediction), scores each map with
:func:`~engine.quality.deletion_insertion.deletion` and
:func:`~engine.quality.deletion_insertion.insertion`, and returns one :class:`EvalRow` per
method with the means; :func:`format_table` prints them (markdown or plain text).
Runtime and forward passes are the method's own (``Result.model_calls``), not the
metrics'.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import numpy as np
from numpy.typing import NDArray
from PIL import Image

from engine.methods.base import no_progress
from engine.methods.registry import get_method
from engine.modalities.image import ImageInput, prepare_image, to_rgb
from engine.models.runtime import LoadedModel
from engine.objectives import class_score
from engine.quality.deletion_insertion import deletion, insertion
from engine.quality.metrics import DeletionParams, InsertionParams
from engine.quality.pointing import Box, PointingResult, Ties, hit_rate, pointing_game
from engine.targets import resolve_target

TableStyle = Literal["markdown", "plain"]
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp")


@dataclass(frozen=True)
class EvalRow:
    method: str
    images: int
    deletion_auc: float  # mean; lower is better
    insertion_auc: float  # mean; higher is better
    runtime_s: float  # mean seconds of the method itself
    forward_passes: float  # mean Result.model_calls
    backward_passes: float  # mean extras["backward_passes"] (0 for perturbation methods)
    metric_forward_passes: float  # mean forward passes of the two curves

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def image_files(folder: Path) -> list[Path]:
    """The image files directly in ``folder``, sorted by name."""
    if not Path(folder).is_dir():
        raise ValueError(f"{folder} is not a folder")
    return sorted(
        p for p in Path(folder).iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES
    )


def load_images(model: LoadedModel, folder: Path, limit: int | None = None) -> list[ImageInput]:
    """The folder's images, resized and converted as the model's manifest says."""
    out: list[ImageInput] = []
    for path in image_files(folder)[:limit]:
        with Image.open(path) as img:
            img.load()
            out.append(prepare_image(to_rgb(img), model.image_manifest))
    return out


def evaluate_folder(
    model: LoadedModel,
    folder: Path,
    methods: Sequence[str],
    params_by_method: Mapping[str, Mapping[str, Any]] | None = None,
    target: int | str = "top1",
    *,
    deletion_params: DeletionParams | None = None,
    insertion_params: InsertionParams | None = None,
    limit: int | None = None,
    warmup: bool = True,
    log: Callable[[str], None] | None = None,
) -> list[EvalRow]:
    """One row per method: mean deletion/insertion AUC, runtime and passes over the images
    in ``folder`` (at most ``limit``). ``params_by_method`` maps a method name to its raw
    params (validated with the method's params model; defaults for the rest). With
    ``warmup``, gradient, CAM and activation methods first run once untimed, so the
    runtime does not include building their cached gradient models."""
    images = load_images(model, folder, limit)
    if not images:
        raise ValueError(f"no images in {folder} (looked for {', '.join(IMAGE_SUFFIXES)})")
    dp = deletion_params or DeletionParams()
    ip = insertion_params or InsertionParams()
    raw_params = params_by_method or {}
    targets: list[int] = []
    for inp in images:
        logits = model.scores(inp.pixels[None])[0]
        targets.append(resolve_target(target, model.labels, logits))
    rows: list[EvalRow] = []
    for name in methods:
        spec = get_method(name)
        params = spec.parse_params(dict(raw_params.get(name, {})))
        spec.check(params, model)
        if warmup and spec.kind in ("gradient", "cam", "activation"):
            spec.fn(model, images[0], class_score(model, targets[0], params), params, no_progress)
        dels: list[float] = []
        ins: list[float] = []
        times: list[float] = []
        fwd: list[int] = []
        bwd: list[int] = []
        metric_fwd: list[int] = []
        for i, (inp, t) in enumerate(zip(images, targets, strict=True)):
            t0 = time.perf_counter()
            att = spec.fn(model, inp, class_score(model, t, params), params, no_progress)
            times.append(time.perf_counter() - t0)
            fwd.append(att.model_calls)
            bwd.append(int(att.extras.get("backward_passes", 0)))
            d = deletion(
                model,
                inp.pixels,
                t,
                att.values,
                pixels_per_step=dp.pixels_per_step,
                substrate=dp.substrate,
                batch_size=dp.batch_size,
            )
            s = insertion(
                model,
                inp.pixels,
                t,
                att.values,
                pixels_per_step=ip.pixels_per_step,
                start=ip.substrate,
                batch_size=ip.batch_size,
            )
            dels.append(d.auc)
            ins.append(s.auc)
            metric_fwd.append(d.forward_passes + s.forward_passes)
            if log is not None:
                log(
                    f"{name} image {i + 1}/{len(images)}: deletion {d.auc:.3f} "
                    f"insertion {s.auc:.3f} ({times[-1]:.2f} s)"
                )
        rows.append(
            EvalRow(
                method=name,
                images=len(images),
                deletion_auc=float(np.mean(dels)),
                insertion_auc=float(np.mean(ins)),
                runtime_s=float(np.mean(times)),
                forward_passes=float(np.mean(fwd)),
                backward_passes=float(np.mean(bwd)),
                metric_forward_passes=float(np.mean(metric_fwd)),
            )
        )
    return rows


@dataclass(frozen=True)
class PointingRow:
    method: str
    images: int
    hits: int
    hit_rate: float
    runtime_s: float  # mean seconds of the method itself
    forward_passes: float  # mean Result.model_calls

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def evaluate_pointing(
    model: LoadedModel,
    samples: Sequence[tuple[NDArray[np.uint8], Box]],
    methods: Sequence[str],
    params_by_method: Mapping[str, Mapping[str, Any]] | None = None,
    target: int | str = "top1",
    *,
    tolerance: float = 0.0,
    ties: Ties = "all",
) -> list[PointingRow]:
    """The pointing game per method over ``samples`` (image (H, W, 3) uint8 at the model's
    input size, object box), e.g. from :func:`engine.quality.synthetic.synthetic_dataset`."""
    raw_params = params_by_method or {}
    inputs = [ImageInput(np.asarray(img, dtype=np.float32)) for img, _ in samples]
    for inp in inputs:
        if (inp.height, inp.width) != model.input_hw:
            raise ValueError(f"image of {inp.height}×{inp.width} for a {model.input_hw} model")
    targets = [
        resolve_target(target, model.labels, model.scores(inp.pixels[None])[0]) for inp in inputs
    ]
    rows: list[PointingRow] = []
    for name in methods:
        spec = get_method(name)
        params = spec.parse_params(dict(raw_params.get(name, {})))
        spec.check(params, model)
        results: list[PointingResult] = []
        times: list[float] = []
        calls: list[int] = []
        for inp, t, (_, box) in zip(inputs, targets, samples, strict=True):
            t0 = time.perf_counter()
            att = spec.fn(model, inp, class_score(model, t, params), params, no_progress)
            times.append(time.perf_counter() - t0)
            calls.append(att.model_calls)
            results.append(pointing_game(att.values, box, tolerance, ties))
        rows.append(
            PointingRow(
                method=name,
                images=len(results),
                hits=sum(r.hit for r in results),
                hit_rate=hit_rate(results),
                runtime_s=float(np.mean(times)),
                forward_passes=float(np.mean(calls)),
            )
        )
    return rows


def format_pointing_table(rows: Sequence[PointingRow], style: TableStyle = "markdown") -> str:
    """The pointing rows as a markdown table or as plain, space-aligned text."""
    return _table(
        [
            ("method", "method"),
            ("images", "images"),
            ("hits", "hits"),
            ("hit_rate", "hit rate"),
            ("runtime_s", "runtime (s)"),
            ("forward_passes", "forward passes"),
        ],
        rows,
        style,
    )


_COLUMNS: tuple[tuple[str, str], ...] = (
    ("method", "method"),
    ("images", "images"),
    ("deletion_auc", "deletion AUC ↓"),
    ("insertion_auc", "insertion AUC ↑"),
    ("runtime_s", "runtime (s)"),
    ("forward_passes", "forward passes"),
    ("backward_passes", "backward passes"),
)


def _cell(key: str, value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "—"
        if key.endswith("passes") or key == "images":
            return str(int(value)) if value == int(value) else f"{value:.1f}"
        return f"{value:.3f}"
    return str(value)


def format_table(rows: Sequence[EvalRow], style: TableStyle = "markdown") -> str:
    """The rows of :func:`evaluate_folder` as a markdown table or as plain, aligned text."""
    return _table(_COLUMNS, rows, style)


def _table(columns: Sequence[tuple[str, str]], rows: Sequence[Any], style: TableStyle) -> str:
    header = [title for _, title in columns]
    body = [[_cell(key, getattr(r, key)) for key, _ in columns] for r in rows]
    if style == "markdown":
        lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(row) + " |" for row in body]
        return "\n".join(lines)
    widths = [max(len(c) for c in col) for col in zip(header, *body, strict=True)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.ljust(w) if i == 0 else c.rjust(w)
            for i, (c, w) in enumerate(zip(cells, widths, strict=True))
        ]
        return "  ".join(parts)

    out = [line(header), *(line(row) for row in body)]
    return "\n".join(out)
