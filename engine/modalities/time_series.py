"""The time-series codec: a series (channels × time) from JSON or ``.npy`` to the model.

An *item* is a :class:`SeriesInput`, float32 ``(C, T)`` whatever the graph's layout; a
batch of items is ``(N, C, T)`` and :meth:`TimeSeriesCodec.to_model_input` transposes it
for ``NTC`` graphs. Methods therefore always see (channel, time) and their maps have axes
("channel", "time") or ("time",).

Accepted bytes (what :func:`service.inputs.input_bytes` hands over, or an uploaded file):

* JSON ``{"values": [...]}`` (the request's ``input`` without ``modality``) or a bare JSON
  array: a flat list (one channel) or a list of channel lists;
* an ``.npy`` file (``numpy.save``): a real numeric array of shape ``(T,)`` or ``(C, T)``;
  never unpickled.

Every refusal is an :class:`InvalidSeries` (HTTP 422, code ``invalid_series``) whose
``details.reason`` says which check failed: ``empty``, ``not_json``, ``not_numbers``,
``ragged``, ``non_finite``, ``wrong_channels``, ``wrong_length``, ``bad_npy``.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import onnxruntime as ort
import orjson
from numpy.typing import NDArray

from api_schemas.modalities.time_series import TimeSeriesManifest
from engine.artifacts import Artifact, artifact_type
from engine.errors import InvalidInput, InvalidManifest, InvalidModel
from engine.modalities.base import GraphCheck, Modality, check_label_count
from engine.modalities.registry import register_modality

NPY_MAGIC = b"\x93NUMPY"
SeriesBaseline = str  # "zero" | "mean" | "blur" (a moving average) | "linear"
BASELINES = ("zero", "mean", "blur", "linear")


class InvalidSeries(InvalidInput):
    """A series Lantern cannot feed to the model (422, ``invalid_series``)."""

    code = "invalid_series"


@dataclass(frozen=True)
class SeriesInput:
    """One series: float32 values (C, T)."""

    values: NDArray[np.float32]

    @property
    def channels(self) -> int:
        return int(self.values.shape[0])

    @property
    def length(self) -> int:
        return int(self.values.shape[1])

    @property
    def pixels(self) -> NDArray[np.float32]:
        """The item's values under the name modality-neutral code reads (``model.scores(
        item.pixels[None])`` in engine.explain and the perturbation core): (C, T)."""
        return self.values


@artifact_type
@dataclass
class SeriesPlot(Artifact):
    """A series and its attribution, for drawing together: the input (C, T) as lines, the
    attribution — (C, T) per channel, or (T,) for every channel alike — as a heat band
    under them. (The weights themselves are the result's ``attribution`` map.)"""

    name: str
    series: NDArray[np.float32]
    attribution: NDArray[np.float32]
    channel_names: list[str]
    type: ClassVar[str] = "series"

    @property
    def shape(self) -> list[int]:
        return [int(s) for s in self.series.shape]

    @property
    def axes(self) -> list[str]:
        return ["channel", "time"]

    def meta(self) -> dict[str, Any]:
        a = np.asarray(self.attribution, np.float64)
        return {
            "channel_names": self.channel_names,
            "attribution_axes": ["channel", "time"] if a.ndim == 2 else ["time"],
            "min": float(a.min()) if a.size else 0.0,
            "max": float(a.max()) if a.size else 0.0,
        }

    def data(self) -> dict[str, Any]:
        return {
            "series": np.ascontiguousarray(self.series, np.float32),
            "attribution": np.ascontiguousarray(self.attribution, np.float32),
        }

    def arrays(self) -> dict[str, NDArray[Any]]:
        return {
            "series": np.asarray(self.series, np.float32),
            "attribution": np.asarray(self.attribution, np.float32),
        }

    def stored_meta(self) -> dict[str, Any]:
        return {"channel_names": self.channel_names}

    @classmethod
    def restore(
        cls, name: str, meta: dict[str, Any], arrays: dict[str, NDArray[Any]]
    ) -> SeriesPlot:
        return cls(name, arrays["series"], arrays["attribution"], list(meta["channel_names"]))


def _refuse(message: str, reason: str, **details: Any) -> InvalidSeries:
    return InvalidSeries(message, details={"reason": reason, **details})


def _from_npy(data: bytes) -> NDArray[np.float64]:
    try:
        arr = np.load(io.BytesIO(data), allow_pickle=False)
    except Exception as e:  # numpy raises ValueError/OSError/EOFError on bad files
        raise _refuse(
            "The .npy file is malformed or holds objects. Save a numeric array with numpy.save.",
            "bad_npy",
            error=str(e)[:200],
        ) from None
    if not isinstance(arr, np.ndarray) or arr.dtype.kind not in "biuf":
        kind = getattr(getattr(arr, "dtype", None), "str", type(arr).__name__)
        raise _refuse(
            f"The .npy array has dtype {kind}; send real numbers (float or int).",
            "not_numbers",
            dtype=str(kind),
        )
    return np.asarray(arr, dtype=np.float64)


def _from_json(data: bytes) -> NDArray[np.float64]:
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise _refuse(
            'The series is neither JSON nor an .npy file. Send {"values": [[...], ...]} '
            "(channels × time) or a numpy.save file.",
            "not_json",
        ) from None
    if isinstance(obj, dict):
        if set(obj) != {"values"}:
            raise _refuse(
                'A series object has exactly one field, "values" (channels × time).',
                "not_numbers",
                fields=sorted(obj)[:20],
            )
        obj = obj["values"]
    if not isinstance(obj, list):
        raise _refuse(
            "The series must be an array of numbers, or of one array of numbers per channel.",
            "not_numbers",
        )
    if len(obj) == 0:
        raise _refuse("The series is empty. Send at least one time step.", "empty")
    rows = obj if isinstance(obj[0], list) else [obj]
    width = len(rows[0])
    for c, row in enumerate(rows):
        if not isinstance(row, list):
            raise _refuse(
                "Mix of numbers and arrays: send one flat array, or one array per channel.",
                "ragged",
                channel=c,
            )
        if len(row) != width:
            raise _refuse(
                f"Channel {c} has {len(row)} time steps and channel 0 has {width}: every "
                "channel must have the same length.",
                "ragged",
                channel=c,
            )
        for t, v in enumerate(row):
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise _refuse(
                    f"Value [{c}][{t}] is {type(v).__name__}, not a number. Send numbers only.",
                    "not_numbers",
                    channel=c,
                    step=t,
                )
    try:
        return np.asarray(rows, dtype=np.float64)
    except OverflowError:  # integers beyond a double
        raise _refuse("The series holds numbers too large for a double.", "non_finite") from None


class TimeSeriesCodec:
    """The time-series codec (see :mod:`engine.modalities.base`)."""

    modality = "time_series"

    def __init__(self, manifest: TimeSeriesManifest, max_pixels: int = 40_000_000) -> None:
        self.manifest = manifest
        self.ntc = manifest.layout == "NTC"

    # -- decoding ---------------------------------------------------------------------

    def parse(self, data: bytes) -> NDArray[np.float32]:
        """Bytes -> checked values (C, T) float32, or an InvalidSeries."""
        if len(data) == 0:
            raise _refuse("The series is empty (zero bytes). Send a JSON array or .npy.", "empty")
        arr = _from_npy(data) if data.startswith(NPY_MAGIC) else _from_json(data)
        if arr.ndim == 1:
            arr = arr[None, :]
        if arr.ndim != 2:
            raise _refuse(
                f"The series has {arr.ndim} dimensions; send (time,) or (channels, time).",
                "wrong_channels",
                shape=list(arr.shape),
            )
        if arr.size == 0:
            raise _refuse("The series is empty. Send at least one time step.", "empty")
        m = self.manifest
        c, t = arr.shape
        if c != m.channels:
            raise _refuse(
                f"The series has {c} channel(s); model {m.name!r} takes {m.channels}. Send "
                f"{m.channels} arrays of {m.length} time steps (channels × time).",
                "wrong_channels",
                channels=c,
                expected=m.channels,
            )
        if m.length_mode == "fixed" and t != m.length:
            raise _refuse(
                f"The series has {t} time steps; model {m.name!r} takes exactly {m.length}.",
                "wrong_length",
                length=t,
                expected=m.length,
            )
        if m.length_mode == "max" and not m.min_length <= t <= m.length:
            raise _refuse(
                f"The series has {t} time steps; model {m.name!r} takes {m.min_length} to "
                f"{m.length}.",
                "wrong_length",
                length=t,
                min_length=m.min_length,
                max_length=m.length,
            )
        finite = np.isfinite(arr)
        if not finite.all():
            bad = np.argwhere(~finite)[0]
            raise _refuse(
                f"Value [{int(bad[0])}][{int(bad[1])}] is not finite (NaN or infinity). Fill "
                "or interpolate missing values before sending.",
                "non_finite",
                channel=int(bad[0]),
                step=int(bad[1]),
            )
        big = np.abs(arr) > np.finfo(np.float32).max
        if big.any():
            raise _refuse("The series holds numbers beyond float32's range.", "non_finite")
        return np.ascontiguousarray(arr, dtype=np.float32)

    def validate(self, data: bytes) -> None:
        self.parse(data)

    def decode(self, data: bytes) -> SeriesInput:
        return SeriesInput(self.parse(data))

    # -- the model's tensor -----------------------------------------------------------

    def item_input(self, item: SeriesInput) -> NDArray[np.float32]:
        """One item -> the model's input at batch 1."""
        return self.to_model_input(item.values[None])

    def to_model_input(self, batch: NDArray[np.float32]) -> NDArray[np.float32]:
        """Items (N, C, T) -> the model's input: (N, C, T) or (N, T, C)."""
        x = batch.transpose(0, 2, 1) if self.ntc else batch
        return np.ascontiguousarray(x, dtype=np.float32)

    def from_model_space(self, x: NDArray[np.float32]) -> NDArray[np.float32]:
        """A model-space tensor (gradients) back to (N, C, T)."""
        return np.ascontiguousarray(x.transpose(0, 2, 1) if self.ntc else x, dtype=np.float32)

    def example_batch(self) -> NDArray[np.float32]:
        """A zero item (1, C, T) in model space, at the longest length (batch timing)."""
        m = self.manifest
        return self.to_model_input(np.zeros((1, m.channels, m.length), np.float32))

    # -- perturbations ----------------------------------------------------------------

    def baseline(
        self, item: SeriesInput, name: Any, blur_radius: float = 10.0
    ) -> NDArray[np.float32]:
        """A (C, T) reference: ``zero``; ``mean`` (each channel's mean); ``blur`` (a moving
        average of ``2·round(blur_radius)+1`` steps, edges repeated); ``linear`` (each
        channel's straight line from its first to its last value)."""
        return series_baseline(item.values, str(name), blur_radius)

    def masked_batch(
        self,
        x0: NDArray[np.float32],
        xb: NDArray[np.float32],
        masks: NDArray[Any],
        out: NDArray[np.float32],
    ) -> NDArray[np.float32]:
        """``x0`` where the masks keep, ``xb`` where they hide, into ``out``. Masks are (n, T)
        (every channel alike) or (n, C, T); bool (copies) or float (blends)."""
        if masks.ndim == 2:
            m = masks[:, :, None] if self.ntc else masks[:, None, :]
        else:
            m = masks.transpose(0, 2, 1) if self.ntc else masks
        if masks.dtype == np.bool_:
            np.copyto(out, x0)
            np.copyto(out, xb, where=~m)
        else:
            np.multiply(m.astype(np.float32, copy=False), x0 - xb, out=out)
            out += xb
        return out


def series_baseline(
    values: NDArray[np.float32], name: str, blur_radius: float = 10.0
) -> NDArray[np.float32]:
    """See :meth:`TimeSeriesCodec.baseline`."""
    if name == "zero":
        return np.zeros_like(values)
    if name == "mean":
        return np.broadcast_to(values.mean(axis=1, keepdims=True), values.shape).astype(np.float32)
    if name == "blur":
        k = max(1, round(blur_radius))
        padded = np.pad(values.astype(np.float64), ((0, 0), (k, k)), mode="edge")
        kernel = np.full(2 * k + 1, 1.0 / (2 * k + 1))
        rows = [np.convolve(r, kernel, mode="valid") for r in padded]
        return np.asarray(rows, np.float32)
    if name == "linear":
        t = values.shape[1]
        w = np.linspace(0.0, 1.0, t)[None, :]
        line = values[:, :1] * (1 - w) + values[:, -1:] * w
        return line.astype(np.float32)
    raise ValueError(f"unknown series baseline {name!r}")


def series_inference_dims(manifest: TimeSeriesManifest) -> list[int] | None:
    if manifest.length_mode == "max":
        return None
    c, t = manifest.channels, manifest.length
    return [1, c, t] if manifest.layout == "NCT" else [1, t, c]


def check_series_graph(sess: ort.InferenceSession, manifest: TimeSeriesManifest) -> GraphCheck:
    """One float32 rank-3 input of the manifest's layout, channels and length; the first
    output has one score per label (run once on a zero series of ``length`` steps)."""
    inputs = sess.get_inputs()
    if len(inputs) != 1:
        raise InvalidModel(
            f"The model has {len(inputs)} inputs; series models take exactly one input tensor.",
            details={"inputs": [i.name for i in inputs]},
        )
    inp = inputs[0]
    if inp.type != "tensor(float)":
        raise InvalidModel(
            f"The model input is {inp.type}; Lantern feeds float32 series.",
            details={"input_type": inp.type},
        )
    shape = list(inp.shape)
    if len(shape) != 3:
        raise InvalidManifest(
            f"The model input has rank {len(shape)}; a series model takes a rank-3 tensor "
            "(NCT or NTC).",
            details={"input_shape": shape},
        )
    c_axis, t_axis = (1, 2) if manifest.layout == "NCT" else (2, 1)
    c, t = shape[c_axis], shape[t_axis]
    if isinstance(c, int) and c != manifest.channels:
        raise InvalidManifest(
            f"The model input has shape {shape}: {c} channels on axis {c_axis} ({manifest.layout}"
            f"), but the manifest says {manifest.channels}. Fix channels or layout.",
            details={"input_shape": shape, "layout": manifest.layout},
        )
    if isinstance(t, int):
        if manifest.length_mode == "max":
            raise InvalidManifest(
                f"The model's time axis is fixed at {t} steps; use length_mode \"fixed\" "
                f"with length {t}.",
                details={"input_shape": shape},
            )
        if t != manifest.length:
            raise InvalidManifest(
                f"The model input has shape {shape}: {t} time steps on axis {t_axis}, but the "
                f"manifest says length {manifest.length}. Fix length or layout.",
                details={"input_shape": shape, "layout": manifest.layout},
            )
    batch = shape[0] if isinstance(shape[0], int) and shape[0] > 0 else 1
    dims = [manifest.channels, manifest.length]
    if manifest.layout == "NTC":
        dims.reverse()
    try:
        out = sess.run(None, {inp.name: np.zeros([batch, *dims], dtype=np.float32)})[0]
    except Exception as e:  # ORT raises many types; any failure means "cannot run"
        raise InvalidModel(
            "The model failed on a test series of the manifest's length and channels.",
            details={"reason": str(e)[:500]},
        ) from None
    num_classes = int(np.asarray(out).size // max(batch, 1))
    check_label_count(num_classes, manifest.labels)
    if not math.isfinite(float(np.asarray(out, np.float64).sum())):
        raise InvalidModel("The model gave non-finite scores on a zero series.")
    return GraphCheck(inp.name, sess.get_outputs()[0].name, num_classes)


register_modality(
    Modality(
        name="time_series",
        codec=TimeSeriesCodec,
        check_graph=check_series_graph,
        inference_dims=series_inference_dims,
    )
)
