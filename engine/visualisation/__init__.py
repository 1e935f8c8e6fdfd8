"""Optimisation in image space, in numpy: the pieces feature visualisation and DeepDream
share — the FFT/colour image parameterisation (`param`), random transforms with exact
adjoints (`transforms`), the model's preprocessing and batched unit gradients
(`model_io`), Adam (`adam`), Lucid's diversity term (`diversity`) and image grids
(`grid`). Every adjoint is checked against finite differences in
tests/engine/visualisation/."""
