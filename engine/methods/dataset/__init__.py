"""Dataset analyses: methods whose input is a dataset (``MethodSpec.inputs="dataset"``;
the job's ``item`` is an :class:`engine.datasets.store.DatasetReader`). Each reads the
activations it needs from the activation cache (engine/datasets/activations.py), computed
once per (model version, dataset version, layer) in chunks, then answers from them."""
