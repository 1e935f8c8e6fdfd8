"""Artifact types beyond the core ones of :mod:`engine.artifacts`, one module per family
(features: a weight per named feature; inside: groups, dictionary, comparison; ...). Every
module here is imported by :mod:`engine.artifacts`, so it registers its types with
:func:`engine.artifacts.artifact_type` on import."""
