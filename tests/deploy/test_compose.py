"""Checks of Dockerfile and docker-compose.yml that need no Docker engine.

* docker-compose.yml validates against the Compose Specification JSON schema (vendored in
  ``compose-spec.json``, see README.md here) and holds the facts Lantern relies on.
* The Dockerfile is parsed; its model-build ``RUN`` step is executed as plain shell with
  ``LANTERN_DATA_DIR`` pointed at a temporary folder, proving that the step works.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = ROOT / "Dockerfile"
COMPOSE = ROOT / "docker-compose.yml"
SCHEMA = Path(__file__).with_name("compose-spec.json")

# --------------------------------------------------------------------------- Dockerfile


def dockerfile_instructions(text: str) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, with ``\\`` continuations joined, comments dropped."""
    out: list[tuple[str, str]] = []
    buf: list[str] = []
    for raw in text.splitlines():
        line = raw.strip()
        if not buf and (not line or line.startswith("#")):
            continue
        if buf and line.startswith("#"):  # comment lines inside a continuation are dropped
            continue
        if line.endswith("\\"):
            buf.append(line[:-1].strip())
            continue
        buf.append(line)
        joined = " ".join(part for part in buf if part)
        buf = []
        keyword, _, rest = joined.partition(" ")
        out.append((keyword.upper(), rest.strip()))
    assert not buf, "Dockerfile ends inside a line continuation"
    return out


def dockerfile_env(instructions: list[tuple[str, str]]) -> dict[str, str]:
    env: dict[str, str] = {}
    for keyword, rest in instructions:
        if keyword != "ENV":
            continue
        tokens = shlex.split(rest)
        if tokens and "=" not in tokens[0]:  # legacy form: ENV KEY value with spaces
            env[tokens[0]] = " ".join(tokens[1:])
            continue
        for token in tokens:
            key, _, value = token.partition("=")
            env[key] = value
    return env


@pytest.fixture(scope="module")
def instructions() -> list[tuple[str, str]]:
    return dockerfile_instructions(DOCKERFILE.read_text(encoding="utf-8"))


def _only(instructions: list[tuple[str, str]], keyword: str) -> list[str]:
    return [rest for k, rest in instructions if k == keyword]


def test_dockerfile_shape(instructions: list[tuple[str, str]]) -> None:
    assert _only(instructions, "FROM") == ["python:3.11-slim"]
    runs = _only(instructions, "RUN")
    assert any("pip install --no-cache-dir ." in r for r in runs)
    env = dockerfile_env(instructions)
    assert env["LANTERN_DATA_DIR"] == "/data"
    # numba's compiled code (UMAP maps) cached on the shared data volume, where the
    # non-root user can write and every worker that mounts it finds it
    assert env["NUMBA_CACHE_DIR"].startswith(env["LANTERN_DATA_DIR"] + "/")
    assert _only(instructions, "EXPOSE") == ["8000"]

    users = _only(instructions, "USER")
    assert users, "the image must drop root"
    assert users[-1] not in ("root", "0")
    # the user is switched to after everything that needs root
    last_user = max(i for i, (k, _) in enumerate(instructions) if k == "USER")
    assert all(k != "RUN" for k, _ in instructions[last_user:])

    (cmd,) = _only(instructions, "CMD")
    assert json.loads(cmd) == ["lantern", "serve", "--host", "0.0.0.0", "--port", "8000"]

    (health,) = _only(instructions, "HEALTHCHECK")
    assert "/healthz" in health and "python" in health and "curl" not in health


def test_dockerignore_keeps_the_packages() -> None:
    """Every package pyproject.toml installs is in the build context (`COPY . /app`)."""
    import tomllib

    ignored = {
        line.strip().strip("/")
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    includes = project["tool"]["setuptools"]["packages"]["find"]["include"]
    for pattern in includes:
        package = pattern.rstrip("*")
        assert package not in ignored, f"{package} is excluded from the Docker build context"
        assert (ROOT / package).is_dir(), f"{package} listed in pyproject.toml but missing"
    assert "pyproject.toml" not in ignored
    assert {"tests", ".venv", ".git"} <= ignored


def test_dockerfile_model_build_step_runs(
    instructions: list[tuple[str, str]], tmp_path: Path
) -> None:
    """Run the image's model-build RUN line as it is, with the data dir in tmp_path."""
    builds = [r for r in _only(instructions, "RUN") if "ensure_builtin" in r]
    assert len(builds) == 1, "expected exactly one RUN step that builds the built-in model"
    (command,) = builds
    # The step must come after the project is installed and before root is dropped.
    order = [rest for _, rest in instructions]
    install = next(i for i, r in enumerate(order) if "pip install --no-cache-dir ." in r)
    assert install < order.index(command)

    data_dir = tmp_path / "data"
    env = {**os.environ, **dockerfile_env(instructions)}
    env["LANTERN_DATA_DIR"] = str(data_dir)
    env.pop("LANTERN_ZOO", None)  # the image's own zoo dir, not the test session's
    # `python` in the step must be this interpreter (the one the project is installed in).
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env.get("PATH", "")
    proc = subprocess.run(
        ["/bin/sh", "-c", command],  # Docker's shell form
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    model = data_dir / "zoo" / "efficientnet-lite0.onnx"
    assert model.is_file()
    assert model.stat().st_size > 1_000_000
    assert str(model) in proc.stdout
    # and every built-in model is built and registered in the image's data dir
    from engine.models.zoo.registry import builtin_models

    for builtin in builtin_models():
        assert (data_dir / "models" / builtin.name / "record.json").is_file(), builtin.name

    import onnxruntime as ort

    session = ort.InferenceSession(str(model), providers=["CPUExecutionProvider"])
    (inp,) = session.get_inputs()
    assert list(inp.shape[1:]) == [3, 224, 224]
    assert session.get_outputs()[0].shape[-1] == 1000


# ------------------------------------------------------------------------ docker-compose


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    yaml = pytest.importorskip("yaml", reason="PyYAML is needed to read docker-compose.yml")
    doc = yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))
    assert isinstance(doc, dict)
    return doc


