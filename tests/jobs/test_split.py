"""A perturbation job split into chunks gives the same map, bit for bit, as one run."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from api_schemas.models import ModelManifest
from jobs.runner import run_job
from jobs.runtime import Runtime
from jobs.split import Ranges, finish_round, ranges, run_chunk
from jobs.store import JobRecord
from lantern.settings import Settings
from lantern_testing.images import png_bytes
from lantern_testing.models import linear_classifier, manifest
from lantern_testing.results import result_values


class InlineSplitter:
    """A queue drained here, as workers would: a round's chunks in a shuffled order (one of
    them delivered twice), and the assembly that the round's last chunk queues."""

    def __init__(self, rt: Runtime, seed: int = 0) -> None:
        self.rt = rt
        self.rng = random.Random(seed)
        self.rounds: list[Ranges] = []
        self.queue: list[tuple[str, str, int, int]] = []
        self.assemblies = 0

    def submit_round(self, job_id: str, chunk_ranges: Ranges) -> None:
        self.rounds.append(chunk_ranges)
        order = list(chunk_ranges)
        self.rng.shuffle(order)
        self.queue += [("chunk", job_id, a, b) for a, b in order]
        self.queue.append(("chunk", job_id, *order[0]))  # a redelivered chunk changes nothing

    def submit_assemble(self, job_id: str) -> None:
        self.queue.append(("assemble", job_id, 0, 0))

    def drain(self) -> None:
        while self.queue:
            kind, job_id, a, b = self.queue.pop(0)
            if kind == "chunk":
                run_chunk(self.rt, job_id, a, b, self)
            else:
                self.assemblies += 1
                finish_round(self.rt, job_id, self)


def runtime(tmp_path: Path, **settings: object) -> Runtime:
    rt = Runtime(Settings(data_dir=tmp_path, builtin_model=False, **settings))  # type: ignore[arg-type]
    w = np.random.default_rng(0).normal(size=(2, 3, 16, 16)).astype(np.float32)
    rt.models.add(
        linear_classifier(w).SerializeToString(),
        ModelManifest.model_validate(manifest("tiny", 16, ["a", "b"])),
    )
    return rt


def submit(rt: Runtime, job_id: str, method: str, params: dict[str, object]) -> None:
    px = np.random.default_rng(1).integers(0, 255, (16, 16, 3), dtype=np.uint8)
    rt.jobs.create_job(JobRecord(
        id=job_id, model="tiny", version=rt.models.get("tiny").version, method=method,
        params=params, objective={"kind": "class", "target": 0},
        input={"modality": "image", "key": rt.jobs.put_input(png_bytes(px))},
    ))


CASES = [
    ("occlusion", {"window": 4, "stride": 2}),
    ("occlusion", {"mode": "drilldown", "window": 4, "coarse_stride": 4, "fine_stride": 2,
                   "fraction": 0.3}),
    ("rise", {"num_masks": 300, "grid_size": 4, "seed": 3}),
    ("lime", {"num_samples": 300, "seed": 3}),
    ("kernel_shap", {"num_samples": 300, "seed": 3}),
]


IDS = [f"{c[0]}{i}" for i, c in enumerate(CASES)]


@pytest.mark.parametrize(("method", "params"), CASES, ids=IDS)
def test_split_equals_one_run(tmp_path: Path, method: str, params: dict[str, object]) -> None:
    whole = runtime(tmp_path / "whole")
    submit(whole, "j", method, params)
    assert run_job(whole, "j") == "succeeded"
    expected = result_values(whole.jobs, "j")

    split = runtime(tmp_path / "split", split_min_samples=1, split_chunk_samples=37)
    splitter = InlineSplitter(split)
    submit(split, "j", method, params)
    assert run_job(split, "j", splitter) == "running"
    splitter.drain()
    rec = split.jobs.get_job("j")
    assert rec is not None and rec.state == "succeeded", rec
    assert sum(len(r) for r in splitter.rounds) > 1
    assert splitter.assemblies == len(splitter.rounds)  # one per round: the last chunk's
    if params.get("mode") == "drilldown":
        assert len(splitter.rounds) == 2  # coarse, then fine over the top regions
    got = result_values(split.jobs, "j")
    assert expected is not None and got is not None
    np.testing.assert_array_equal(got, expected)
    whole_rec = whole.jobs.get_job("j")
    assert whole_rec is not None
    assert rec.model_calls == whole_rec.model_calls
    assert rec.progress == 1.0


def test_small_jobs_are_not_split(tmp_path: Path) -> None:
    rt = runtime(tmp_path, split_min_samples=10_000)
    splitter = InlineSplitter(rt)
    submit(rt, "j", "occlusion", {"window": 4, "stride": 4})
    assert run_job(rt, "j", splitter) == "succeeded"
    assert splitter.rounds == []


def test_a_cancelled_split_job_stays_cancelled(tmp_path: Path) -> None:
    rt = runtime(tmp_path, split_min_samples=1, split_chunk_samples=10)

    class CancelFirst(InlineSplitter):
        def submit_round(self, job_id: str, chunk_ranges: Ranges) -> None:
            self.rt.jobs.update_job(job_id, state="cancelled")
            super().submit_round(job_id, chunk_ranges)

    submit(rt, "j", "occlusion", {"window": 4, "stride": 2})
    cancel_first = CancelFirst(rt)
    run_job(rt, "j", cancel_first)
    cancel_first.drain()
    rec = rt.jobs.get_job("j")
    assert rec is not None and rec.state == "cancelled"
    assert result_values(rt.jobs, "j") is None


def test_ranges() -> None:
    assert ranges(0, 10, 4) == [(0, 4), (4, 8), (8, 10)]
    assert ranges(5, 5, 4) == []
