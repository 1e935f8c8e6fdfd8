"""ONNX Runtime execution providers (LANTERN_ORT_PROVIDERS), on CPU: the setting is what the
sessions get, an unavailable provider stops the API and the worker at start with a message
naming the providers there are, /readyz lists the API's and each worker's, and Dockerfile.gpu
passes the checks Dockerfile passes."""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import deploy.test_compose as compose_checks
import httpx
import numpy as np
import onnx
import onnxruntime as ort
import pytest
from pydantic import ValidationError

from api_schemas.models import ModelManifest
from engine.models.runtime import LoadedModel, RuntimeOptions, resolve_providers
from jobs.runtime import Runtime
from lantern.settings import Settings
from lantern_testing.models import linear_classifier, manifest
from lantern_testing.processes import LANTERN, Proc, free_port, wait_for

ROOT = Path(__file__).resolve().parents[3]
CPU = "CPUExecutionProvider"
#: A provider the CPU build of onnxruntime has besides the CPU one (so that the setting's
#: effect shows), and one it has not.
OTHER = next(p for p in ort.get_available_providers() if p != CPU)
MISSING = "CUDAExecutionProvider"
assert MISSING not in ort.get_available_providers(), "these tests expect a CPU build"


def _model(tmp: Path, providers: tuple[str, ...]) -> LoadedModel:
    path = tmp / "m.onnx"
    onnx.save(linear_classifier(np.ones((2, 3, 8, 8), np.float32)), path)
    m = ModelManifest.model_validate(manifest("m", 8, ["a", "b"]))
    return LoadedModel("m", "v1", path, m, RuntimeOptions(providers=providers))


def test_the_setting_parses_names_lists_and_short_forms(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().ort_providers == [CPU]
    short = OTHER.removesuffix("ExecutionProvider").lower()
    assert Settings(ort_providers=f"{short}, cpu").ort_providers == [OTHER, CPU]
    monkeypatch.setenv("LANTERN_ORT_PROVIDERS", json.dumps([OTHER, CPU]))
    assert Settings().ort_providers == [OTHER, CPU]
    monkeypatch.setenv("LANTERN_ORT_PROVIDERS", f"{OTHER},{CPU}")
    assert Settings().ort_providers == [OTHER, CPU]


def test_sessions_get_the_providers_of_the_setting(tmp_path: Path) -> None:
    s = Settings(data_dir=tmp_path, builtin_model=False, ort_providers=[OTHER, CPU])
    rt = Runtime(s)
    assert rt.sessions.options.providers == (OTHER, CPU)
    assert rt.sessions.gradients.providers == [OTHER, CPU]
    model = _model(tmp_path, rt.sessions.options.providers)
    assert model.session.get_providers() == [OTHER, CPU]
    x = np.ones((1, 3, 8, 8), np.float32)
    assert model.run(x).shape == (1, 2)
    assert model.probe(x, ["flat"])[0].shape == (1, 192)  # inner layers' sessions too
    assert _model(tmp_path, (CPU,)).session.get_providers() == [CPU]


@pytest.mark.parametrize("asked", [f"{MISSING},{CPU}", "NoSuchExecutionProvider"])
def test_an_unavailable_provider_is_refused_naming_those_there_are(asked: str) -> None:
    with pytest.raises(ValidationError) as e:
        Settings(ort_providers=asked)
    message = str(e.value)
    assert asked.split(",")[0] in message and "LANTERN_ORT_PROVIDERS" in message
    assert f"it has: {', '.join(ort.get_available_providers())}" in message
    with pytest.raises(ValueError, match="is empty"):
        resolve_providers([])


def test_the_api_and_the_worker_refuse_to_start(tmp_path: Path, redis_url: str) -> None:
    env = {
        **os.environ,
        "LANTERN_DATA_DIR": str(tmp_path),
        "LANTERN_REDIS_URL": redis_url,
        "LANTERN_ORT_PROVIDERS": f"CUDA,{CPU}",
        "LANTERN_BUILTIN_MODEL": "false",
    }
    for command in (["worker"], ["serve", "--port", str(free_port())]):
        proc = subprocess.run(
            [*LANTERN, *command], env=env, capture_output=True, text=True, timeout=120
        )
        assert proc.returncode != 0, command
        out = proc.stdout + proc.stderr
        assert f"{MISSING} asked for in LANTERN_ORT_PROVIDERS are not available" in out, out
        assert ", ".join(ort.get_available_providers()) in out


def test_readyz_lists_the_providers_of_the_api_and_of_each_worker(
    tmp_path: Path, redis_url: str
) -> None:
    env = {
        **os.environ,
        "LANTERN_DATA_DIR": str(tmp_path / "data"),
        "LANTERN_REDIS_URL": redis_url,
        "LANTERN_ORT_THREADS": "1",
        "LANTERN_BUILTIN_MODEL": "false",
        "LANTERN_QUEUE": "providers-test",
    }
    worker_env = {**env, "LANTERN_ORT_PROVIDERS": f"{OTHER},{CPU}"}
    worker = Proc([*LANTERN, "worker", "--hostname", "gpu1@test"], worker_env,
                  tmp_path / "worker.log")
    port = free_port()
    api = Proc([*LANTERN, "serve", "--port", str(port)], env, tmp_path / "api.log")
    base = f"http://127.0.0.1:{port}"
    try:
        def providers() -> dict[str, object]:
            r = httpx.get(f"{base}/readyz")
            assert r.status_code == 200
            out: dict[str, object] = r.json()["checks"]["providers"]
            return out

        wait_for(lambda: "gpu1@test" in providers()["workers"], 120, "the worker's record")  # type: ignore[operator]
        p = providers()
        assert p["api"] == {"configured": [CPU], "active": [CPU],
                            "available": ort.get_available_providers()}
        assert p["workers"]["gpu1@test"] == {  # type: ignore[index]
            "configured": [OTHER, CPU], "active": [OTHER, CPU],
            "available": ort.get_available_providers()}
        worker.stop()  # a worker that stops drops off the list
        wait_for(lambda: "gpu1@test" not in providers()["workers"], 60, "the record gone")  # type: ignore[operator]
    except Exception:
        print(worker.tail(), api.tail())
        raise
    finally:
        worker.stop()
        api.stop()


# -- Dockerfile.gpu: the checks of Dockerfile (tests/deploy/test_compose.py), and its own --
@pytest.fixture(scope="module")
def gpu_instructions() -> list[tuple[str, str]]:
    return compose_checks.dockerfile_instructions(
        (ROOT / "Dockerfile.gpu").read_text(encoding="utf-8")
    )


def test_gpu_dockerfile_shape(gpu_instructions: list[tuple[str, str]]) -> None:
    compose_checks.test_dockerfile_shape(gpu_instructions)  # same base, user, CMD, health
    env = compose_checks.dockerfile_env(gpu_instructions)
    assert env["LANTERN_ORT_PROVIDERS"] == f"{MISSING},{CPU}"
    (install,) = [r for k, r in gpu_instructions if k == "RUN" and "pip install" in r]
    assert install.index("pip install --no-cache-dir .") < install.index(
        "pip uninstall -y onnxruntime"
    ) < install.index("onnxruntime-gpu")


def test_gpu_dockerfile_model_build_step_runs(
    gpu_instructions: list[tuple[str, str]], tmp_path: Path
) -> None:
    """The image's model-build step, as written, with the image's env (CUDA asked for) on a
    machine without a GPU — as a `docker build` runs it."""
    compose_checks.test_dockerfile_model_build_step_runs(gpu_instructions, tmp_path)
