"""The shared perturbation machinery: plans, chunking, dedupe, lazy batches, progress, cancel."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from engine.errors import Cancelled
from engine.methods.base import no_progress
from engine.methods.kernel_shap import KernelShapParams
from engine.methods.lime import LimeParams
from engine.methods.occlusion import OcclusionParams
from engine.methods.perturbation import (
    EvalStats,
    dump_plan,
    load_plan,
    run_plan,
)
from engine.methods.registry import get_method
from engine.methods.rise import RiseParams
from engine.modalities.image import ImageInput
from engine.objectives import ClassScore
from lantern_testing.models import CountingModel, conv_classifier, load_tiny, region_classifier

SIZE = 16


def image(seed: int = 0) -> ImageInput:
    rng = np.random.default_rng(seed)
    return ImageInput(rng.uniform(0, 255, size=(SIZE, SIZE, 3)).astype(np.float32))


CASES: dict[str, Any] = {
    "lime": LimeParams.model_validate(
        {"segmentation": {"algorithm": "grid", "cell": 4}, "num_samples": 70, "batch_size": 8}
    ),
    "rise": RiseParams(num_masks=70, grid_size=4, batch_size=8),
    "kernel_shap": KernelShapParams.model_validate(
        {"segmentation": {"algorithm": "grid", "cell": 4}, "num_samples": 70, "batch_size": 8}
    ),
    "occlusion": OcclusionParams(window=4, stride=2, batch_size=8),
    "occlusion_drilldown": OcclusionParams(
        window=4, mode="drilldown", coarse_stride=4, fine_stride=2, fraction=0.3, batch_size=8
    ),
}


def method_of(case: str) -> str:
    return case.split("_drilldown")[0]


def test_every_perturbation_method_has_a_plan_builder() -> None:
    for name in ("lime", "rise", "kernel_shap", "occlusion"):
        spec = get_method(name)
        assert spec.kind == "perturbation"
        assert spec.plan is not None and spec.plan.name == name
    assert get_method("grad_cam").plan is None


@pytest.mark.parametrize("case", sorted(CASES))
def test_split_into_chunks_is_bit_identical_to_one_chunk(tmp_path: Path, case: str) -> None:
    # The scale-out contract: evaluate [0, k), [k, 2k), ... on "other workers" (with other
    # batch sizes) and assemble the concatenation == the registered fn, bit for bit.
    name = method_of(case)
    params = CASES[case]
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    img = image()
    whole = get_method(name).fn(model, img, ClassScore(1), params, no_progress)

    builder = get_method(name).plan
    other = params.model_copy(update={"batch_size": 3})
    plan = builder.build_plan(model, img, ClassScore(1), params)
    refs = builder.references(model, img, ClassScore(1), params, plan)
    parts: list[np.ndarray[Any, Any]] = []
    done = 0
    while True:
        bounds = [done, done + 1, done + 7, done + 20, plan.n_samples]
        bounds = sorted({min(b, plan.n_samples) for b in bounds})
        for a, b in itertools.pairwise(bounds):
            parts.append(
                builder.evaluate(model, img, ClassScore(1), other, plan, a, b, no_progress),
            )
        done = plan.n_samples
        scores = np.concatenate(parts)
        nxt = builder.refine(model, img, ClassScore(1), params, plan, scores, refs)
        if nxt is None:
            break
        plan = nxt
    split = builder.assemble(
        model, img, ClassScore(1), params, plan, scores, refs, whole.model_calls,
    )
    assert split.values.dtype == whole.values.dtype == np.float32
    assert np.array_equal(split.values, whole.values)
    assert split.extras == whole.extras
    assert split.model_calls == whole.model_calls

    chunked = run_plan(builder, model, img, ClassScore(1), params, no_progress, chunk=11)
    assert np.array_equal(chunked.values, whole.values)


@pytest.mark.parametrize("case", sorted(CASES))
def test_same_seed_same_map_and_batches_never_exceed_batch_size(tmp_path: Path, case: str) -> None:
    name = method_of(case)
    params = CASES[case]
    if name == "occlusion":  # full passes only: incremental ones bypass model.run
        params = params.model_copy(update={"incremental": False})
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    counter = CountingModel(model)
    a = get_method(name).fn(model, image(), ClassScore(0), params, no_progress)
    assert max(counter.batches) <= params.batch_size
    assert counter.images == a.model_calls
    b = get_method(name).fn(model, image(), ClassScore(0), params, no_progress)
    assert np.array_equal(a.values, b.values)


def test_sample_codes_depend_only_on_seed_and_index(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, region_classifier(SIZE, 0, 4, 0, 4), SIZE)
    for name in ("lime", "rise"):
        builder: Any = get_method(name).plan
        plan = builder.build_plan(model, image(), ClassScore(0), CASES[name])
        whole = builder.sample_codes(plan, 0, 40)
        pieces = np.concatenate([builder.sample_codes(plan, a, a + 5) for a in range(0, 40, 5)])
        assert np.array_equal(whole, pieces)
        assert np.array_equal(builder.sample_codes(plan, 17, 18)[0], whole[17])
    other = CASES["rise"].model_copy(update={"seed": 1})
    rise: Any = get_method("rise").plan
    p0 = rise.build_plan(model, image(), ClassScore(0), CASES["rise"])
    p1 = rise.build_plan(model, image(), ClassScore(0), other)
    assert not np.array_equal(rise.sample_codes(p0, 0, 10), rise.sample_codes(p1, 0, 10))


def test_identical_masks_are_evaluated_once(tmp_path: Path) -> None:
    # 4 grid segments -> at most 16 distinct on/off vectors among 200 LIME samples.
    model = load_tiny(tmp_path, region_classifier(8, 0, 4, 0, 4), 8)
    counter = CountingModel(model)
    params = LimeParams.model_validate(
        {
            "segmentation": {"algorithm": "grid", "cell": 4},
            "num_samples": 200,
            "batch_size": 8,
            "hide": "zero",
        }
    )
    builder = get_method("lime").plan
    img = ImageInput(np.full((8, 8, 3), 100.0, np.float32))
    plan = builder.build_plan(model, img, ClassScore(0), params)
    stats = EvalStats()
    scores = builder.evaluate(model, img, ClassScore(0), params, plan, 0, 200, no_progress, stats)
    codes = get_method("lime").plan.sample_codes(plan, 0, 200)  # type: ignore[attr-defined]
    unique = len({c.tobytes() for c in codes})
    assert unique <= 16
    assert counter.images == stats.forward_passes == unique
    assert stats.duplicates == 200 - unique
    # the duplicates got their twin's score: the score is 16 * 100 * (top-left kept)
    np.testing.assert_allclose(scores, 1600.0 * codes[:, 0], rtol=1e-6)
    # and the whole method reports the passes it made (+1 for f(x))
    counter.batches.clear()
    attr = get_method("lime").fn(model, img, ClassScore(0), params, no_progress)
    assert attr.model_calls == counter.images == unique + 1


def test_progress_is_reported_per_forward_batch(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    seen: list[float] = []
    params = RiseParams(num_masks=40, grid_size=4, batch_size=8)
    get_method("rise").fn(model, image(), ClassScore(0), params, seen.append)
    assert seen == [0.2, 0.4, 0.6, 0.8, 1.0]
    # split into chunks, the driver still reports 0..1 over the whole job
    seen.clear()
    run_plan(get_method("rise").plan, model, image(), ClassScore(0), params, seen.append, chunk=16)
    assert seen == sorted(seen) and seen[-1] == 1.0 and len(seen) == 5  # 2 + 2 + 1 batches


@pytest.mark.parametrize("case", sorted(CASES))
def test_cancel_from_progress_stops_the_method(tmp_path: Path, case: str) -> None:
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    counter = CountingModel(model)
    calls: list[float] = []

    def progress(fraction: float) -> None:
        calls.append(fraction)
        if len(calls) == 2:
            raise Cancelled()

    params = CASES[case]
    with pytest.raises(Cancelled):
        get_method(method_of(case)).fn(model, image(), ClassScore(0), params, progress)
    assert len(calls) == 2
    assert counter.images <= 2 + 2 * params.batch_size  # references + two batches


def test_evaluate_rejects_samples_outside_the_plan(tmp_path: Path) -> None:
    model = load_tiny(tmp_path, region_classifier(SIZE, 0, 4, 0, 4), SIZE)
    builder = get_method("rise").plan
    plan = builder.build_plan(model, image(), ClassScore(0), CASES["rise"])
    with pytest.raises(ValueError, match="outside"):
        builder.evaluate(model, image(), ClassScore(0), CASES["rise"], plan, 60, 71, no_progress)
    assert builder.evaluate(
        model, image(), ClassScore(0), CASES["rise"], plan, 5, 5, no_progress,
    ).shape == (0,)


@pytest.mark.parametrize("case", sorted(CASES))
def test_plans_travel_as_bytes(tmp_path: Path, case: str) -> None:
    # what a scale-out orchestrator sends to the workers: dump_plan bytes (no pickle)
    params = CASES[case]
    builder = get_method(method_of(case)).plan
    model = load_tiny(tmp_path, conv_classifier(SIZE, SIZE, 3), SIZE, ["a", "b", "c"])
    img = image()
    plan = builder.build_plan(model, img, ClassScore(0), params)
    refs = builder.references(model, img, ClassScore(0), params, plan)
    scores = builder.evaluate(
        model, img, ClassScore(0), params, plan, 0, plan.n_samples, no_progress,
    )
    refined = builder.refine(model, img, ClassScore(0), params, plan, scores, refs)
    for p in (plan, refined) if refined is not None else (plan,):
        data = dump_plan(p)
        assert isinstance(data, bytes) and len(data) < 200_000
        back = load_plan(data)
        assert type(back) is type(p) and back.n_samples == p.n_samples
        a = builder.evaluate(model, img, ClassScore(0), params, p, 0, p.n_samples, no_progress)
        b = builder.evaluate(model, img, ClassScore(0), params, back, 0, p.n_samples, no_progress)
        assert np.array_equal(a, b)
    with pytest.raises(TypeError):
        dump_plan(refs)  # type: ignore[arg-type]
