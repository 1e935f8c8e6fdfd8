"""A deterministic, framework-free trainer: onnx-ad gradients w.r.t. the weights, numpy Adam.

The forward model's trainable initializers become graph inputs of a *training graph* that
appends a mean softmax cross-entropy (``labels`` one-hot, shape (B, C)) to the logits; the
adjoint of that graph with respect to every weight is built once by onnx-ad (at a fixed
batch: reverse mode wants static shapes) and run by ONNX Runtime per mini-batch. The
optimiser is plain Adam in numpy. Mini-batches are a seeded permutation per epoch (the last
partial batch is dropped), ORT runs on one thread: the same call gives the same weights,
bit for bit, on the same machine.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import onnx
import onnxruntime as ort
from numpy.typing import NDArray
from onnx import TensorProto, helper, numpy_helper

LABELS = "lantern_train_labels"
LOSS = "lantern_train_loss"


@dataclass(frozen=True)
class TrainConfig:
    epochs: int = 10
    batch_size: int = 32
    lr: float = 1e-2
    beta1: float = 0.9
    beta2: float = 0.999
    eps: float = 1e-8
    weight_decay: float = 0.0
    #: Multiply the learning rate by this after each epoch.
    lr_decay: float = 1.0
    seed: int = 0
    #: Stop before this many seconds (checked between batches); None: no limit.
    max_seconds: float | None = None


@dataclass
class TrainResult:
    model: onnx.ModelProto
    weights: dict[str, NDArray[np.float32]]
    losses: list[float] = field(default_factory=list)  # mean loss per epoch
    seconds: float = 0.0
    steps: int = 0


def reverse_all(model: onnx.ModelProto, wrt: list[str], output: str) -> onnx.ModelProto:
    """The adjoint of ``output`` w.r.t. every name of ``wrt`` (onnx-ad, trailing seed axis):
    one seed input, then one gradient output per name, in order."""
    import onnx_ad
    import onnx_ad.control

    result = onnx_ad.reverse(model, inputs=list(wrt), outputs=[output], layout="onnx")
    if not isinstance(result, onnx.ModelProto):  # pragma: no cover - defensive
        raise TypeError(f"onnx_ad.reverse returned {type(result)!r}")
    return result


def _trainable(model: onnx.ModelProto, names: Sequence[str] | None) -> list[str]:
    floats = [t.name for t in model.graph.initializer if t.data_type == TensorProto.FLOAT]
    if names is None:
        return floats
    missing = sorted(set(names) - set(floats))
    if missing:
        raise ValueError(f"not float initializers of the model: {missing}")
    return [n for n in floats if n in set(names)]


def _training_graph(
    model: onnx.ModelProto, weights: list[str], batch: int, n_classes: int
) -> onnx.ModelProto:
    """The forward graph with ``weights`` as inputs, a fixed batch and the loss as output."""
    m = onnx.ModelProto()
    m.CopyFrom(model)
    g = m.graph
    inits = {t.name: t for t in g.initializer}
    keep = [t for t in g.initializer if t.name not in set(weights)]
    x = g.input[0]
    x_shape = [d.dim_value for d in x.type.tensor_type.shape.dim]
    logits = g.output[0].name
    new_inputs = [helper.make_tensor_value_info(x.name, TensorProto.FLOAT, [batch, *x_shape[1:]])]
    for w in weights:
        new_inputs.append(
            helper.make_tensor_value_info(w, TensorProto.FLOAT, list(inits[w].dims))
        )
    new_inputs.append(helper.make_tensor_value_info(LABELS, TensorProto.FLOAT, [batch, n_classes]))
    del g.input[:]
    g.input.extend(new_inputs)
    del g.initializer[:]
    g.initializer.extend(keep)
    g.initializer.append(numpy_helper.from_array(np.array(-1.0 / batch, np.float32), "lt_scale"))
    g.node.extend([
        helper.make_node("Flatten", [logits], ["lt_flat"], axis=1),
        helper.make_node("LogSoftmax", ["lt_flat"], ["lt_logp"], axis=1),
        helper.make_node("Mul", ["lt_logp", LABELS], ["lt_picked"]),
        helper.make_node("ReduceSum", ["lt_picked"], ["lt_sum"], keepdims=0),
        helper.make_node("Mul", ["lt_sum", "lt_scale"], [LOSS]),
    ])
    del g.output[:]
    g.output.append(helper.make_tensor_value_info(LOSS, TensorProto.FLOAT, []))
    del g.value_info[:]
    return m


def _with_weights(
    model: onnx.ModelProto, weights: dict[str, NDArray[np.float32]]
) -> onnx.ModelProto:
    m = onnx.ModelProto()
    m.CopyFrom(model)
    for t in m.graph.initializer:
        if t.name in weights:
            t.CopyFrom(numpy_helper.from_array(weights[t.name].astype(np.float32), t.name))
    return m


def _session(model: onnx.ModelProto) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_BASIC
    return ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])


def train(
    model: onnx.ModelProto,
    x: NDArray[np.float32],
    y: NDArray[np.integer],
    config: TrainConfig | None = None,
    *,
    trainable: Sequence[str] | None = None,
    progress: Callable[[int, float], None] | None = None,
) -> TrainResult:
    """Fit ``model`` (input 0: the batch ``x``; output 0: the logits) to labels ``y``.

    ``trainable``: the initializers to fit (default: every float one). ``progress(epoch,
    loss)`` is called after each epoch. Returns the model with the trained weights.
    """
    cfg = config or TrainConfig()
    started = time.monotonic()
    names = _trainable(model, trainable)
    inits = {t.name: numpy_helper.to_array(t).astype(np.float32) for t in model.graph.initializer}
    n_classes = int(np.max(y)) + 1
    out_dims = [d.dim_value for d in model.graph.output[0].type.tensor_type.shape.dim]
    if len(out_dims) >= 2 and out_dims[-1] > 0:
        n_classes = max(n_classes, int(np.prod(out_dims[1:])))
    batch = min(cfg.batch_size, x.shape[0])
    train_graph = _training_graph(model, names, batch, n_classes)
    before_in = {v.name for v in train_graph.graph.input}
    before_out = {v.name for v in train_graph.graph.output}
    adj_model = reverse_all(train_graph, names, LOSS)
    seeds = [v.name for v in adj_model.graph.input if v.name not in before_in]
    grads = [v.name for v in adj_model.graph.output if v.name not in before_out]
    if len(seeds) != 1 or len(grads) != len(names):  # pragma: no cover - defensive
        raise RuntimeError(f"unexpected onnx-ad signature: {seeds} {grads}")
    seed, sess = seeds[0], _session(adj_model)
    # onnx-ad appends one gradient output per input, in the order asked
    w = {n: inits[n].copy() for n in names}
    m1 = {n: np.zeros_like(v) for n, v in w.items()}
    m2 = {n: np.zeros_like(v) for n, v in w.items()}
    rng = np.random.default_rng(cfg.seed)
    onehot = np.eye(n_classes, dtype=np.float32)[np.asarray(y, np.int64)]
    seed_value = np.ones((1,), np.float32)
    x_name = model.graph.input[0].name
    lr = cfg.lr
    step = 0
    losses: list[float] = []
    for epoch in range(cfg.epochs):
        order = rng.permutation(x.shape[0])
        epoch_losses: list[float] = []
        for b in range(x.shape[0] // batch):
            if cfg.max_seconds is not None and time.monotonic() - started > cfg.max_seconds:
                break
            idx = order[b * batch : (b + 1) * batch]
            feed = {x_name: np.ascontiguousarray(x[idx], np.float32), LABELS: onehot[idx],
                    seed: seed_value, **w}
            outs = sess.run([LOSS, *grads], feed)
            epoch_losses.append(float(outs[0]))
            step += 1
            c1 = 1.0 - cfg.beta1**step
            c2 = 1.0 - cfg.beta2**step
            for n, g_raw in zip(names, outs[1:], strict=True):
                g = np.asarray(g_raw, np.float32).reshape(w[n].shape)
                if cfg.weight_decay:
                    g = g + np.float32(cfg.weight_decay) * w[n]
                m1[n] = cfg.beta1 * m1[n] + (1 - cfg.beta1) * g
                m2[n] = cfg.beta2 * m2[n] + (1 - cfg.beta2) * g * g
                w[n] = (w[n] - lr * (m1[n] / c1) / (np.sqrt(m2[n] / c2) + cfg.eps)).astype(
                    np.float32
                )
        losses.append(float(np.mean(epoch_losses)) if epoch_losses else float("nan"))
        if progress is not None:
            progress(epoch, losses[-1])
        lr *= cfg.lr_decay
    trained = _with_weights(model, w)
    return TrainResult(trained, w, losses, time.monotonic() - started, step)


def predict(
    model: onnx.ModelProto, x: NDArray[np.float32], batch: int = 256
) -> NDArray[np.float32]:
    """The model's logits on ``x`` (one thread, for deterministic evaluation)."""
    sess = _session(model)
    name = model.graph.input[0].name
    outs = [np.asarray(sess.run(None, {name: x[i : i + batch]})[0], np.float32)
            for i in range(0, x.shape[0], batch)]
    return np.concatenate(outs).reshape(x.shape[0], -1)


def accuracy(model: onnx.ModelProto, x: NDArray[np.float32], y: NDArray[np.integer]) -> float:
    return float(np.mean(np.argmax(predict(model, x), axis=1) == np.asarray(y)))
