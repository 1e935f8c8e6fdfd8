"""Methods for text models: LIME by word removal, KernelSHAP over words, occlusion of
single words. Their shared steps are in :mod:`engine.methods.text.common`."""
