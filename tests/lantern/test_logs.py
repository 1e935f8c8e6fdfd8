from __future__ import annotations

import json
import logging

from lantern import logs


def test_json_lines_carry_request_and_job_ids() -> None:
    fmt = logs.JsonFormatter()
    record = logging.makeLogRecord(
        {"name": "lantern.api", "levelno": 20, "levelname": "INFO", "msg": "GET %s %d",
         "args": ("/healthz", 200), "route": "/healthz", "color_message": "\x1b[36mGET\x1b[0m"}
    )
    token_r = logs.request_id.set("r1")
    token_j = logs.job_id.set("j1")
    try:
        out = json.loads(fmt.format(record))
    finally:
        logs.request_id.reset(token_r)
        logs.job_id.reset(token_j)
    assert out["message"] == "GET /healthz 200"
    assert out["request_id"] == "r1" and out["job_id"] == "j1"
    assert out["route"] == "/healthz" and out["level"] == "info"
    assert "color_message" not in out
    assert "request_id" not in json.loads(fmt.format(record))
