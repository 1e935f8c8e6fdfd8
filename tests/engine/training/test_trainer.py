"""engine.training: onnx-ad's weight gradients against finite differences, a fit that
learns, and the same weights from the same seed."""

from __future__ import annotations

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from engine.training import TrainConfig, accuracy, train
from engine.training.trainer import LABELS, LOSS, _session, _training_graph, reverse_all


def linear(w: np.ndarray, b: np.ndarray) -> onnx.ModelProto:
    g = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "b"], ["h"], transB=1),
         helper.make_node("Tanh", ["h"], ["logits"])],
        "lin",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 3])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", 2])],
        [numpy_helper.from_array(w, "w"), numpy_helper.from_array(b, "b")],
    )
    m = helper.make_model(g, opset_imports=[helper.make_opsetid("", 17)])
    m.ir_version = 8
    return m


def test_weight_gradients_match_finite_differences() -> None:
    rng = np.random.default_rng(1)
    w = rng.standard_normal((2, 3)).astype(np.float32)
    b = rng.standard_normal(2).astype(np.float32)
    x = rng.standard_normal((4, 3)).astype(np.float32)
    y = np.eye(2, dtype=np.float32)[[0, 1, 1, 0]]
    tg = _training_graph(linear(w, b), ["w", "b"], 4, 2)
    adj = reverse_all(tg, ["w", "b"], LOSS)
    seed = next(v.name for v in adj.graph.input if v.name not in {"x", "w", "b", LABELS})
    sess = _session(adj)
    loss, gw, gb = sess.run(None, {"x": x, "w": w, "b": b, LABELS: y,
                                   seed: np.ones(1, np.float32)})[:3]

    def f(w2: np.ndarray, b2: np.ndarray) -> float:
        z = np.tanh(x.astype(np.float64) @ w2.T + b2)
        logp = z - np.log(np.exp(z).sum(1, keepdims=True))
        return float(-(logp * y).sum() / 4)

    assert abs(float(loss) - f(w, b)) < 1e-5
    eps = 1e-4
    num = np.zeros((2, 3))
    for i in range(2):
        for j in range(3):
            d = np.zeros((2, 3))
            d[i, j] = eps
            num[i, j] = (f(w + d, b) - f(w - d, b)) / (2 * eps)
    np.testing.assert_allclose(np.asarray(gw).reshape(2, 3), num, atol=1e-4)
    num_b = [(f(w, b + e) - f(w, b - e)) / (2 * eps) for e in np.eye(2) * eps]
    np.testing.assert_allclose(np.asarray(gb).reshape(2), num_b, atol=1e-4)


def test_fit_learns_and_is_deterministic() -> None:
    rng = np.random.default_rng(0)
    x = rng.standard_normal((200, 3)).astype(np.float32)
    y = (x[:, 0] - 0.5 * x[:, 2] > 0).astype(np.int64)
    init = linear(np.zeros((2, 3), np.float32), np.zeros(2, np.float32))
    assert accuracy(init, x, y) < 0.75
    cfg = TrainConfig(epochs=15, batch_size=20, lr=0.05, seed=3)
    a = train(init, x, y, cfg)
    b = train(init, x, y, cfg)
    assert a.losses[-1] < 0.6 * a.losses[0]
    assert accuracy(a.model, x, y) > 0.95
    for name in a.weights:
        assert np.array_equal(a.weights[name], b.weights[name])
    c = train(init, x, y, TrainConfig(epochs=15, batch_size=20, lr=0.05, seed=4))
    assert not np.array_equal(a.weights["w"], c.weights["w"])
