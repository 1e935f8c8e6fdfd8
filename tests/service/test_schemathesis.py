"""Property-based API tests: schemathesis generates requests from the app's own OpenAPI.

Every operation is exercised with positive (schema-conforming) and negative (schema-violating)
data, JSON and multipart bodies included, against the ASGI app in embedded mode. Some generated
requests are "enriched" with a real model name, a valid image, a real method or a real job id, so
that the deep paths (decoding, params validation, jobs, rendering) run too, not only the early
404/422s. Whatever a caller sends, the answer must never be a 5xx, and must conform to the
documented status codes, content types and response schemas.
"""

from __future__ import annotations

import json
import shutil
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import (
    content_type_conformance,
    not_a_server_error,
    response_schema_conformance,
    status_code_conformance,
)
from schemathesis.core.transport import Response
from schemathesis.generation.case import Case
from schemathesis.python import asgi
from schemathesis.schemas import APIOperation, BaseSchema

from engine.methods.registry import all_methods
from engine.models.zoo import BUILTIN_MODEL_ID
from lantern.settings import Settings
from lantern_testing.images import b64, png_bytes
from lantern_testing.models import linear_classifier, manifest
from service.app import create_app

# Generated cases per (operation, generation mode). 8 operations take parameters or bodies, 4 of
# them can also be sent schema-violating data -> 12 runs; 12 x 100 = 1200, plus 5 parameterless
# GETs (one case each). Negative mode is unsatisfiable for the others (free-string path only).
MAX_EXAMPLES = 100
MIN_TOTAL_CASES = 1000
TINY = "tiny"
METHODS = [s.name for s in all_methods()]
TARGETS: list[int | str] = ["top1", 0, 1, "left", "other"]
SERVER_ERROR_CHECKS = [not_a_server_error]
CONFORMANCE_CHECKS = [
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


def _tiny_model() -> bytes:
    w = np.zeros((2, 3, 8, 8), np.float32)
    w[0, 0, :4, :4] = 1.0
    return bytes(linear_classifier(w).SerializeToString())


def _images() -> list[bytes]:
    rng = np.random.default_rng(0)
    return [
        png_bytes(rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)),
        png_bytes(rng.integers(0, 255, (17, 5, 3), dtype=np.uint8)),
        png_bytes(np.zeros((1, 1, 3), np.uint8)),
    ]


IMAGES = _images()


@dataclass
class Run:
    """What the run saw: cases per operation, statuses, failures, job ids to reuse."""

    cases: dict[str, int] = field(default_factory=dict)
    statuses: dict[int, int] = field(default_factory=dict)
    server_errors: list[str] = field(default_factory=list)
    conformance: dict[str, str] = field(default_factory=dict)
    jobs: list[str] = field(default_factory=list)

    @property
    def total(self) -> int:
        return sum(self.cases.values())


@pytest.fixture(scope="module")
def schema(tmp_path_factory: pytest.TempPathFactory, zoo_dir: Path) -> Iterator[BaseSchema]:
    data = tmp_path_factory.mktemp("schemathesis-data")
    (data / "zoo").mkdir()
    shutil.copy(zoo_dir / f"{BUILTIN_MODEL_ID}.onnx", data / "zoo")
    settings_ = Settings(
        data_dir=data,
        max_upload_bytes=200_000,
        max_pixels=1_000_000,
        embedded_workers=2,
        ort_threads=1,
    )
    app = create_app(settings_)
    # schemathesis starts the app's lifespan once and keeps it for the process.
    with asgi.get_client(app) as client:
        r = client.post(
            "/v1/models",
            files={"file": ("m.onnx", _tiny_model(), "application/octet-stream")},
            data={"manifest": json.dumps(manifest(TINY, 8, ["left", "other"]))},
        )
        assert r.status_code == 201, r.text
        assert client.get(f"/v1/models/{BUILTIN_MODEL_ID}").status_code == 200
    yield schemathesis.openapi.from_asgi("/openapi.json", app)


