"""The cost a method announces before it runs (used by the per-request limit) is the
forward passes it then uses."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from engine.methods.base import no_progress
from engine.methods.registry import all_methods, get_method
from engine.modalities.image import ImageInput
from engine.objectives import ClassScore
from lantern_testing.loaded import loaded
from lantern_testing.models import conv_classifier

CASES = [
    ("occlusion", {"window": 4, "stride": 2}, True),
    ("occlusion", {"window": 4, "stride": 3}, True),
    ("occlusion", {"mode": "drilldown", "window": 4, "coarse_stride": 4, "fine_stride": 2}, True),
    (
        "occlusion",
        {"mode": "drilldown", "window": 4, "coarse_stride": 6, "fine_stride": 2, "fraction": 0.6},
        True,
    ),
    ("lime", {"num_samples": 40}, True),
    ("rise", {"num_masks": 30}, True),
    ("kernel_shap", {"num_samples": 30, "segmentation": {"algorithm": "grid", "cell": 8}}, False),
    ("integrated_gradients", {"steps": 7}, True),
    # a tolerance no path meets: every round runs (5, 9, 17 points; 33 > max_steps)
    ("integrated_gradients", {"steps": 5, "tolerance": 1e-12, "max_steps": 20}, True),
    ("smoothgrad", {"samples": 5}, True),
    ("saliency", {}, True),
]


@pytest.mark.parametrize(("name", "params", "exact"), CASES)
def test_cost_estimate(tmp_path: Path, name: str, params: dict[str, object], exact: bool) -> None:
    model = loaded(tmp_path, conv_classifier(16, 16, 3), 16, ["a", "b", "c"])
    spec = get_method(name)
    p = spec.parse_params(params)
    image = ImageInput(np.random.default_rng(0).uniform(0, 255, (16, 16, 3)).astype(np.float32))
    used = spec.fn(model, image, ClassScore(1), p, no_progress).model_calls
    estimate = spec.cost(p, model)
    if exact:
        assert estimate == used
    else:
        assert used <= estimate  # an upper bound (all coalitions enumerated: fewer)


def test_every_job_method_estimates_its_cost() -> None:
    # job methods take many passes: the one-pass default would let them past the cost limit
    default = get_method("saliency").cost
    for spec in all_methods():
        if spec.execution == "job":
            assert spec.cost is not default, spec.name
