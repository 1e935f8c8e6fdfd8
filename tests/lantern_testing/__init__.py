"""Helpers shared by Lantern's tests: tiny ONNX models, images, and real processes."""
