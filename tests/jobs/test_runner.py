"""The job runner shared by Celery tasks and the embedded worker, on a tiny model."""

from __future__ import annotations

import threading
from pathlib import Path

import numpy as np
import pytest

from api_schemas.models import ModelManifest
from jobs.runner import run_job
from jobs.runtime import Runtime
from jobs.store import JobRecord
from lantern.settings import Settings
from lantern_testing.images import png_bytes
from lantern_testing.models import linear_classifier, manifest
from lantern_testing.results import result_values


@pytest.fixture
def rt(tmp_path: Path) -> Runtime:
    runtime = Runtime(Settings(data_dir=tmp_path, builtin_model=False))
    w = np.zeros((2, 3, 8, 8), np.float32)
    w[0, 0, :4, :4] = 1.0  # class 0 = sum of red over the top-left quadrant
    runtime.models.add(
        linear_classifier(w).SerializeToString(),
        ModelManifest.model_validate(manifest("tiny", 8, ["left", "other"])),
    )
    return runtime


def submit(rt: Runtime, data: bytes, params: dict[str, object], job_id: str = "job") -> None:
    info = rt.models.get("tiny")
    rt.jobs.create_job(
        JobRecord(
            id=job_id,
            model="tiny",
            version=info.version,
            method="occlusion",
            params=params,
            objective={"kind": "class", "target": "left"},
            input={"modality": "image", "key": rt.jobs.put_input(data)},
        )
    )


def test_a_job_runs_to_its_result(rt: Runtime) -> None:
    px = np.zeros((8, 8, 3), np.uint8)
    px[..., 0] = 10
    submit(rt, png_bytes(px), {"window": 4, "stride": 4})
    assert run_job(rt, "job") == "succeeded"
    rec = rt.jobs.get_job("job")
    assert rec is not None and rec.state == "succeeded" and rec.progress == 1.0
    assert rec.model_calls == 1 + 1 + 4  # target resolution + f(x) + 4 windows
    assert rec.summary is not None and rec.summary["target"]["index"] == 0
    assert rec.started_at is not None and rec.finished_at is not None
    values = result_values(rt.jobs, "job")
    assert values is not None
    expected = np.zeros((8, 8))
    expected[:4, :4] = 16 * 10.0
    np.testing.assert_allclose(values, expected, rtol=1e-5)
    assert run_job(rt, "job") == "succeeded"  # a redelivered finished job is not rerun


def test_a_bad_image_fails_with_its_code(rt: Runtime) -> None:
    submit(rt, b"not an image", {"window": 4})
    assert run_job(rt, "job") == "failed"
    rec = rt.jobs.get_job("job")
    assert rec is not None and rec.error is not None and rec.error["code"] == "invalid_image"


def test_an_expired_input_fails_cleanly(rt: Runtime) -> None:
    info = rt.models.get("tiny")
    rt.jobs.create_job(
        JobRecord(
            id="j",
            model="tiny",
            version=info.version,
            method="occlusion",
            params={},
            objective={"kind": "class", "target": 0},
            input={"modality": "image", "key": "0" * 64},  # never stored, as after its TTL
        )
    )
    assert run_job(rt, "j") == "failed"
    rec = rt.jobs.get_job("j")
    assert rec is not None and rec.error is not None and rec.error["code"] == "input_expired"


def test_an_expired_job_is_skipped(rt: Runtime) -> None:
    assert run_job(rt, "never-stored") == "missing"


def test_cancel_stops_a_running_job(rt: Runtime) -> None:
    submit(
        rt, png_bytes(np.zeros((8, 8, 3), np.uint8)), {"window": 1, "stride": 1, "batch_size": 1}
    )
    seen = threading.Event()
    original = rt.jobs.fenced_update

    def update(job_id: str, token: str, attempt: int, **fields: object) -> bool:
        ok = original(job_id, token, attempt, **fields)
        if "progress" in fields and not seen.is_set():
            seen.set()
            rt.jobs.update_job(job_id, state="cancelled")
        return ok

    rt.jobs.fenced_update = update  # type: ignore[method-assign]
    assert run_job(rt, "job") == "cancelled"
    rec = rt.jobs.get_job("job")
    assert rec is not None and rec.state == "cancelled" and rec.progress < 1.0
    assert result_values(rt.jobs, "job") is None


def test_unknown_method_fails_with_code(rt: Runtime) -> None:
    info = rt.models.get("tiny")
    rt.jobs.create_job(
        JobRecord(
            id="j",
            model="tiny",
            version=info.version,
            method="nope",
            params={},
            objective={"kind": "class", "target": 0},
            input={
                "modality": "image",
                "key": rt.jobs.put_input(png_bytes(np.zeros((8, 8, 3), np.uint8))),
            },
        )
    )
    assert run_job(rt, "j") == "failed"
    rec = rt.jobs.get_job("j")
    assert rec is not None and rec.error is not None and rec.error["code"] == "unknown_method"
