"""DeepDream: the layer norm it amplifies on a photo, its answer, its seeds, and a tiny
model where the step can be checked by hand."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image
from skimage import data

from engine.artifact_types.inside import Comparison
from engine.artifacts import Curve, ImageArtifact
from engine.errors import Cancelled
from engine.methods.base import no_progress
from engine.methods.deepdream import DeepDreamParams, deepdream
from engine.methods.registry import get_method
from engine.modalities.image import ImageInput, prepare_image
from engine.models.runtime import LoadedModel
from engine.objectives import ClassScore, LayerNorm
from jobs.runtime import Runtime
from lantern.settings import Settings
from lantern_testing.images import b64, png_bytes
from lantern_testing.loaded import loaded
from lantern_testing.models import linear_classifier, manifest
from service.app import create_app

SIZE = 16


@pytest.fixture
def linear(tmp_path: Path) -> LoadedModel:
    w = np.zeros((2, 3, SIZE, SIZE), np.float32)
    w[0, 0] = 1.0  # class 0: the sum of red
    w[0, 2] = -1.0  # minus the sum of blue
    return loaded(tmp_path, linear_classifier(w), SIZE, ["a", "b"])


def grey_image(value: float = 128.0) -> ImageInput:
    return ImageInput(np.full((SIZE, SIZE, 3), value, np.float32))


def test_one_step_on_a_linear_model(linear: LoadedModel) -> None:
    """The gradient of (red − blue) is +1 on red, −1 on blue, 0 on green: |g| averages 2/3,
    so one step of 0.01 moves red up and blue down by 0.015 (of 1), green not at all."""
    params = DeepDreamParams(octaves=1, steps=1, jitter=0)
    out = deepdream(linear, grey_image(), ClassScore(0), params, no_progress)
    dream = out.artifact("dream")
    assert isinstance(dream, ImageArtifact)
    px = dream.pixels.astype(np.float64)
    want = 128 / 255
    np.testing.assert_allclose(px[..., 0] / 255, want + 0.015, atol=0.5 / 255)
    np.testing.assert_allclose(px[..., 1] / 255, want, atol=0.5 / 255)
    np.testing.assert_allclose(px[..., 2] / 255, want - 0.015, atol=0.5 / 255)
    assert out.extras["objective_dream"] > out.extras["objective_original"]


def test_octaves_and_the_answer(linear: LoadedModel) -> None:
    params = DeepDreamParams(octaves=3, octave_scale=1.4, steps=5, seed=3)
    out = deepdream(linear, grey_image(), ClassScore(0), params, no_progress)
    assert [a.name for a in out.artifacts] == ["dream", "original", "objective",
                                               "before_after"]
    assert out.views == {"png": "dream"}
    pair = out.artifact("before_after")
    assert isinstance(pair, Comparison) and (pair.before, pair.after) == ("original", "dream")
    np.testing.assert_allclose(pair.values, [out.extras["objective_original"],
                                             out.extras["objective_dream"]])
    assert out.extras["octave_sizes"] == [[8, 8], [11, 11], [16, 16]]
    curve = out.artifact("objective")
    assert isinstance(curve, Curve) and len(curve.y) == 15
    assert np.all(np.diff(curve.y) > 0)  # a linear objective: every step climbs
    original = out.artifact("original")
    assert isinstance(original, ImageArtifact) and (original.pixels == 128).all()
    # cost: the estimate bounds the passes (a class logit needs no forward pass first)
    assert out.model_calls == 15 + 2 <= get_method("deepdream").cost(params, linear)


def test_seeded_runs_are_reproducible(linear: LoadedModel) -> None:
    image = ImageInput(np.random.default_rng(0).uniform(0, 255, (SIZE, SIZE, 3))
                       .astype(np.float32))

    def run(seed: int) -> bytes:
        params = DeepDreamParams(octaves=2, steps=4, jitter=4, seed=seed)
        return deepdream(linear, image, ClassScore(0), params, no_progress).artifact(
            "dream").pixels.tobytes()  # type: ignore[attr-defined]

    assert run(1) == run(1)
    assert run(1) != run(2)


def test_progress_and_cancel(linear: LoadedModel) -> None:
    seen: list[float] = []

    def progress(f: float) -> None:
        seen.append(f)
        if len(seen) == 3:
            raise Cancelled()

    with pytest.raises(Cancelled):
        deepdream(linear, grey_image(), ClassScore(0), DeepDreamParams(octaves=2, steps=4),
                  progress)
    assert seen == [1 / 8, 2 / 8, 3 / 8]


@pytest.fixture(scope="module")
def builtin(tmp_path_factory: pytest.TempPathFactory) -> LoadedModel:
    rt = Runtime(Settings(data_dir=tmp_path_factory.mktemp("builtin")))
    rt.ensure_builtin()
    return rt.load("efficientnet-lite0")


def test_dreaming_raises_the_layer_norm_of_chelsea(builtin: LoadedModel) -> None:
    """The classic DeepDream objective, the layer norm of a middle layer, on a photo: the
    defaults (4 octaves of 10 steps, scale 1.4, step 0.01) at least double it."""
    chelsea = prepare_image(Image.fromarray(data.chelsea()), builtin.manifest)
    objective = LayerNorm("blocks.6.expand", 1)
    out = deepdream(builtin, chelsea, objective, DeepDreamParams(), no_progress)
    before, after = out.extras["objective_original"], out.extras["objective_dream"]
    x = builtin.to_model_input(out.artifact("dream").pixels.astype(np.float32)[None])  # type: ignore[attr-defined]
    # the reported value is the model's on the returned image (up to its uint8 rounding)
    assert float(objective.value(builtin.tensor_values(x, "blocks.6.expand"))[0]) == \
        pytest.approx(after, rel=0.02)
    assert after >= 2 * before, (before, after)
    assert out.extras["octave_sizes"] == [[81, 81], [114, 114], [160, 160], [224, 224]]
    # a layer norm takes a forward pass before each VJP: the cost estimate is exact
    assert out.model_calls == 2 * 40 + 2 == get_method("deepdream").cost(DeepDreamParams(),
                                                                          builtin)


def test_through_the_api(tmp_path: Path) -> None:
    """A job from an uploaded image: the dream is the result's PNG; a request without an
    image, and one naming an unknown layer, are refused with their codes."""
    w = np.zeros((2, 3, SIZE, SIZE), np.float32)
    w[0, 0] = 1.0
    settings = Settings(data_dir=tmp_path, builtin_model=False)
    with TestClient(create_app(settings)) as client:
        r = client.post("/v1/models", files={"file": ("m.onnx",
                                                      linear_classifier(w).SerializeToString())},
                        data={"manifest": json.dumps(manifest("lin", SIZE, ["a", "b"]))})
        assert r.status_code == 201, r.text
        image = b64(png_bytes(np.full((SIZE, SIZE, 3), 100, np.uint8)))
        body = {"model": "lin", "method": "deepdream", "image": image,
                "params": {"octaves": 2, "steps": 3}}
        r = client.post("/v1/explanations?wait=60", json={**body, "target": 0})
        assert r.status_code == 200, r.text
        res = r.json()
        assert [a["name"] for a in res["artifacts"]] == ["dream", "original", "objective",
                                                         "before_after"]
        pair = res["artifacts"][3]
        assert pair["type"] == "comparison" and pair["meta"]["before"] == "original"
        assert pair["meta"]["after_value"] == res["extras"]["objective_dream"]
        assert res["views"]["png"] == "dream"
        png = client.get(f"/v1/jobs/{res['job']}/result?format=png")
        assert png.status_code == 200 and png.content[:4] == b"\x89PNG"
        no_image = {k: v for k, v in body.items() if k != "image"}
        assert client.post("/v1/explanations", json={**no_image, "target": 0}).json()[
            "code"] == "invalid_input"
        bad = {**body, "objective": {"kind": "layer_norm", "layer": "nope"}}
        assert client.post("/v1/explanations", json=bad).json()["code"] == "unknown_layer"
