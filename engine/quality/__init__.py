"""Explanation quality: faithfulness curves, sanity checks, localisation, evaluation.

- :mod:`engine.quality.deletion_insertion` — deletion and insertion AUC (Petsiuk et al., 2018)
- :mod:`engine.quality.sanity` — model-parameter randomisation (Adebayo et al., 2018)
- :mod:`engine.quality.pointing` — the pointing game (Zhang et al., 2016)
- :mod:`engine.quality.synthetic` — images with a known object box and a tiny model for them
- :mod:`engine.quality.metrics` — :func:`compute_metrics`, the entry point for a job
- :mod:`engine.quality.evaluate` — :func:`evaluate_folder`, methods over a folder of images
"""
