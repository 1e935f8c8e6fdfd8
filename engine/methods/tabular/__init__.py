"""Methods for tabular rows (one module per method, registered for the ``tabular``
modality): LIME from the training statistics, KernelSHAP over a k-means background, and
saliency and integrated gradients on differentiable models. Rows are perturbed in feature
space (:mod:`engine.modalities.tabular`) and scored in large batches."""