@pytest.fixture(scope="module")
def validator() -> Any:
    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema validates the compose file")
    schema = json.loads(SCHEMA.read_text(encoding="utf-8"))
    assert schema.get("title") == "Compose Specification"
    cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft7Validator)
    cls.check_schema(schema)
    return cls(schema)


def test_compose_matches_the_compose_spec(compose: dict[str, Any], validator: Any) -> None:
    errors = sorted(validator.iter_errors(compose), key=lambda e: list(e.absolute_path))
    assert not errors, "\n".join(
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors
    )


def test_compose_spec_schema_rejects_mistakes(compose: dict[str, Any], validator: Any) -> None:
    """The vendored schema really constrains services (guards against a vacuous schema)."""
    bad = json.loads(json.dumps(compose))
    bad["services"]["api"]["helthcheck"] = {"test": ["CMD", "true"]}
    assert not validator.is_valid(bad)
    bad = json.loads(json.dumps(compose))
    bad["services"]["redis"]["healthcheck"]["retries"] = "ten"
    assert not validator.is_valid(bad)


def _strings(node: Any) -> list[str]:
    if isinstance(node, dict):
        return [s for k, v in node.items() for s in (*_strings(k), *_strings(v))]
    if isinstance(node, list):
        return [s for v in node for s in _strings(v)]
    return [node] if isinstance(node, str) else []


HOST_VARIABLES = {"${LANTERN_API_KEYS:?set LANTERN_API_KEYS (see docker-compose.yml)}"}


def test_compose_has_no_unescaped_interpolation(compose: dict[str, Any]) -> None:
    # Compose interpolates $VAR from the host; container-side variables must be written $$.
    # The one host variable is the API keys, required (":?") so the stack never runs open.
    for value in _strings(compose):
        if value in HOST_VARIABLES:
            continue
        assert "$" not in value.replace("$$", ""), value


def test_compose_requires_api_keys(compose: dict[str, Any]) -> None:
    env = _env(compose["services"]["api"])
    assert env["LANTERN_AUTH_REQUIRED"] == "true"
    assert env["LANTERN_API_KEYS"] in HOST_VARIABLES


def test_compose_flower(compose: dict[str, Any]) -> None:
    flower = compose["services"]["flower"]
    assert "flower" in flower["command"] and "--broker=redis://redis:6379/0" in flower["command"]
    assert "5555:5555" in flower["ports"]


def _flat(value: Any) -> str:
    return " ".join(value) if isinstance(value, list) else str(value)


def _env(service: dict[str, Any]) -> dict[str, str]:
    env = service.get("environment", {})
    if isinstance(env, list):
        return dict(item.split("=", 1) for item in env)
    return {k: str(v) for k, v in env.items()}


def test_compose_redis(compose: dict[str, Any]) -> None:
    redis = compose["services"]["redis"]
    assert redis["image"] == "redis:7-alpine"
    command = (
        shlex.split(redis["command"]) if isinstance(redis["command"], str) else redis["command"]
    )
    assert "--appendonly" in command
    assert command[command.index("--appendonly") + 1] == "yes"
    volumes = [v.split(":") for v in redis["volumes"]]
    assert any(target == "/data" and src in compose["volumes"] for src, target, *_ in volumes)
    assert re.search(r"redis-cli\s+ping", _flat(redis["healthcheck"]["test"]))


@pytest.mark.parametrize("name", ["api", "worker"])
def test_compose_lantern_services(compose: dict[str, Any], name: str) -> None:
    services = compose["services"]
    svc = services[name]
    assert svc["build"] == "."
    assert svc["image"] == services["api"]["image"], "api and worker run the same image"
    env = _env(svc)
    assert env["LANTERN_REDIS_URL"] == "redis://redis:6379/0"
    assert env["LANTERN_DATA_DIR"] == "/data"
    assert "lantern-data:/data" in svc["volumes"]
    assert "lantern-data" in compose["volumes"]
    assert svc["depends_on"]["redis"]["condition"] == "service_healthy"
    health = svc["healthcheck"]
    assert not health.get("disable", False)
    assert health["test"][0] in ("CMD", "CMD-SHELL")


def test_compose_api(compose: dict[str, Any]) -> None:
    api = compose["services"]["api"]
    assert "8000:8000" in api["ports"]
    assert "/readyz" in _flat(api["healthcheck"]["test"])
    assert "command" not in api  # the image's CMD: lantern serve on 0.0.0.0:8000


def test_compose_worker(compose: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> None:
    worker = compose["services"]["worker"]
    command = worker["command"]
    assert command[:2] == ["lantern", "worker"]
    assert command[command.index("--concurrency") + 1] == "2"
    assert "ports" not in worker
    health = _flat(worker["healthcheck"]["test"])
    assert "celery -A workers.app inspect ping" in health
    assert "celery@$$HOSTNAME" in health  # Celery's default node name in the container

    # The arguments parse with Lantern's CLI: without a Redis URL the worker command
    # stops with exit code 2 before starting anything.
    from lantern.cli import main

    monkeypatch.delenv("LANTERN_REDIS_URL", raising=False)
    assert main(command[1:]) == 2
