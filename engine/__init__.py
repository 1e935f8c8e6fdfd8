"""Lantern's explanation core: framework-free (numpy + onnxruntime + onnx)."""
