"""compute_metrics (the job entry point) and evaluate_folder (the CLI's) on tiny models."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from pydantic import ValidationError

from engine.methods.registry import get_method
from engine.modalities.image import ImageInput
from engine.models.runtime import LoadedModel
from engine.objectives import ClassScore
from engine.quality.evaluate import (
    evaluate_folder,
    evaluate_pointing,
    format_pointing_table,
    format_table,
)
from engine.quality.metrics import MetricsRequest, compute_metrics, metrics_cost
from engine.quality.synthetic import PRESENT, synthetic_dataset, synthetic_model
from lantern_testing.loaded import loaded
from lantern_testing.models import conv_classifier

SIZE = 16


@pytest.fixture
def conv(tmp_path: Path) -> LoadedModel:
    return loaded(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])


@pytest.fixture
def synthetic(tmp_path: Path) -> LoadedModel:
    proto, manifest = synthetic_model()
    labels = manifest.pop("labels")
    return loaded(tmp_path, proto, 64, labels, **manifest)


def test_request_parsing() -> None:
    r = MetricsRequest.model_validate(["deletion", "sanity", "deletion"])
    assert r.names == ["deletion", "sanity"]
    assert r.deletion.substrate == "zero" and r.insertion.substrate == "blur"
    assert r.sanity.top_k == 1
    r = MetricsRequest.model_validate(
        {"names": ["insertion"], "insertion": {"pixels_per_step": 32, "substrate": "mean"}}
    )
    assert r.insertion.pixels_per_step == 32
    with pytest.raises(ValidationError):
        MetricsRequest.model_validate(["nope"])
    with pytest.raises(ValidationError):
        MetricsRequest.model_validate({"names": ["deletion"], "deletion": {"substrate": "blur"}})


def test_compute_metrics_is_json_and_counts_passes(conv: LoadedModel) -> None:
    spec = get_method("saliency")
    params = spec.parse_params({})
    image = ImageInput(np.random.default_rng(2).uniform(0, 255, (SIZE, SIZE, 3)).astype("f4"))
    values = spec.fn(conv, image, ClassScore(1), params, lambda f: None).values
    seen: list[float] = []
    request = MetricsRequest.model_validate(
        {"names": ["deletion", "insertion", "sanity"], "deletion": {"pixels_per_step": 64}}
    )
    out = compute_metrics(request, conv, image, ClassScore(1), values, spec, params, seen.append)
    json.dumps(out)  # JSON-able
    assert list(out) == ["deletion", "insertion", "sanity"]
    assert out["deletion"]["steps"] == 4 and out["deletion"]["forward_passes"] == 5
    assert out["insertion"]["steps"] == SIZE and out["insertion"]["forward_passes"] == SIZE + 1
    for name in ("deletion", "insertion"):
        assert 0.0 <= out[name]["auc"] <= 1.0
        assert len(out[name]["curve"]) == out[name]["forward_passes"]
    s = out["sanity"]
    assert s["layers"] == ["fc"] and s["method"] == "saliency"
    assert s["forward_passes"] == 1 and s["backward_passes"] == 1  # the original was given
    assert -1.0 <= s["spearman"] <= 1.0
    assert metrics_cost(out) == {"forward_passes": 5 + SIZE + 1 + 1, "backward_passes": 1}
    assert seen == sorted(seen) and seen[-1] == pytest.approx(1.0)
    # a plain list of names; the cascade reports every k
    out = compute_metrics(["sanity"], conv, image, ClassScore(1), values, spec, params)
    assert list(out) == ["sanity"]
    casc = MetricsRequest.model_validate(
        {"names": ["sanity"], "sanity": {"top_k": 2, "cascade": True}}
    )
    out = compute_metrics(casc, conv, image, ClassScore(1), values, spec, params)
    assert [r["layers"] for r in out["sanity"]["cascade"]] == [["fc"], ["fc", "conv"]]
    assert out["sanity"]["backward_passes"] == 2


def test_evaluate_folder_on_synthetic_images(synthetic: LoadedModel, tmp_path: Path) -> None:
    folder = tmp_path / "images"
    folder.mkdir()
    for i, (img, _) in enumerate(synthetic_dataset(3, seed=7)):
        Image.fromarray(img).save(folder / f"img{i}.png")
    (folder / "notes.txt").write_text("not an image")
    methods = ["grad_cam", "saliency", "integrated_gradients", "occlusion", "rise"]
    params = {
        "integrated_gradients": {"steps": 8},
        "occlusion": {"window": 8, "stride": 8},
        "rise": {"num_masks": 64},
    }
    rows = evaluate_folder(synthetic, folder, methods, params)
    assert [r.method for r in rows] == methods
    for r in rows:
        assert r.images == 3
        for v in (r.deletion_auc, r.insertion_auc):
            assert math.isfinite(v) and 0.0 <= v <= 1.0
        assert r.runtime_s >= 0 and r.forward_passes >= 1
        assert r.metric_forward_passes == 2 * 65  # 64 px per step on 64×64: 64 steps + 1
    # a faithful map deletes the object first: the probability falls at once
    cam = next(r for r in rows if r.method == "grad_cam")
    assert cam.deletion_auc < 0.3 and cam.insertion_auc > 0.7
    table = format_table(rows)
    assert table.count("\n") == len(rows) + 1 and "| grad_cam |" in table
    plain = format_table(rows, "plain")
    assert plain.splitlines()[0].startswith("method") and "rise" in plain
    (tmp_path / "empty").mkdir()
    with pytest.raises(ValueError, match="no images"):
        evaluate_folder(synthetic, tmp_path / "empty", methods[:1])
    with pytest.raises(ValueError, match="not a folder"):
        evaluate_folder(synthetic, tmp_path / "missing", methods[:1])


def test_evaluate_pointing_table(synthetic: LoadedModel) -> None:
    rows = evaluate_pointing(synthetic, synthetic_dataset(3), ["grad_cam"], target=PRESENT)
    assert rows[0].hits == 3 and rows[0].hit_rate == 1.0
    assert "grad_cam" in format_pointing_table(rows) and "hit rate" in format_pointing_table(rows)
