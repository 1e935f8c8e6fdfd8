"""A tiny two-convolution classifier for the batching tests (engine, runner, API), and a
counter of the batch sizes its methods run."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from engine.models.runtime import LoadedModel
from jobs.batching import MicroBatcher

SIZE = 12
CLASSES = ["a", "b", "c", "d"]


def two_conv_classifier() -> onnx.ModelProto:
    """Conv -> Relu (act1) -> Conv -> Relu (act2) -> GlobalAveragePool -> Flatten -> Gemm:
    gradients through a ReLU, a CAM head on act2."""
    rng = np.random.default_rng(3)
    c1 = rng.normal(0, 0.05, (5, 3, 3, 3)).astype(np.float32)
    c2 = rng.normal(0, 0.3, (6, 5, 3, 3)).astype(np.float32)
    fw = rng.normal(size=(len(CLASSES), 6)).astype(np.float32)
    graph = helper.make_graph(
        [
            helper.make_node("Conv", ["input", "c1"], ["conv1"], name="conv1", pads=[1] * 4),
            helper.make_node("Relu", ["conv1"], ["act1"], name="act1"),
            helper.make_node("Conv", ["act1", "c2"], ["conv2"], name="conv2", pads=[1] * 4),
            helper.make_node("Relu", ["conv2"], ["act2"], name="act2"),
            helper.make_node("GlobalAveragePool", ["act2"], ["pool"], name="pool"),
            helper.make_node("Flatten", ["pool"], ["flat"], name="flatten"),
            helper.make_node("Gemm", ["flat", "fw"], ["logits"], name="fc", transB=1),
        ],
        "two_conv",
        [helper.make_tensor_value_info("input", TensorProto.FLOAT, ["N", 3, SIZE, SIZE])],
        [helper.make_tensor_value_info("logits", TensorProto.FLOAT, ["N", len(CLASSES)])],
        initializer=[
            numpy_helper.from_array(c1, "c1"),
            numpy_helper.from_array(c2, "c2"),
            numpy_helper.from_array(fw, "fw"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    onnx.checker.check_model(model)
    return model


def count_batches(
    monkeypatch: pytest.MonkeyPatch,
    names: tuple[str, ...] = ("vjp", "probe"),
    before: Callable[[], None] | None = None,
) -> list[int]:
    """The batch size of every call of the ``LoadedModel`` methods ``names`` (by default
    the VJP and the forward probe) from now until ``monkeypatch.undo()``, appended to the
    list returned; ``before`` is called ahead of each."""
    sizes: list[int] = []
    for name in names:
        original = getattr(LoadedModel, name)

        def counted(self: LoadedModel, x: Any, *a: Any, _f: Any = original, **k: Any) -> Any:
            if before is not None:
                before()
            sizes.append(int(x.shape[0]))
            return _f(self, x, *a, **k)

        monkeypatch.setattr(LoadedModel, name, counted)
    return sizes


def hold_first_batch(
    batcher: Callable[[], MicroBatcher[Any, Any, Any]], base: int, n: int
) -> Callable[[], None]:
    """A ``before`` for :func:`count_batches`: the first model call waits (up to 30 s)
    until ``n`` calls more than ``base`` (the batcher's ``stats.calls`` before them) have
    reached the batcher, dispatched or waiting — so the calls that follow the first batch
    gather into one while it holds the lane, however slowly a loaded host starts their
    threads."""
    first = threading.Event()

    def hold() -> None:
        if first.is_set():
            return
        first.set()
        b = batcher()
        deadline = time.monotonic() + 30
        while b.stats.calls + b.waiting() - base < n and time.monotonic() < deadline:
            time.sleep(0.002)

    return hold
