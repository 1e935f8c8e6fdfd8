"""The InferenceService of docs/KSERVE.md, checked without a cluster: it parses, is a KServe
v1beta1 InferenceService whose explainer is Lantern, and its container command is one that
Lantern's CLI accepts, serving on the port the container exposes and probes."""

from __future__ import annotations

import argparse
import re
from pathlib import Path
from typing import Any

import pytest
import yaml

import lantern.cli as cli
from engine.models.store import parse_manifest

DOC = Path(__file__).resolve().parents[2] / "docs" / "KSERVE.md"


def manifest() -> dict[str, Any]:
    blocks = re.findall(r"```yaml\n(.*?)```", DOC.read_text(), flags=re.S)
    assert len(blocks) == 1
    out: dict[str, Any] = yaml.safe_load(blocks[0])
    return out


def test_it_is_an_inference_service_with_lantern_as_explainer() -> None:
    m = manifest()
    assert m["apiVersion"] == "serving.kserve.io/v1beta1" and m["kind"] == "InferenceService"
    assert m["spec"]["predictor"]["model"]["protocolVersion"] == "v2"
    (container,) = m["spec"]["explainer"]["containers"]
    assert container["name"] == "kserve-container"  # the name KServe routes to
    assert container["image"].startswith("lantern")


def test_the_command_is_a_lantern_serve_the_cli_accepts(monkeypatch: pytest.MonkeyPatch
                                                         ) -> None:
    (container,) = manifest()["spec"]["explainer"]["containers"]
    command = container["command"]
    assert command[:2] == ["lantern", "serve"]
    seen: dict[str, Any] = {}

    def capture(args: argparse.Namespace) -> int:
        seen.update(vars(args))
        return 0

    monkeypatch.setattr(cli, "_serve", capture)
    assert cli.main(command[1:]) == 0
    port = container["ports"][0]["containerPort"]
    assert seen["port"] == port == 8080 and seen["host"] == "0.0.0.0"
    for probe in ("readinessProbe", "livenessProbe"):
        assert container[probe]["httpGet"]["port"] == port
    assert container["readinessProbe"]["httpGet"]["path"] == "/v2/health/ready"
    assert container["livenessProbe"]["httpGet"]["path"] == "/v2/health/live"


def test_the_probed_paths_exist() -> None:
    from service.routers.kserve import router

    paths = {getattr(r, "path", "") for r in router.routes}
    assert {"/v2/health/ready", "/v2/health/live", "/v1/models/{name}:explain"} <= paths


def test_the_remote_predictor_manifest_is_one_lantern_accepts() -> None:
    """docs/KSERVE.md's manifest with a ``predictor`` parses as Lantern parses an upload's."""
    (block,) = re.findall(r"```json\n(.*?)```", DOC.read_text(), flags=re.S)
    m = parse_manifest(block)
    assert m.predictor is not None and m.predictor.url.startswith("http://")
    assert m.predictor.model == m.name and len(m.labels) == 10
