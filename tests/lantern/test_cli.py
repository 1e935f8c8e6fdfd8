"""The `lantern` client subcommands end to end: `python -m lantern.cli ...` against a real
`lantern serve` (uvicorn, embedded mode)."""

from __future__ import annotations

import json
import os
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from lantern.commands import parse_param, parse_target
from lantern_testing.images import chelsea_png, png_bytes, solid
from lantern_testing.models import linear_classifier, manifest
from lantern_testing.processes import LANTERN, embedded_api, free_port

REPO = Path(__file__).resolve().parents[2]


def tiny_model() -> bytes:
    w = np.zeros((2, 3, 8, 8), np.float32)
    w[0, 0, :4, :4] = 1.0
    data: bytes = linear_classifier(w).SerializeToString()
    return data


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m lantern.cli serve` on a free port, embedded mode."""
    with embedded_api(tmp_path_factory.mktemp("cli")) as base:
        yield base


def lantern(
    *args: str, url: str | None = None, timeout: float = 180
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if k not in ("LANTERN_URL", "LANTERN_API_KEY")}
    if url is not None:
        env["LANTERN_URL"] = url
    return subprocess.run(
        [*LANTERN, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


@pytest.fixture(scope="module")
def files(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("files")
    out = {
        "model": d / "tiny.onnx",
        "manifest": d / "tiny.json",
        "chelsea": d / "chelsea.png",
        "corner": d / "corner.png",
    }
    out["model"].write_bytes(tiny_model())
    out["manifest"].write_text(json.dumps(manifest("tiny-cli", 8, ["left", "other"])))
    out["chelsea"].write_bytes(chelsea_png())
    img = solid(40, (0, 0, 40))
    img[:20, :20, 0] = 250
    out["corner"].write_bytes(png_bytes(img))
    return out


def test_param_and_target_parsing() -> None:
    assert parse_param("window=16") == ("window", 16)
    assert parse_param("baseline=blur") == ("baseline", "blur")
    assert parse_param("baseline=[0, 0, 255]") == ("baseline", [0, 0, 255])
    assert parse_param("flag=true") == ("flag", True)
    assert parse_param('label="285"') == ("label", "285")
    assert parse_param("blur_radius=2.5") == ("blur_radius", 2.5)
    assert parse_target("285") == 285 and parse_target("top1") == "top1"
    assert parse_target("Egyptian cat") == "Egyptian cat"


def test_models_add_list_rm(server: str, files: dict[str, Path]) -> None:
    r = lantern(
        "--url", server, "models", "add", str(files["model"]), "--manifest", str(files["manifest"])
    )
    assert r.returncode == 0, r.stderr
    assert "tiny-cli" in r.stdout

    # --url after the subcommand, or from LANTERN_URL
    r = lantern("models", "list", "--url", server)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].split()[:2] == ["NAME", "VERSION"]
    names = [line.split()[0] for line in lines[1:]]
    assert "tiny-cli" in names and "efficientnet-lite0" in names
    r = lantern("models", "list", "--json", url=server)
    assert r.returncode == 0 and {m["name"] for m in json.loads(r.stdout)} >= {"tiny-cli"}

    assert lantern("--url", server, "models", "rm", "tiny-cli").returncode == 0
    r = lantern("--url", server, "models", "list")
    assert "tiny-cli" not in [line.split()[0] for line in r.stdout.splitlines()[1:]]
    r = lantern("--url", server, "models", "rm", "tiny-cli")
    assert r.returncode == 1 and "unknown_model" in r.stderr


def test_explain_writes_heatmap_and_overlay(
    server: str, files: dict[str, Path], tmp_path: Path
) -> None:
    heat = tmp_path / "out" / "heat.png"
    r = lantern(
        "--url",
        server,
        "explain",
        str(files["chelsea"]),
        "--model",
        "efficientnet-lite0",
        "--method",
        "occlusion",
        "--param",
        "window=56",
        "--param",
        "stride=28",
        "--param",
        "batch_size=2",
        "--out",
        str(heat),
    )
    assert r.returncode == 0, r.stderr
    assert "target: 285" in r.stdout and "Egyptian cat" in r.stdout
    assert "model calls" in r.stdout
    assert "%" in r.stderr and "succeeded" in r.stderr  # the progress bar
    with Image.open(heat) as img:
        assert img.format == "PNG" and img.size == (224, 224)

    overlay = tmp_path / "overlay.png"
    r = lantern(
        "--url",
        server,
        "explain",
        str(files["chelsea"]),
        "--param",
        "window=56",
        "--param",
        "stride=28",
        "--param",
        "baseline=[0,0,255]",
        "--target",
        "281",
        "--out",
        str(overlay),
        "--overlay",
        "--colormap",
        "viridis",
        "--alpha",
        "0.6",
        "--wait",
        "30",
    )
    assert r.returncode == 0, r.stderr
    assert "target: 281" in r.stdout
    with Image.open(overlay) as img:
        assert img.format == "PNG" and img.size == (451, 300)


def test_explain_by_label_and_errors(server: str, files: dict[str, Path], tmp_path: Path) -> None:
    assert (
        lantern(
            "--url",
            server,
            "models",
            "add",
            str(files["model"]),
            "--manifest",
            str(files["manifest"]),
        ).returncode
        == 0
    )
    out = tmp_path / "tiny.png"
    r = lantern(
        "--url",
        server,
        "explain",
        str(files["corner"]),
        "--model",
        "tiny-cli",
        "--target",
        "left",
        "--param",
        "window=2",
        "--param",
        "stride=2",
        "--wait",
        "20",
        "--out",
        str(out),
    )
    assert r.returncode == 0, r.stderr
    assert "target: 0 'left'" in r.stdout
    assert Image.open(out).size == (8, 8)

    r = lantern("--url", server, "explain", str(files["corner"]), "--model", "nope")
    assert r.returncode == 1 and "unknown_model" in r.stderr and "404" in r.stderr
    r = lantern(
        "--url",
        server,
        "explain",
        str(files["corner"]),
        "--model",
        "tiny-cli",
        "--param",
        "window=0",
    )
    assert r.returncode == 1 and "invalid_params" in r.stderr
    r = lantern("--url", server, "explain", str(files["corner"]), "--param", "window")
    assert r.returncode == 2 and "KEY=VALUE" in r.stderr
    r = lantern("--url", server, "explain", str(tmp_path / "missing.png"))
    assert r.returncode == 1 and "missing.png" in r.stderr
    r = lantern("--url", f"http://127.0.0.1:{free_port()}", "models", "list")
    assert r.returncode == 1 and "cannot reach" in r.stderr


def test_jobs_show_and_cancel(server: str, files: dict[str, Path]) -> None:
    with httpx.Client(base_url=server, timeout=60) as http:
        sub = http.post(
            "/v1/explanations",
            files={"file": ("c.png", files["chelsea"].read_bytes())},
            data={
                "model": "efficientnet-lite0",
                "method": "occlusion",
                "target": "3",
                "params": json.dumps({"window": 8, "stride": 4, "batch_size": 1}),
            },
        )
        assert sub.status_code == 202, sub.text
        job = sub.json()["id"]

    r = lantern("--url", server, "jobs", "show", job)
    assert r.returncode == 0, r.stderr
    st = json.loads(r.stdout)
    assert st["id"] == job and st["state"] in ("queued", "running")

    r = lantern("--url", server, "jobs", "cancel", job)
    assert r.returncode == 0, r.stderr
    assert "cancelled" in r.stdout
    time.sleep(0.5)
    st = json.loads(lantern("--url", server, "jobs", "show", job).stdout)
    assert st["state"] == "cancelled" and st["progress"] < 1.0

    r = lantern("--url", server, "jobs", "cancel", job)  # already cancelled: answered as is
    assert r.returncode == 0
    r = lantern("--url", server, "jobs", "show", "0" * 32)
    assert r.returncode == 1 and "unknown_job" in r.stderr


def test_serve_api_only_needs_redis() -> None:
    env = {k: v for k, v in os.environ.items() if k != "LANTERN_REDIS_URL"}
    r = subprocess.run(
        [*LANTERN, "serve", "--api-only", "--port", str(free_port())],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2 and "LANTERN_REDIS_URL" in r.stderr


def test_explain_an_objective(server: str, files: dict[str, Path]) -> None:
    r = lantern(
        "--url", server, "explain", str(files["corner"]), "--model", "efficientnet-lite0",
        "--method", "saliency", "--wait", "30",
        "--objective", '{"kind": "channel", "layer": "head.act", "channel": 3}',
    )
    assert r.returncode == 0, r.stderr
    assert "objective: {'kind': 'channel', 'layer': 'head.act', 'channel': 3}" in r.stdout
    bad = lantern("--url", server, "explain", str(files["corner"]), "--objective", "[1]")
    assert bad.returncode == 2 and "kind" in bad.stderr
