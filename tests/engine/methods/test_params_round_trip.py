"""A job's params are stored as JSON (every field, defaults filled in) and parsed again in
the worker: that round trip must give the same params and the same check outcome, or a
request accepted at submit could be refused when it runs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from engine.errors import LanternError
from engine.methods.base import MethodSpec
from engine.methods.registry import all_methods
from lantern_testing.loaded import loaded
from lantern_testing.models import conv_classifier

#: Besides the defaults, params that switch a method into another mode.
MODES: dict[str, list[dict[str, Any]]] = {
    "integrated_gradients": [{"tolerance": 0.01}, {"method": "riemann_middle"}],
    "smoothgrad": [{"average": "abs"}, {"squared": True}],
    "occlusion": [
        {"window": 4, "stride": 4},
        {"mode": "drilldown", "window": 4, "coarse_stride": 4, "fine_stride": 2},
    ],
    "lime": [{"num_samples": 20}],
    "rise": [{"num_masks": 20}],
}


def outcome(spec: MethodSpec[Any], params: Any, model: Any) -> str | None:
    try:
        spec.check(params, model)
    except LanternError as e:
        return f"{type(e).__name__}: {e}"
    return None


@pytest.mark.parametrize("spec", all_methods(), ids=lambda s: s.name)
def test_params_survive_the_job_record(tmp_path: Path, spec: MethodSpec[Any]) -> None:
    model = loaded(tmp_path, conv_classifier(16, 16, 3), 16, ["a", "b", "c"])
    modes = MODES.get(spec.name, []) if "image" in spec.modalities else []  # image params
    for raw in [{}, *modes]:
        params = spec.parse_params(raw)
        stored = json.loads(json.dumps(params.model_dump(mode="json")))
        again = spec.parse_params(stored)
        assert again == params, (spec.name, raw)
        assert outcome(spec, again, model) == outcome(spec, params, model), (spec.name, raw)
