"""Summit's influence aggregation: how much each channel of a layer drives each channel of
the next one through the convolution between them, per image, kept as shards.

For a pair of layers ``lower`` → ``upper`` related by a convolution ``C`` (weights
``W`` of shape (C_out, C_in, kh, kw), see :func:`relate`), the *partial convolution* of
input channel ``i`` into output channel ``j`` is channel ``i`` of C's input ``X``
cross-correlated with the kernel slice ``W[j, i]`` alone (C's strides, pads and dilations;
no bias): summed over ``i`` (plus the bias) it is C's output. Summit's influence of ``i``
on ``j`` for one image is the maximum of that partial map over positions
(``summit-notebooks/influence.py``: a depthwise convolution of ``X`` by ``W`` reduced by
max). Per image and output channel, the ``k`` input channels of largest influence (and
their values) are kept; :func:`aggregate` counts them over a class's images (Summit's
``I`` matrix) — only influences above zero count (a channel whose partial map is never
positive does not excite ``j``).

Shards mirror the activation cache's (:mod:`engine.datasets.activations`): the same
boundaries (the cache's ``chunk``), under the cache's root in a directory of their own::

    <root>/<model version>/<dataset version>/@influence/<pair key>-k<k>/<start>-<stop>.npz

(``@`` never begins a cache target's key; deleting the dataset's activations, or the
cache's size limit evicting the entry, deletes these too — a shard found missing at
assembly is computed again). A chunk of work [start, stop) computes the shards that begin
in it, all pairs of a shard from one forward pass, the images through the activation
cache's prefetcher (decoded in a background thread, or read back from its decoded-pixels
cache, at most two shards of images alive); writes are atomic.

Two ways to the maxima, the same numbers (tested against each other and scipy):
ONNX Runtime runs the model with, per pair, Summit's depthwise ``Conv`` (``group = C_in``,
output channel ``i·C_out + j`` convolving input channel ``i`` by ``W[j, i]``) and a
``ReduceMax`` over positions (:func:`influence_model`) — one forward pass from the input;
a 1×1 pair, or one whose one image's maps would not fit :data:`ORT_VALUES`, goes to numpy
(:func:`partial_conv_max`: an im2col and one batched matmul over the input channels per
image, so an image's numbers never depend on the chunk it falls in; a 1×1 kernel in
closed form)."""

from __future__ import annotations

import hashlib
import itertools
import os
import re
import tempfile
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
from numpy.typing import NDArray

from engine.errors import InvalidParams, UnknownLayer

if TYPE_CHECKING:
    import onnx

    from engine.datasets.activations import ActivationCache
    from engine.datasets.pixels import PixelCache
    from engine.datasets.store import DatasetReader
    from engine.models.runtime import LoadedModel

#: Ops that keep channel ``c`` channel ``c`` (one data input; the others constants).
ELEMENTWISE = frozenset({
    "Relu", "LeakyRelu", "PRelu", "Elu", "Selu", "Celu", "Sigmoid", "HardSigmoid", "Tanh",
    "Clip", "Softplus", "Softsign", "HardSwish", "Mish", "Gelu", "Identity", "Dropout",
    "BatchNormalization", "Add", "Sub", "Mul", "Div",
})
#: Ops that move positions but keep channels (allowed between a layer and the next conv).
POSITIONAL = frozenset({"MaxPool", "AveragePool", "LpPool", "Pad"})
CHANNEL_OPS = ELEMENTWISE | POSITIONAL

#: Partial maps of at most this many values (16 MB) are computed by one matmul: a large
#: layer pair is done in chunks of positions, one image at a time.
MAX_VALUES = 1 << 22


