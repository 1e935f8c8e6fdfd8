"""Sync jobs run here as one batch (jobs.runner.run_here_batched): each job's stored result
equals the one it gets run alone (run_here), each keeps its own record and lease, and a
failing job fails alone with its own error."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from api_schemas.models import ModelManifest
from jobs.runner import run_here, run_here_batch, run_here_batched
from jobs.runtime import Runtime
from jobs.store import JobRecord
from lantern.settings import Settings
from lantern_testing.batching import CLASSES, SIZE, count_batches, two_conv_classifier
from lantern_testing.images import png_bytes
from lantern_testing.models import manifest
from lantern_testing.results import result_values


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    runtime = Runtime(Settings(data_dir=tmp_path, builtin_model=False))
    runtime.models.add(
        two_conv_classifier().SerializeToString(),
        ModelManifest.model_validate(manifest("two", SIZE, CLASSES)),
    )
    return runtime


def job(rt: Runtime, job_id: str, data: bytes, target: int, method: str = "grad_cam",
        params: dict[str, Any] | None = None) -> JobRecord:
    info = rt.models.get("two")
    rec = JobRecord(
        id=job_id,
        model="two",
        version=info.version,
        method=method,
        params=params or {},
        objective={"kind": "class", "target": target},
        input={"modality": "image", "key": rt.jobs.put_input(data)},
    )
    rt.jobs.create_job(rec)
    return rec


def image(seed: int) -> bytes:
    rng = np.random.default_rng(seed)
    return png_bytes(rng.integers(0, 256, (SIZE, SIZE, 3), dtype=np.uint8))


@pytest.mark.parametrize(("method", "params"), [("grad_cam", {}), ("saliency", {}),
                                                ("cam", {"relu": False})])
def test_a_batch_stores_what_each_job_stores_alone(
    rt: Runtime, method: str, params: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    alone = [job(rt, f"alone{i}", image(i), i % 4, method, params) for i in range(5)]
    for rec in alone:
        assert run_here(rt, rec).state == "succeeded"
    sizes = count_batches(monkeypatch)
    batch = [job(rt, f"batch{i}", image(i), i % 4, method, params) for i in range(5)]
    outcomes = run_here_batch(rt, batch)
    monkeypatch.undo()
    assert sizes == [5]  # one pass over the five stacked inputs
    for a, b, out in zip(alone, batch, outcomes, strict=True):
        assert out.state == "succeeded" and out.artifacts is not None
        ra, rb = rt.jobs.get_job(a.id), rt.jobs.get_job(b.id)
        assert ra is not None and rb is not None and rb.state == "succeeded"
        assert rb.model_calls == ra.model_calls
        assert rb.summary is not None and ra.summary is not None
        assert rb.summary["target"] == ra.summary["target"]
        va, vb = result_values(rt.jobs, a.id), result_values(rt.jobs, b.id)
        assert va is not None and vb is not None
        np.testing.assert_allclose(vb, va, rtol=1e-5, atol=1e-6)
        # its lease is released: another run may take it (and finds it finished)
        assert rt.jobs.acquire(rt.jobs.lease_key(b.id), "other", 5.0)


def test_a_failing_job_fails_alone(rt: Runtime) -> None:
    recs = [job(rt, "j0", image(0), 0), job(rt, "j1", b"not an image", 1),
            job(rt, "j2", image(2), 2)]
    order = [i for i, _ in run_here_batched(rt, recs)]
    assert sorted(order) == [0, 1, 2] and order[0] == 1  # the failure answered first
    states = [rt.jobs.get_job(r.id) for r in recs]
    assert [s.state for s in states if s is not None] == ["succeeded", "failed", "succeeded"]
    failed = states[1]
    assert failed is not None and failed.error is not None
    assert failed.error["code"] == "invalid_image"


def test_a_finished_job_is_not_run_again(rt: Runtime) -> None:
    rec = job(rt, "done", image(3), 1)
    assert run_here(rt, rec).state == "succeeded"
    other = job(rt, "new", image(4), 2)
    outcomes = run_here_batch(rt, [rec, other])
    assert [o.state for o in outcomes] == ["succeeded", "succeeded"]
    assert outcomes[0].artifacts is None  # answered as stored, not recomputed
    assert outcomes[1].artifacts is not None
