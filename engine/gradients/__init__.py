"""Gradient engine: VJP models derived with onnx-ad, optimised, cached, run with ORT.

* `build_vjp_model` (builder): the model returning logits, d(sum(seed*logits))/d(wrt) and,
  for a layer, its activation, at a fixed batch bucket.
* `check_differentiable` (builder): refuse a model with an op onnx-ad has no rule for.
* `engine.gradients.optimize`: the gradient-graph passes.
* `GradientCache` (cache): lazy build, on-disk cache, LRU of ORT sessions.
* `vjp` (vjp): run a model on any number of images (padded / chunked to the bucket).
"""

from .builder import ACTIVATION, GRAD, SEED, GradientModel, build_vjp_model, check_differentiable
from .cache import BUCKETS, GradientCache, bucket_for
from .vjp import VJPResult, vjp

__all__ = ["ACTIVATION", "BUCKETS", "GRAD", "SEED", "GradientCache", "GradientModel",
           "VJPResult", "bucket_for", "build_vjp_model", "check_differentiable",
           "vjp"]