@dataclass(frozen=True)
class ConvLink:
    """How ``upper`` depends on ``lower``: the convolution ``conv`` reads ``input`` (``lower``
    after the channel-preserving ops ``via``) and ``upper`` is its output after ``after``."""

    lower: str
    upper: str
    conv: str
    input: str
    weight: NDArray[np.float32]  # (C_out, C_in, kh, kw)
    strides: tuple[int, int]
    dilations: tuple[int, int]
    pads: tuple[int, int, int, int] | None  # (top, left, bottom, right); None: auto_pad
    auto_pad: str
    via: tuple[str, ...]
    after: tuple[str, ...]

    @property
    def key(self) -> str:
        text = "\x00".join([self.lower, self.upper, self.conv, self.input])
        digest = hashlib.sha256(text.encode()).hexdigest()[:10]
        slug = re.sub(r"[^A-Za-z0-9._-]+", "_", f"{self.lower}--{self.upper}")[:60]
        return f"{slug}-{digest}"

    def padding(self, h: int, w: int) -> tuple[int, int, int, int]:
        """(top, left, bottom, right) for an (h, w) input."""
        if self.pads is not None and self.auto_pad in ("", "NOTSET"):
            return self.pads
        if self.auto_pad == "VALID":
            return (0, 0, 0, 0)
        out = []
        for n, k, s, d in zip((h, w), self.weight.shape[2:], self.strides, self.dilations,
                              strict=True):
            extent = (int(k) - 1) * d + 1
            total = max((-(-n // s) - 1) * s + extent - n, 0)
            small = total // 2
            out.append((small, total - small) if self.auto_pad == "SAME_UPPER"
                       else (total - small, small))
        (t, b), (lft, r) = out
        return (t, lft, b, r)


def _refuse(message: str, lower: str, upper: str, reason: str) -> InvalidParams:
    return InvalidParams(message, details={"field": "layers", "lower": lower, "upper": upper,
                                           "reason": reason})


class _Graph:
    def __init__(self, proto: onnx.ModelProto) -> None:
        from onnx import numpy_helper

        self.proto = proto
        self.consts: dict[str, NDArray[Any]] = {
            t.name: numpy_helper.to_array(t) for t in proto.graph.initializer}
        self.producer: dict[str, onnx.NodeProto] = {}
        self.consumers: dict[str, list[onnx.NodeProto]] = {}
        for node in proto.graph.node:
            if node.op_type == "Constant":
                for a in node.attribute:
                    if a.name == "value":
                        self.consts[node.output[0]] = numpy_helper.to_array(a.t)
            for o in node.output:
                self.producer[o] = node
            for i in node.input:
                self.consumers.setdefault(i, []).append(node)

    def data_inputs(self, node: onnx.NodeProto) -> list[str]:
        return [i for i in node.input if i and i not in self.consts]

    def channel_step(self, node: onnx.NodeProto) -> str | None:
        """The one data input of a channel-preserving node (None: not one)."""
        if node.op_type not in CHANNEL_OPS:
            return None
        data = self.data_inputs(node)
        if len(data) != 1:
            return None
        if node.op_type in ("Add", "Sub", "Mul", "Div"):
            # a constant per channel or a scalar: (C, 1, 1), (1, C, 1, 1), () ...
            const = next(self.consts[i] for i in node.input if i in self.consts)
            if const.ndim >= 3 and any(int(s) != 1 for s in const.shape[-2:]):
                return None
        return data[0]

    @staticmethod
    def attrs(node: onnx.NodeProto) -> dict[str, Any]:
        from onnx import helper

        return {a.name: helper.get_attribute_value(a) for a in node.attribute}


def relate(proto: onnx.ModelProto, lower: str, upper: str) -> ConvLink:
    """The convolution that makes ``upper`` from ``lower``, or InvalidParams saying why
    the two are not consecutive (see docs/CONCEPT_GRAPH.md for the rule)."""
    g = _Graph(proto)
    after: list[str] = []
    node = g.producer.get(upper)
    while node is not None and node.op_type != "Conv":
        step = g.channel_step(node)
        if step is None:
            raise _refuse(
                f"Layer {upper!r} is not the output of a convolution (through elementwise "
                f"activations): it comes from a {node.op_type} node. List the layers of a "
                "chain of convolutions, each the output of a Conv (and its activation).",
                lower, upper, f"upper_from_{node.op_type}")
        if step == lower:
            raise _refuse(
                f"Layer {upper!r} follows {lower!r} without a convolution between them; "
                "list only one of the two.", lower, upper, "no_convolution")
        after.append(node.op_type)
        node = g.producer.get(step)
    if node is None:
        raise _refuse(f"Layer {upper!r} is not the output of a convolution.", lower, upper,
                      "no_convolution")
    conv = node
    a = g.attrs(conv)
    if int(a.get("group", 1)) != 1:
        raise _refuse(
            f"The convolution {conv.name or conv.output[0]!r} that makes {upper!r} is grouped "
            f"or depthwise (group={a.get('group')}): each of its output channels reads only "
            "some input channels, so Summit's influence between the layers is not defined "
            "here. List the layers around the depthwise block instead (e.g. the expansion "
            "and the projection convolutions' outputs are not consecutive either: choose "
            "pairs joined by a full convolution).", lower, upper, "grouped_convolution")
    if len(conv.input) < 2 or conv.input[1] not in g.consts:
        raise _refuse(f"The convolution that makes {upper!r} has no constant weights.",
                      lower, upper, "weights_not_constant")
    weight = np.asarray(g.consts[conv.input[1]], np.float32)
    if weight.ndim != 4:
        raise _refuse(f"The convolution that makes {upper!r} is not a 2-D convolution.",
                      lower, upper, "not_2d")
    via: list[str] = []
    t = conv.input[0]
    while t != lower:
        node = g.producer.get(t)
        step = None if node is None else g.channel_step(node)
        if node is None or step is None:
            what = "the graph's input" if node is None else f"a {node.op_type} node"
            hint = (" (a skip connection or a concatenation: the convolution reads more "
                    "than one layer)" if node is not None and node.op_type in
                    ("Add", "Sum", "Concat", "Mul", "Sub") else
                    " (another convolution lies between them: list its layer too)"
                    if node is not None and node.op_type in ("Conv", "ConvTranspose") else "")
            raise _refuse(
                f"Layers {lower!r} and {upper!r} are not consecutive: the convolution that "
                f"makes {upper!r} reads {t!r}, which comes from {what}{hint}, not from "
                f"{lower!r} through elementwise activations or pooling.", lower, upper,
                "not_consecutive")
        via.append(node.op_type)
        t = step
    pads = a.get("pads")
    auto = a.get("auto_pad", b"NOTSET")
    auto_pad = auto.decode() if isinstance(auto, bytes) else str(auto)
    strides = tuple(int(s) for s in (a.get("strides") or [1, 1]))
    dil = tuple(int(s) for s in (a.get("dilations") or [1, 1]))
    p = tuple(int(v) for v in pads) if pads else (0, 0, 0, 0)
    return ConvLink(
        lower=lower, upper=upper, conv=conv.name or conv.output[0], input=conv.input[0],
        weight=weight, strides=(strides[0], strides[-1]), dilations=(dil[0], dil[-1]),
        pads=(p[0], p[1], p[2], p[3]), auto_pad=auto_pad if auto_pad else "NOTSET",
        via=tuple(reversed(via)), after=tuple(reversed(after)),
    )


def conv_layers(proto: onnx.ModelProto) -> list[str]:
    """Each constant-weight 2-D convolution's layer, in graph order: its output after the
    elementwise activations that only it feeds (Conv → BatchNorm → Relu: the Relu's
    output). A grouped (depthwise) one is listed too: it can be the lower layer of a pair,
    never the upper one."""
    g = _Graph(proto)
    out: list[str] = []
    for node in proto.graph.node:
        if node.op_type != "Conv":
            continue
        if len(node.input) < 2 or node.input[1] not in g.consts:
            continue
        if np.asarray(g.consts[node.input[1]]).ndim != 4:
            continue
        t = node.output[0]
        while True:
            users = g.consumers.get(t, [])
            if len(users) != 1 or users[0].op_type not in ELEMENTWISE:
                break
            if g.channel_step(users[0]) != t:
                break
            t = users[0].output[0]
        out.append(t)
    return out


def default_layers(proto: onnx.ModelProto, most: int = 4) -> list[str]:
    """The last chain of consecutive convolution layers (at most ``most``, ending at the
    deepest one): walking back from the last full convolution while each layer relates
    to the next."""
    layers = conv_layers(proto)
    if not layers:
        return []
    chain = [layers[-1]]
    for cand in reversed(layers[:-1]):
        if len(chain) >= most:
            break
        try:
            relate(proto, cand, chain[0])
        except InvalidParams:
            break
        chain.insert(0, cand)
    return chain


def resolve_layers(model: LoadedModel, layers: Sequence[str] | None) -> list[ConvLink]:
    """The links between each consecutive pair of ``layers`` (default: :func:`default_layers`),
    or a 422 naming the layer or the pair to change."""
    proto = model.proto()
    if layers is None:
        names = default_layers(proto)
        if len(names) < 2:
            raise InvalidParams(
                "This model has no two consecutive full convolutions to relate by default; "
                "name them in `layers` (from the input side to the output side).",
                details={"field": "layers", "found": names})
    else:
        names = list(layers)
    if len(set(names)) != len(names):
        raise InvalidParams("`layers` names a layer twice; list each once, input side first.",
                            details={"field": "layers", "layers": names})
    spatial = set(model.spatial_layers())
    for name in names:
        if name not in spatial:
            raise UnknownLayer(
                f"Model {model.name!r} has no spatial layer {name!r}; pick layers from GET "
                f"/v1/models/{model.name} (rank-4 ones: the outputs of convolutions).",
                details={"layer": name, "field": "layers"})
    return [relate(proto, a, b) for a, b in itertools.pairwise(names)]


def _partial_maxima(x: NDArray[np.float32], link: ConvLink) -> Iterator[NDArray[np.float32]]:
    """Image by image: (C_out, C_in), the max over positions of each input channel's
    partial convolution into each output channel (one im2col and batched matmuls over the
    input channels per image: the same arithmetic whatever the batch). A 1×1 kernel's
    partial map is ``W[j, i]·X_i``, whose max is ``W[j, i]`` times ``X_i``'s max (or min,
    for a negative weight) over the positions it reads — exactly, since a product by a
    constant is monotone under rounding."""
    w = link.weight
    c_out, c_in, kh, kw = (int(s) for s in w.shape)
    b, c, h, wd = x.shape
    if c != c_in:
        raise ValueError(f"{link.conv}: input has {c} channels, weights {c_in}")
    top, left, bottom, right = link.padding(h, wd)
    xp = np.pad(np.asarray(x, np.float32), ((0, 0), (0, 0), (top, bottom), (left, right)))
    dh, dw = link.dilations
    sh, sw = link.strides
    if kh == kw == 1:
        seen = xp[:, :, ::sh, ::sw].reshape(b, c_in, -1)
        hi, lo = seen.max(axis=2), seen.min(axis=2)  # (B, C_in)
        w2 = w.reshape(c_out, c_in)
        pos = w2 >= 0
        for n in range(b):
            yield np.where(pos, w2 * hi[n][None], w2 * lo[n][None]).astype(np.float32)
        return
    eh, ew = (kh - 1) * dh + 1, (kw - 1) * dw + 1
    win = np.lib.stride_tricks.sliding_window_view(xp, (eh, ew), axis=(2, 3))
    win = win[:, :, ::sh, ::sw, ::dh, ::dw]  # (B, C_in, Ho, Wo, kh, kw)
    ho, wo = win.shape[2], win.shape[3]
    k = kh * kw
    wt = np.ascontiguousarray(w.reshape(c_out, c_in, k).transpose(1, 2, 0))  # (C_in, K, C_out)
    npos = ho * wo
    step = max(1, MAX_VALUES // max(1, c_in * c_out))  # positions per matmul
    group = max(1, MAX_VALUES // max(1, c_in * npos * k))  # images per im2col copy
    for g0 in range(0, b, group):
        cols = np.ascontiguousarray(win[g0 : g0 + group]).reshape(-1, c_in, npos, k)
        for n in range(cols.shape[0]):  # (C_in, P, K) @ (C_in, K, C_out), image by image
            if step >= npos:
                best = np.matmul(cols[n], wt).max(axis=1)
            else:
                best = np.full((c_in, c_out), -np.inf, np.float32)
                for p0 in range(0, npos, step):
                    part = np.matmul(cols[n, :, p0 : p0 + step], wt)  # (C_in, p, C_out)
                    np.maximum(best, part.max(axis=1), out=best)
            yield best.T


def partial_conv_max(x: NDArray[np.float32], link: ConvLink) -> NDArray[np.float32]:
    """For inputs ``x`` (B, C_in, H, W) of the link's convolution: (B, C_out, C_in), the max
    over positions of each input channel's partial convolution into each output channel."""
    c_out, c_in = (int(s) for s in link.weight.shape[:2])
    out = np.empty((x.shape[0], c_out, c_in), np.float32)
    for n, m in enumerate(_partial_maxima(x, link)):
        out[n] = m
    return out


def partial_conv_top(x: NDArray[np.float32], link: ConvLink, k: int
                     ) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """:func:`top_influences` of :func:`partial_conv_max`, taken for as many images at once
    as hold :data:`MAX_VALUES` maxima (a 1280 × 1152 layer pair: one image at a time; a
    row's top k never depends on the other rows)."""
    c_out, c_in = (int(s) for s in link.weight.shape[:2])
    kk = min(k, c_in)
    b = x.shape[0]
    index = np.empty((b, c_out, kk), np.int32)
    value = np.empty((b, c_out, kk), np.float32)
    group = max(1, MAX_VALUES // max(1, c_out * c_in))
    buf = np.empty((min(group, b), c_out, c_in), np.float32)
    start = filled = 0
    for m in _partial_maxima(x, link):
        buf[filled] = m
        filled += 1
        if filled == len(buf) or start + filled == b:
            i, v = top_influences(buf[:filled], kk)
            index[start : start + filled], value[start : start + filled] = i, v
            start += filled
            filled = 0
    return index, value


def top_influences(infl: NDArray[np.float32], k: int
                   ) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
    """Per image and output channel, the ``k`` input channels of largest influence
    (largest first; ties by channel index: a stable sort's first ``k``) and their values:
    (B, C_out, k) each. A partition finds the k-th value, so a row costs O(C_in)."""
    b, c_out, c_in = infl.shape
    k = min(k, c_in)
    if k == 0 or infl.size == 0:
        return (np.zeros((b, c_out, k), np.int32), np.zeros((b, c_out, k), np.float32))
    v = np.asarray(infl, np.float32).reshape(-1, c_in)
    if k == c_in:
        order = np.argsort(-v, axis=1, kind="stable")
    else:
        kth = -np.partition(-v, k - 1, axis=1)[:, k - 1 : k]  # each row's k-th largest
        above = v > kth
        tied = v == kth
        room = k - above.sum(axis=1, keepdims=True)  # how many ties to take, lowest first
        chosen = above | (tied & (np.cumsum(tied, axis=1) <= room))
        cols = np.nonzero(chosen)[1].reshape(-1, k)  # per row, ascending channel index
        vals = np.take_along_axis(v, cols, axis=1)
        order = np.take_along_axis(cols, np.argsort(-vals, axis=1, kind="stable"), axis=1)
    values = np.take_along_axis(v, order, axis=1)
    return (order.astype(np.int32).reshape(b, c_out, k),
            values.astype(np.float32).reshape(b, c_out, k))


def aggregate(index: NDArray[np.integer], value: NDArray[np.floating], c_in: int
              ) -> tuple[NDArray[np.int64], NDArray[np.float64]]:
    """Over images (the rows of ``index``/``value``, (n, C_out, k)): for each output channel
    ``j`` and input channel ``i``, how many images have ``i`` among ``j``'s top influences
    with a positive value (Summit's count), and the sum of those values: (C_out, C_in)."""
    n, c_out, _ = index.shape
    counts = np.zeros((c_out, c_in), np.int64)
    sums = np.zeros((c_out, c_in), np.float64)
    if n == 0:
        return counts, sums
    keep = value > 0
    j = np.broadcast_to(np.arange(c_out)[None, :, None], index.shape)
    flat = (j * c_in + index)[keep].astype(np.int64)
    counts += np.bincount(flat, minlength=c_out * c_in).reshape(c_out, c_in)
    sums += np.bincount(flat, weights=value[keep].astype(np.float64),
                        minlength=c_out * c_in).reshape(c_out, c_in)
    return counts, sums


#: The ONNX Runtime path: a run's depthwise maps hold at most this many values (images ×
#: C_in·C_out·Ho·Wo, 128 MB); a layer pair whose one image needs more is done by numpy.
ORT_VALUES = 1 << 25


def out_hw(link: ConvLink, h: int, w: int) -> tuple[int, int]:
    """The convolution's output size for an (h, w) input."""
    top, left, bottom, right = link.padding(h, w)
    out = []
    for n, k, s, d in zip((h + top + bottom, w + left + right), link.weight.shape[2:],
                          link.strides, link.dilations, strict=True):
        out.append(max(0, (n - ((int(k) - 1) * d + 1)) // s + 1))
    return out[0], out[1]


def influence_model(proto: onnx.ModelProto, links: Sequence[ConvLink]) -> onnx.ModelProto:
    """The model with, for each link, its partial convolutions as one depthwise ``Conv``
    (``group = C_in``, output channel ``i·C_out + j`` convolving input channel ``i`` by
    ``W[j, i]``: Summit's depthwise convolution) of the convolution's input, reduced by max
    over positions; the graph's outputs are those (B, C_in·C_out) maxima, in order."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    g = out.graph
    opset = next((o.version for o in out.opset_import if o.domain in ("", "ai.onnx")), 13)
    del g.output[:]
    for n, ln in enumerate(links):
        c_out, c_in, kh, kw = (int(v) for v in ln.weight.shape)
        wd = np.ascontiguousarray(ln.weight.transpose(1, 0, 2, 3).reshape(c_in * c_out, 1,
                                                                          kh, kw))
        wname, cname, oname = f"@influence.{n}.w", f"@influence.{n}.maps", f"@influence.{n}"
        g.initializer.append(numpy_helper.from_array(wd.astype(np.float32), wname))
        attrs: dict[str, Any] = {"group": c_in, "kernel_shape": [kh, kw],
                                 "strides": list(ln.strides), "dilations": list(ln.dilations)}
        if ln.auto_pad in ("", "NOTSET"):
            attrs["pads"] = list(ln.pads or (0, 0, 0, 0))
        else:
            attrs["auto_pad"] = ln.auto_pad
        g.node.append(helper.make_node("Conv", [ln.input, wname], [cname],
                                       name=f"@influence.{n}.conv", **attrs))
        if opset >= 18:
            aname = f"@influence.{n}.axes"
            g.initializer.append(numpy_helper.from_array(np.asarray([2, 3], np.int64), aname))
            g.node.append(helper.make_node("ReduceMax", [cname, aname], [oname], keepdims=0))
        else:
            g.node.append(helper.make_node("ReduceMax", [cname], [oname], axes=[2, 3],
                                           keepdims=0))
        g.output.append(helper.make_tensor_value_info(oname, TensorProto.FLOAT, None))
    return out


_SESSIONS: dict[tuple[str, tuple[str, ...]], Any] = {}
_SESSIONS_LOCK = threading.Lock()


def _session(model: LoadedModel, links: Sequence[ConvLink]) -> Any:
    """The influence session of these links (built once per model version and links)."""
    import onnxruntime as ort

    key = (model.version, tuple(ln.key for ln in links))
    with _SESSIONS_LOCK:
        sess = _SESSIONS.get(key)
    if sess is None:
        so = ort.SessionOptions()
        if model.options.intra_op_threads:
            so.intra_op_num_threads = model.options.intra_op_threads
        sess = ort.InferenceSession(
            influence_model(model.proto(), links).SerializeToString(), so,
            providers=["CPUExecutionProvider"])
        with _SESSIONS_LOCK:
            while len(_SESSIONS) >= 8:
                _SESSIONS.pop(next(iter(_SESSIONS)))
            _SESSIONS[key] = sess
    return sess


def ort_plan(model: LoadedModel, links: Sequence[ConvLink]
             ) -> tuple[list[ConvLink], list[ConvLink], int]:
    """(the links ONNX Runtime computes, the links numpy computes, images per ORT run — at
    most the model's batch): a link goes to numpy when its kernel is 1×1 (the closed form
    needs no convolution), when one image's depthwise maps exceed :data:`ORT_VALUES`, or
    when its input's size is not known from the graph."""
    shapes = model.layer_shapes()
    by_ort: list[ConvLink] = []
    by_numpy: list[ConvLink] = []
    per_image = 0
    for ln in links:
        shape = shapes.get(ln.input, ())
        if ln.weight.shape[2:] == (1, 1):  # numpy's closed form: exact and light
            by_numpy.append(ln)
            continue
        if len(shape) == 4 and isinstance(shape[2], int) and isinstance(shape[3], int):
            ho, wo = out_hw(ln, shape[2], shape[3])
            pairs = int(ln.weight.shape[0]) * int(ln.weight.shape[1])
            size = pairs * ho * wo
            if 0 < size <= ORT_VALUES and pairs * model.options.max_batch <= ORT_VALUES:
                by_ort.append(ln)
                per_image += size
                continue
        by_numpy.append(ln)
    batch = min(model.options.max_batch, ORT_VALUES // max(1, per_image))
    return by_ort, by_numpy, max(1, batch)


def ort_partial_max(model: LoadedModel, x: NDArray[np.float32], links: Sequence[ConvLink],
                    batch: int) -> list[NDArray[np.float32]]:
    """Per link, (B, C_out, C_in): :func:`partial_conv_max` by ONNX Runtime from the model's
    input ``x`` (one forward pass), ``batch`` images a run."""
    sess = _session(model, links)
    names = [f"@influence.{n}" for n in range(len(links))]
    parts: list[list[NDArray[np.float32]]] = [[] for _ in links]
    for s0 in range(0, x.shape[0], batch):
        outs = sess.run(names, {model.input_name: x[s0 : s0 + batch]})
        for n, (ln, o) in enumerate(zip(links, outs, strict=True)):
            c_out, c_in = (int(v) for v in ln.weight.shape[:2])
            m = np.asarray(o, np.float32).reshape(-1, c_in, c_out).transpose(0, 2, 1)
            parts[n].append(np.ascontiguousarray(m))
    return [np.concatenate(p) for p in parts]


class InfluenceStore:
    """Per-image top influences of layer pairs, in shards beside the activation cache.
    ``pixels``/``threads``: the activation cache's decoded-pixels cache and decode threads
    (:mod:`engine.datasets.pixels`): images the cache's own pass kept decoded are read
    back, not decoded again."""

    def __init__(self, root: Path, chunk: int, pixels: PixelCache | None = None,
                 threads: int = 1) -> None:
        self.root = Path(root)
        self.chunk = max(1, int(chunk))
        self.pixels = pixels
        self.threads = max(1, int(threads))

    @classmethod
    def beside(cls, cache: ActivationCache) -> InfluenceStore:
        return cls(cache.root, cache.chunk, cache.pixels, cache.decode_threads)

    def shards(self, n: int) -> list[tuple[int, int]]:
        return [(a, min(n, a + self.chunk)) for a in range(0, n, self.chunk)]

    def _path(self, model: LoadedModel, reader: DatasetReader, link: ConvLink, k: int,
              shard: tuple[int, int]) -> Path:
        return (self.root / model.version / reader.version / "@influence" / f"{link.key}-k{k}"
                / f"{shard[0]}-{shard[1]}.npz")

    def missing(self, model: LoadedModel, reader: DatasetReader, links: Sequence[ConvLink],
                k: int, start: int = 0, stop: int | None = None) -> list[tuple[int, int]]:
        stop = len(reader) if stop is None else stop
        return [s for s in self.shards(len(reader)) if start <= s[0] < stop
                and any(not self._path(model, reader, ln, k, s).is_file() for ln in links)]

    def ensure(self, model: LoadedModel, reader: DatasetReader, links: Sequence[ConvLink],
               k: int, start: int = 0, stop: int | None = None,
               progress: Callable[[float], None] | None = None) -> int:
        """Compute the missing shards beginning in [start, stop); the images run. The next
        images are decoded (or mapped) in a background thread while the model runs."""
        from engine.datasets.pixels import Prefetcher

        todo = self.missing(model, reader, links, k, start, stop)
        if not todo:
            return 0
        links = list(links)
        by_ort, by_numpy, ort_batch = ort_plan(model, links)
        inputs = sorted({ln.input for ln in by_numpy})
        parts: dict[str, list[tuple[NDArray[np.int32], NDArray[np.float32]]]] = {
            ln.key: [] for ln in links}
        passes = done = 0
        with Prefetcher(model, reader, todo, model.options.max_batch, self.pixels,
                        self.threads) as batches:
            for batch in batches:
                x = model.to_model_input(batch.pixels.astype(np.float32))
                if by_ort:
                    for ln, m in zip(by_ort, ort_partial_max(model, x, by_ort, ort_batch),
                                     strict=True):
                        parts[ln.key].append(top_influences(m, k))
                if by_numpy:
                    values = dict(zip(inputs, model.probe(x, inputs), strict=False))
                    for ln in by_numpy:
                        parts[ln.key].append(partial_conv_top(values[ln.input], ln, k))
                    del values
                del x
                if not batch.last:
                    continue
                for ln in links:
                    _atomic_npz(self._path(model, reader, ln, k, batch.shard), {
                        "index": np.concatenate([p[0] for p in parts[ln.key]]),
                        "value": np.concatenate([p[1] for p in parts[ln.key]]),
                    })
                    parts[ln.key] = []
                batches.release()
                passes += batch.shard[1] - batch.shard[0]
                done += 1
                if progress is not None:
                    progress(done / len(todo))
        return passes

    def load(self, model: LoadedModel, reader: DatasetReader, link: ConvLink, k: int
             ) -> tuple[NDArray[np.int32], NDArray[np.float32]]:
        """(N, C_out, k) top input channels and their influences over the dataset (shards
        gone since — the activation cache's size limit evicts whole entries — computed
        again first)."""
        self.ensure(model, reader, [link], k)
        index: list[NDArray[np.int32]] = []
        value: list[NDArray[np.float32]] = []
        for shard in self.shards(len(reader)):
            with np.load(self._path(model, reader, link, k, shard), allow_pickle=False) as z:
                index.append(z["index"])
                value.append(z["value"])
        return np.concatenate(index), np.concatenate(value)


def _atomic_npz(path: Path, arrays: dict[str, NDArray[Any]]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".shard.", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as fh:
            np.savez(fh, **arrays)  # type: ignore[arg-type]
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
