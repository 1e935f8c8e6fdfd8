"""Every route in the OpenAPI has a summary and examples."""

from __future__ import annotations

import json
from typing import Any

from fastapi.testclient import TestClient


def _resolve(spec: dict[str, Any], node: Any, seen: set[str]) -> str:
    """The node as text, with the schemas it references inlined (once each)."""
    text = json.dumps(node)
    for ref in {part.split('"')[0] for part in text.split('"$ref": "')[1:]}:
        name = ref.rsplit("/", 1)[-1]
        if name not in seen:
            seen.add(name)
            text += _resolve(spec, spec["components"]["schemas"][name], seen)
    return text


def test_every_operation_has_a_summary_and_examples(client: TestClient) -> None:
    spec = client.get("/openapi.json").json()
    operations = [
        (path, method, op)
        for path, item in spec["paths"].items()
        for method, op in item.items()
    ]
    assert len(operations) >= 13
    for path, method, op in operations:
        assert op.get("summary"), f"{method.upper()} {path} has no summary"
        text = _resolve(spec, op, set())
        assert '"example' in text, f"{method.upper()} {path} has no example"