def _enrich(case: Case, choice: int, run: Run) -> Case:
    """Make some generated requests reach the deep paths: a real model, image, method, job.

    ``choice`` 0 leaves the case as generated; otherwise fields are replaced while every other
    generated field (params, target, outputs, top_k, format, ...) is kept.
    """
    if choice == 0:
        return case
    path = case.operation.path
    image = IMAGES[choice % len(IMAGES)]
    body = case.body
    if path == "/v1/models/{model}" and choice % 5 in (1, 2):
        # GET: both models; DELETE: only the built-in one, which is protected (409)
        name = TINY if choice % 5 == 2 and case.method.upper() == "GET" else BUILTIN_MODEL_ID
        case.path_parameters = {**(case.path_parameters or {}), "model": name}
    if path == "/v1/models/{model}/predict":
        case.path_parameters = {
            **(case.path_parameters or {}),
            "model": BUILTIN_MODEL_ID if choice % 5 == 1 else TINY,
        }
    if path in ("/v1/models/{model}/predict", "/v1/explanations") and isinstance(body, dict):
        if case.media_type == "multipart/form-data":
            body["file"] = image
        else:
            body["image"] = b64(image)
        if path == "/v1/explanations":
            body["model"] = TINY
            if choice % 2 == 0:
                body["method"] = METHODS[(choice // 4) % len(METHODS)]
            if choice % 4 == 0:  # a request valid as a whole: a real (cheap) job on the tiny model
                body["params"] = {"window": 4} if body["method"] == "occlusion" else {}
                body["target"] = TARGETS[(choice // 4) % len(TARGETS)]
                body.pop("outputs", None)
                if case.media_type == "multipart/form-data":
                    body["params"] = json.dumps(body["params"])
    if path.startswith("/v1/jobs/{job}") and run.jobs:
        case.path_parameters = {
            **(case.path_parameters or {}),
            "job": run.jobs[choice % len(run.jobs)],
        }
    return case


def _check(case: Case, response: Response, run: Run) -> None:
    label = case.operation.label
    run.statuses[response.status_code] = run.statuses.get(response.status_code, 0) + 1
    if response.status_code >= 500:
        run.server_errors.append(
            f"{label} -> {response.status_code} {response.text[:300]}\n  {case.as_curl_command()}"
        )
    case.validate_response(response, checks=SERVER_ERROR_CHECKS)
    for check in CONFORMANCE_CHECKS:
        try:
            case.validate_response(response, checks=[check])
        except AssertionError as e:  # schemathesis' FailureGroup is an AssertionError
            run.conformance.setdefault(f"{label} {check.__name__}", f"{e}"[:500])
    if case.operation.path == "/v1/explanations" and response.status_code in (200, 202):
        payload = response.json()
        job = payload.get("id") or payload.get("job")
        if isinstance(job, str) and job not in run.jobs:
            run.jobs.append(job)


def _run_operation(op: APIOperation, mode: GenerationMode, run: Run) -> None:
    key = f"{op.label} [{mode.value}]"

    @given(case=op.as_strategy(generation_mode=mode))
    @settings(
        max_examples=MAX_EXAMPLES,
        derandomize=True,
        database=None,
        deadline=None,
        phases=[Phase.explicit, Phase.generate],
        suppress_health_check=[
            HealthCheck.too_slow,
            HealthCheck.filter_too_much,
            HealthCheck.data_too_large,
        ],
    )
    def one(case: Case) -> None:
        n = run.cases[key] = run.cases.get(key, 0) + 1
        # a third of the cases as generated; the others reach the deep paths
        case = _enrich(case, 0 if n % 3 == 0 else n, run)
        response = case.call(timeout=120)
        _check(case, response, run)

    try:
        one()
    except Unsatisfiable:
        # Negative mode where nothing can violate the schema (no parameters, or only free
        # strings in the path): there is no negative case to generate.
        assert mode is GenerationMode.NEGATIVE, op.label


def test_no_request_yields_a_server_error(schema: BaseSchema) -> None:
    run = Run()
    started = time.monotonic()
    operations = [result.ok() for result in schema.get_all_operations()]
    labels = {op.label for op in operations}
    # the routes that take their bodies through openapi_extra are in the schema, with bodies
    for label in ("POST /v1/models", "POST /v1/models/{model}/predict", "POST /v1/explanations"):
        assert label in labels
    by_label = {op.label: op for op in operations}
    assert {"application/json", "multipart/form-data"} <= {
        b.media_type for b in by_label["POST /v1/explanations"].body
    }
    assert len(operations) >= 13
    for op in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            _run_operation(op, mode, run)
    elapsed = time.monotonic() - started
    summary = "\n".join(f"  {k}: {v}" for k, v in sorted(run.cases.items()))
    print(
        f"\n{run.total} cases in {elapsed:.1f} s, {len(run.jobs)} jobs; "
        f"statuses {sorted(run.statuses.items())}"
    )
    print(summary)
    assert not run.server_errors, "\n".join(run.server_errors[:10])
    assert run.total >= MIN_TOTAL_CASES, summary
    # every operation with parameters or a body got many cases
    for op in operations:
        if op.path_parameters or op.query or op.body:
            assert run.cases.get(f"{op.label} [positive]", 0) >= MAX_EXAMPLES // 2, op.label
    # the enrichment reached the deep paths: real jobs, real predictions
    assert run.jobs, "no generated explanation request created a job"
    assert run.statuses.get(200, 0) > 50
    # generated DELETEs broke nothing: the built-in model is still there, and protected
    with asgi.get_client(schema.app) as client:
        assert client.get(f"/v1/models/{BUILTIN_MODEL_ID}").status_code == 200
        r = client.delete(f"/v1/models/{BUILTIN_MODEL_ID}")
        assert r.status_code == 409 and r.json()["code"] == "model_protected"
        assert client.get(f"/v1/models/{TINY}").status_code == 200
    assert run.statuses.get(409, 0) > 0
    assert not run.conformance, "\n".join(f"{k}: {v}" for k, v in run.conformance.items())
