"""The synthetic images and model, and the localisation benchmark: every method must point
at the object (pointing game, tolerance 0, all tied maxima inside) on ≥ 90% of 20 images.

Fewer samples than the defaults keep the test short (LIME and KernelSHAP 300, RISE 500
masks); method params are scaled to the 64×64 images (documented in bench/quality.py): occlusion
window 8, stride 4 (as 28/14 on 224 px); LIME and KernelSHAP on Felzenszwalb superpixels
(default SLIC degenerates to a handful of segments on the fine striped backgrounds).
"""

from __future__ import annotations

import numpy as np
import pytest

from engine.methods.registry import all_methods
from engine.models.runtime import LoadedModel, softmax
from engine.quality.evaluate import evaluate_pointing
from engine.quality.synthetic import (
    ABSENT,
    CAM_LAYER,
    PRESENT,
    synthetic_dataset,
    synthetic_image,
    synthetic_model,
)
from lantern_testing.loaded import loaded

FELZENSZWALB = {"algorithm": "felzenszwalb", "scale": 100, "sigma": 0.5, "min_size": 20}
PARAMS: dict[str, dict[str, object]] = {
    "occlusion": {"window": 8, "stride": 4},
    "lime": {"segmentation": FELZENSZWALB, "num_samples": 300},
    "kernel_shap": {"segmentation": FELZENSZWALB, "num_samples": 300},
    "rise": {"num_masks": 500},
}


@pytest.fixture(scope="module")
def model(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    proto, manifest = synthetic_model()
    labels = manifest.pop("labels")
    return loaded(tmp_path_factory.mktemp("synthetic"), proto, 64, labels, **manifest)


def test_images_are_seeded_and_boxes_are_tight() -> None:
    a, box = synthetic_image(3)
    b, box2 = synthetic_image(3)
    np.testing.assert_array_equal(a, b)
    assert box == box2
    assert a.shape == (64, 64, 3) and a.dtype == np.uint8
    y0, y1, x0, x1 = box
    redness = a[..., 0].astype(float) - (a[..., 1].astype(float) + a[..., 2]) / 2
    red = redness > 0.3 * 255
    ys, xs = np.nonzero(red)
    assert (ys.min(), ys.max() + 1, xs.min(), xs.max() + 1) == box
    assert 14 <= max(y1 - y0, x1 - x0) <= 22
    assert not (synthetic_image(4)[0] == a).all()


def test_model_sees_the_object_only(model: LoadedModel) -> None:
    samples = synthetic_dataset(20, seed=0)
    x = np.stack([img for img, _ in samples]).astype(np.float32)
    p = softmax(model.scores(x))
    assert (p[:, PRESENT] > 0.9).all()
    # the object painted over with background colours: "absent"
    cleared = x.copy()
    for i, (_, (y0, y1, x0, x1)) in enumerate(samples):
        cleared[i, y0:y1, x0:x1] = [0.0, 120.0, 200.0]
    assert (softmax(model.scores(cleared))[:, ABSENT] > 0.9).all()
    # outside the box nothing matters
    img, (y0, y1, x0, x1) = samples[0]
    other = np.asarray(synthetic_image(99)[0], np.float32)
    y0o, y1o, x0o, x1o = synthetic_image(99)[1]
    mixed = other.copy()
    mixed[y0o:y1o, x0o:x1o] = [0.0, 120.0, 200.0]  # remove the other image's object
    mixed[y0:y1, x0:x1] = img[y0:y1, x0:x1]
    np.testing.assert_allclose(
        model.scores(mixed[None]), model.scores(img[None].astype(np.float32)), rtol=0.02
    )
    assert CAM_LAYER in model.spatial_layers()


def test_pointing_game_localisation_benchmark(model: LoadedModel) -> None:
    registered = {spec.name for spec in all_methods()}
    methods = [
        m
        for m in ("grad_cam", "occlusion", "lime", "rise", "integrated_gradients", "kernel_shap")
        if m in registered or m != "kernel_shap"
    ]
    samples = synthetic_dataset(20, seed=1000)
    rows = evaluate_pointing(model, samples, methods, PARAMS, target=PRESENT, tolerance=0.0)
    rates = {r.method: r.hit_rate for r in rows}
    assert all(r.images == 20 for r in rows)
    assert all(rate >= 0.9 for rate in rates.values()), rates
