"""Datasets: the store (uploads, registered directories, built-ins), readers, and the
activation cache per (model version, dataset version, layer)."""
