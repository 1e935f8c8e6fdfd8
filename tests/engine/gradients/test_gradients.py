"""VJP models against central finite differences, wrt the input and wrt inner layers."""

from __future__ import annotations

import numpy as np
import pytest
from gradient_testkit import (
    Tiny,
    finite_difference,
    layer_value,
    reference_head,
    relative_error,
    session,
)

from engine.gradients.builder import build_vjp_model
from engine.gradients.vjp import vjp

TOLERANCE = 1e-3


def _inputs(tiny: Tiny, batch: int, seed: int = 7) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((batch, *tiny.input_shape[1:]))
    s = rng.standard_normal((batch, tiny.classes))
    return x, s


@pytest.mark.parametrize("level", ["none", "full"])
def test_gradient_wrt_input_matches_finite_differences(tiny: Tiny, level: str) -> None:
    batch = 2
    gm = build_vjp_model(tiny.model, output=tiny.model.graph.output[0].name, wrt="input",
                         batch=batch, level=level)  # type: ignore[arg-type]
    x, seed = _inputs(tiny, batch)
    result = vjp(session(gm.model), gm, x.astype(np.float32), seed.astype(np.float32))
    assert result.activation is None
    want = finite_difference(reference_head(tiny.model64, None, gm.output), x.copy(), seed)
    assert result.grad.shape == x.shape
    assert relative_error(result.grad, want) <= TOLERANCE


@pytest.mark.parametrize("level", ["none", "full"])
def test_gradient_wrt_layer_matches_finite_differences(tiny: Tiny, level: str) -> None:
    batch = 2
    output = tiny.model.graph.output[0].name
    x, seed = _inputs(tiny, batch)
    for layer in tiny.layers:
        gm = build_vjp_model(tiny.model, output=output, wrt=layer, batch=batch,
                             level=level)  # type: ignore[arg-type]
        assert gm.is_layer
        result = vjp(session(gm.model), gm, x.astype(np.float32), seed.astype(np.float32))
        activation = layer_value(tiny.model64, layer, x)
        assert result.activation is not None
        np.testing.assert_allclose(result.activation, activation, rtol=1e-4, atol=1e-4)
        want = finite_difference(reference_head(tiny.model64, layer, output),
                                 activation.copy(), seed)
        assert relative_error(result.grad, want) <= TOLERANCE, layer


def test_logits_are_the_forward_outputs(tiny: Tiny) -> None:
    gm = build_vjp_model(tiny.model, output=tiny.model.graph.output[0].name, wrt="input",
                         batch=2)
    x, seed = _inputs(tiny, 2)
    forward = session(tiny.model).run(None, {"input": x.astype(np.float32)})[0]
    result = vjp(session(gm.model), gm, x.astype(np.float32), seed.astype(np.float32))
    np.testing.assert_allclose(result.logits, forward, rtol=1e-5, atol=1e-6)


def test_smaller_batch_is_padded_to_the_bucket(tiny: Tiny) -> None:
    output = tiny.model.graph.output[0].name
    gm8 = build_vjp_model(tiny.model, output=output, wrt="input", batch=4)
    gm1 = build_vjp_model(tiny.model, output=output, wrt="input", batch=1)
    x, seed = _inputs(tiny, 3)
    big = vjp(session(gm8.model), gm8, x.astype(np.float32), seed.astype(np.float32))
    assert big.grad.shape == x.shape and big.logits.shape == (3, tiny.classes)
    small = session(gm1.model)
    for i in range(3):
        one = vjp(small, gm1, x[i:i + 1].astype(np.float32), seed[i:i + 1].astype(np.float32))
        np.testing.assert_allclose(big.grad[i:i + 1], one.grad, rtol=1e-4, atol=1e-6)
    # more images than the bucket: processed in chunks
    x7, seed7 = _inputs(tiny, 7)
    chunked = vjp(session(gm8.model), gm8, x7.astype(np.float32), seed7.astype(np.float32))
    assert chunked.grad.shape == x7.shape
    first = vjp(session(gm8.model), gm8, x7[:4].astype(np.float32),
                seed7[:4].astype(np.float32))
    np.testing.assert_allclose(chunked.grad[:4], first.grad, rtol=1e-5, atol=1e-6)


def test_layer_whose_head_reads_tensors_from_before_the_cut() -> None:
    """Cut at "ap": the head (Add, Concat, ...) also reads "se_out", computed before the
    cut; it must come from the forward prefix and be treated as a constant."""
    import onnx
    from gradient_testkit import MODELS
    from onnx.reference import ReferenceEvaluator

    tiny = MODELS["cnn"]()
    batch = 2
    x, seed = _inputs(tiny, batch)
    gm = build_vjp_model(tiny.model, output="logits", wrt="ap", batch=batch)
    result = vjp(session(gm.model), gm, x.astype(np.float32), seed.astype(np.float32))
    ap, se_out = ReferenceEvaluator(tiny.model64).run(["ap", "se_out"], {"input": x})
    head = onnx.utils.Extractor(onnx.shape_inference.infer_shapes(tiny.model64)
                                ).extract_model(["ap", "se_out"], ["logits"])
    evaluator = ReferenceEvaluator(head)

    def loss(value: np.ndarray, s: np.ndarray) -> float:
        (out,) = evaluator.run(["logits"], {"ap": value, "se_out": se_out})
        return float(np.sum(s * out))

    want = finite_difference(loss, np.asarray(ap, dtype=np.float64).copy(), seed)
    assert result.activation is not None
    np.testing.assert_allclose(result.activation, ap, rtol=1e-4, atol=1e-4)
    assert relative_error(result.grad, want) <= TOLERANCE


@pytest.mark.parametrize(("output", "wrt"), [("se_out", "input"), ("se_out", "bn"),
                                             ("cat", "clip"), ("clip", "input")])
def test_inner_output_matches_finite_differences(output: str, wrt: str) -> None:
    """An inner output of the cnn (4-D), wrt the input or a layer before it."""
    from gradient_testkit import MODELS

    tiny = MODELS["cnn"]()
    batch = 2
    x, _ = _inputs(tiny, batch)
    gm = build_vjp_model(tiny.model, output=output, wrt=wrt, batch=batch)
    assert len(gm.output_shape) == 3
    seed = np.random.default_rng(3).standard_normal(gm.seed_shape)
    result = vjp(session(gm.model), gm, x.astype(np.float32), seed.astype(np.float32))
    np.testing.assert_allclose(result.output, layer_value(tiny.model64, output, x),
                               rtol=1e-4, atol=1e-4)
    layer = None if wrt == "input" else wrt
    point = x if layer is None else layer_value(tiny.model64, wrt, x)
    want = finite_difference(reference_head(tiny.model64, layer, output), point.copy(), seed)
    assert relative_error(result.grad, want) <= TOLERANCE
