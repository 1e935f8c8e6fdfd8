"""Tabular models end to end with real processes (redis-server, a Celery worker, uvicorn):
a model registered with a training sample by the API is explained by the worker (the job's
row decoded there from the stored input), and a CSV of rows too. Fixtures are
test_end_to_end's."""

from __future__ import annotations

import json

import e2e.test_end_to_end as e2e
import httpx
import numpy as np
import pytest

pytestmark = pytest.mark.e2e

stack = e2e.stack
poll = e2e.poll


def test_a_row_registered_and_explained_through_a_celery_worker(stack: dict[str, object]) -> None:
    from sklearn.linear_model import LogisticRegression

    from lantern_testing.tabular import linear_data, skl_onnx

    x, y = linear_data([2.0, -1.0, 0.5], n=300)
    csv = "a,b,c\n" + "".join(f"{p:.5f},{q:.5f},{r:.5f}\n" for p, q, r in x)
    manifest = {"name": "e2e-tab", "modality": "tabular", "labels": ["no", "yes"],
                "features": [{"name": "a"}, {"name": "b"}, {"name": "c"}]}
    base = str(stack["base"])
    with httpx.Client(base_url=base, timeout=60) as c:
        r = c.post("/v1/models", data={"manifest": json.dumps(manifest)}, files={
            "file": ("m.onnx", skl_onnx(LogisticRegression().fit(x, y), 3)),
            "training": ("train.csv", csv.encode()),
        })
        assert r.status_code == 201, r.text
        row = {"a": 1.0, "b": -0.5, "c": 0.2}
        r = c.post("/v1/explanations", json={
            "model": "e2e-tab", "method": "kernel_shap", "target": "yes",
            "input": {"modality": "tabular", "row": row}})
        assert r.status_code == 202, r.text
        done = poll(c, r.json()["id"])
        assert done["state"] == "succeeded", done
        res = c.get(f"/v1/jobs/{r.json()['id']}/result").json()
        assert res["attribution"]["shape"] == [3] and abs(res["extras"]["sum_check"]) < 1e-3
        bars = c.get(f"/v1/jobs/{r.json()['id']}/artifacts/features?format=png")
        assert bars.status_code == 200 and bars.content[:4] == b"\x89PNG"
        r = c.post("/v1/explanations", data={"model": "e2e-tab", "method": "lime"},
                   files={"file": ("rows.csv", b"c,b,a\n0.2,-0.5,1.0\n0,0,0\n")})
        assert r.status_code == 202, r.text
        assert poll(c, r.json()["id"])["state"] == "succeeded"
        res = c.get(f"/v1/jobs/{r.json()['id']}/result").json()
        values = np.asarray(res["attribution"]["values"])
        assert values.shape == (2, 3) and np.isfinite(values).all()
