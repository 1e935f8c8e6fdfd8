"""Lantern: explanations of ONNX model predictions, as a REST service."""

__version__ = "0.1.0"
