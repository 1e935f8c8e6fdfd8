"""Training small models with Lantern's own gradient engine (no torch): see :mod:`.trainer`.

``train(model, x, y, config)`` fits the float initializers of an ONNX classifier to
labelled inputs by softmax cross-entropy: onnx-ad derives the gradient of the loss with
respect to every weight, ONNX Runtime evaluates it, a numpy Adam loop updates the weights.
Seeded and deterministic (one intra-op thread); the model returned is the same graph with
the trained weights. Any differentiable classifier works (images, series, rows).
"""

from .trainer import TrainConfig, TrainResult, accuracy, predict, train

__all__ = ["TrainConfig", "TrainResult", "accuracy", "predict", "train"]
