"""The built-in digits-cnn: trained by Lantern's gradient engine at build, >= 95 % on the
held-out digits (measured here on the stored model, not read from its record), in the time
budget, and registered with its accuracy in its description."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from engine.models.zoo import digits_cnn
from engine.training import accuracy


def test_held_out_accuracy_and_record(zoo_dir: Path, tmp_path: Path) -> None:
    import onnx

    path, record = digits_cnn.ensure(zoo_dir)
    model = onnx.load(str(path))
    images, labels = digits_cnn.digits_pixels()
    train, test = digits_cnn.split(len(labels), labels)
    assert len(set(train) & set(test)) == 0 and len(train) + len(test) == 1797
    x = digits_cnn.to_input(images)
    acc = accuracy(model, x[test], labels[test])
    assert acc >= 0.95, acc
    assert abs(acc - record["held_out_accuracy"]) < 1e-3
    assert record["train_seconds"] <= 60.0
    assert {n.output[0] for n in model.graph.node} >= set(digits_cnn.LAYERS)

    from engine.models.store import ModelStore

    info = digits_cnn._register(ModelStore(tmp_path / "models", 10**8), zoo_dir)
    assert info.builtin and f"{100 * acc:.1f} %" in info.manifest.description
    assert tuple(info.manifest.input_size) == (8, 8)
    assert {layer.name for layer in info.layers} >= {"conv1", "conv2", "conv3"}
    np.testing.assert_array_equal(np.unique(labels), np.arange(10))
