"""The Kubernetes manifests (deploy/k8s), checked without a cluster.

Every overlay is rendered with ``kubectl kustomize`` and every object validated:

* the Kubernetes objects with kubernetes-validate, strict (unknown fields are errors),
  against the schemas of one fixed Kubernetes version (``K8S_VERSION``);
* the KEDA ScaledObject with jsonschema against the openAPIV3Schema of KEDA's own CRD,
  vendored in ``keda/`` (see README.md here), made strict the same way.

Then the facts Lantern relies on, each able to fail: the container commands parse with
Lantern's CLI, the probed paths are routes of the app, every environment variable is a
setting and the values validate as Settings, the KEDA trigger measures the Redis list
Lantern's dispatcher really queues in (a real redis-server started with the
StatefulSet's own arguments), Redis keeps its append-only file on its PVC, the data store
is ReadWriteMany and mounted at LANTERN_DATA_DIR, selectors pick the right pods, and the
overlays say what they promise (dev small, production scaled, gpu on the GPU image).
The README's Production commands are read back and checked against the same renderings.
"""

from __future__ import annotations

import argparse
import copy
import functools
import re
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

import jsonschema
import kubernetes_validate
import pytest
import redis
import yaml

import lantern.cli as cli
from lantern.settings import Settings
from lantern_testing.processes import free_port, wait_for

ROOT = Path(__file__).resolve().parents[2]
K8S = ROOT / "deploy" / "k8s"
OVERLAYS_DIR = K8S / "overlays"
KEDA_CRD = Path(__file__).with_name("keda") / "keda.sh_scaledobjects.yaml"
README = ROOT / "README.md"
COMPOSE = ROOT / "docker-compose.yml"

#: The Kubernetes version the objects are validated for (kubectl 1.32's own).
K8S_VERSION = "1.32.0"
#: The overlays the README promises; any other directory with a kustomization is rendered too.
PROMISED = {"dev", "production", "gpu"}
OVERLAYS = sorted(p.parent.name for p in OVERLAYS_DIR.glob("*/kustomization.yaml"))
#: Kinds that live in a namespace (everything here but nothing cluster-scoped).
NAMESPACED = {
    "ConfigMap", "Service", "PersistentVolumeClaim", "Deployment", "StatefulSet",
    "PodDisruptionBudget", "ScaledObject",
}  # fmt: skip


# --------------------------------------------------------------------------- rendering


def kubectl() -> str:
    path = shutil.which("kubectl")
    assert path, "kubectl is needed to render the manifests (.ci/run installs kubernetes-client)"
    return path


@functools.cache
def rendered(overlay: str) -> tuple[dict[str, Any], ...]:
    """The objects ``kubectl kustomize deploy/k8s/overlays/<overlay>`` renders (read-only:
    a test that changes one deep-copies it first)."""
    proc = subprocess.run(
        [kubectl(), "kustomize", str(OVERLAYS_DIR / overlay)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    return tuple(d for d in yaml.safe_load_all(proc.stdout) if d)


def one(objs: tuple[dict[str, Any], ...], kind: str, name: str) -> dict[str, Any]:
    found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == name]
    assert len(found) == 1, f"expected one {kind}/{name}, found {len(found)}"
    return found[0]


def container(workload: dict[str, Any], name: str) -> dict[str, Any]:
    (c,) = [c for c in workload["spec"]["template"]["spec"]["containers"] if c["name"] == name]
    return c


def api(objs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    return container(one(objs, "Deployment", "lantern-api"), "api")


def worker(objs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    return container(one(objs, "Deployment", "lantern-worker"), "worker")


def scaled_object(objs: tuple[dict[str, Any], ...]) -> dict[str, Any]:
    (so,) = [o for o in objs if o["kind"] == "ScaledObject"]
    return so


def test_the_promised_overlays_exist() -> None:
    assert PROMISED <= set(OVERLAYS), OVERLAYS


# --------------------------------------------------------------------------- validators


def k8s_error(obj: dict[str, Any]) -> str | None:
    """kubernetes-validate's complaint about ``obj`` (strict), or None. A kind it has no
    schema for raises SchemaNotFoundError: only the ScaledObject is validated elsewhere."""
    try:
        kubernetes_validate.validate(obj, K8S_VERSION, strict=True)
    except kubernetes_validate.ValidationError as e:
        return f"{obj['kind']}/{obj['metadata']['name']} {'.'.join(map(str, e.path))}: {e.message}"
    return None


def _strict(schema: Any) -> Any:
    """The CRD schema with unknown fields forbidden wherever it lists the fields (the API
    server prunes or, with strict field validation, refuses them), except where the CRD
    says to keep unknown fields."""
    if isinstance(schema, dict):
        out = {k: _strict(v) for k, v in schema.items()}
        if (
            out.get("type") == "object"
            and "properties" in out
            and "additionalProperties" not in out
            and not out.get("x-kubernetes-preserve-unknown-fields")
        ):
            out["additionalProperties"] = False
        return out
    if isinstance(schema, list):
        return [_strict(v) for v in schema]
    return schema


@functools.cache
def keda_validator() -> jsonschema.Draft7Validator:
    crd = yaml.safe_load(KEDA_CRD.read_text(encoding="utf-8"))
    assert crd["kind"] == "CustomResourceDefinition"
    assert crd["spec"]["group"] == "keda.sh" and crd["spec"]["names"]["kind"] == "ScaledObject"
    (version,) = [v for v in crd["spec"]["versions"] if v["name"] == "v1alpha1"]
    assert version["served"] and version["storage"]
    schema = _strict(version["schema"]["openAPIV3Schema"])
    jsonschema.Draft7Validator.check_schema(schema)
    return jsonschema.Draft7Validator(schema)


def keda_errors(obj: dict[str, Any]) -> list[str]:
    errors = [
        f"{'/'.join(map(str, e.absolute_path))}: {e.message}"
        for e in keda_validator().iter_errors(obj)
    ]
    if obj.get("apiVersion") != "keda.sh/v1alpha1":
        errors.append(f"apiVersion {obj.get('apiVersion')!r} is not keda.sh/v1alpha1")
    if not re.fullmatch(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?", str(obj["metadata"].get("name"))):
        errors.append("metadata.name is not a DNS label")
    return errors


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_object_validates(overlay: str) -> None:
    objs = rendered(overlay)
    kinds = sorted(o["kind"] for o in objs)
    assert kinds == sorted(
        ["ConfigMap", "PersistentVolumeClaim", "Service", "Service", "StatefulSet",
         "Deployment", "Deployment", "PodDisruptionBudget", "PodDisruptionBudget",
         "ScaledObject"]
    )  # fmt: skip
    errors = []
    for obj in objs:
        if obj["kind"] == "ScaledObject":
            errors += keda_errors(obj)
        else:
            error = k8s_error(obj)
            if error:
                errors.append(error)
    assert not errors, "\n".join(errors)


def test_the_kubernetes_validator_rejects_mistakes() -> None:
    """The same validator refuses a Deployment with a misspelt field, a wrong type and a
    missing required field (it is not vacuous)."""
    good = one(rendered("production"), "Deployment", "lantern-api")
    assert k8s_error(good) is None

    typo = copy.deepcopy(good)
    typo["spec"]["template"]["spec"]["containers"][0]["imagePullPolcy"] = "Always"
    assert "imagePullPolcy" in str(k8s_error(typo))

    wrong_type = copy.deepcopy(good)
    wrong_type["spec"]["replicas"] = "three"
    assert "replicas" in str(k8s_error(wrong_type))

    no_selector = copy.deepcopy(good)
    del no_selector["spec"]["selector"]
    assert "selector" in str(k8s_error(no_selector))

    probe = copy.deepcopy(good)
    probe["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGet"]["paht"] = "/"
    assert k8s_error(probe) is not None


def test_the_keda_validator_rejects_mistakes() -> None:
    good = scaled_object(rendered("production"))
    assert keda_errors(good) == []

    typo = copy.deepcopy(good)
    typo["spec"]["maxReplicas"] = 10  # the HPA's name, not KEDA's maxReplicaCount
    assert any("maxReplicas" in e for e in keda_errors(typo))

    not_a_string = copy.deepcopy(good)
    not_a_string["spec"]["triggers"][0]["metadata"]["listLength"] = 4  # metadata is strings
    assert any("listLength" in e or "4 is not of type" in e for e in keda_errors(not_a_string))

    no_target = copy.deepcopy(good)
    del no_target["spec"]["scaleTargetRef"]
    assert any("scaleTargetRef" in e for e in keda_errors(no_target))

    no_type = copy.deepcopy(good)
    del no_type["spec"]["triggers"][0]["type"]
    assert any("'type' is a required property" in e for e in keda_errors(no_type))


# --------------------------------------------------------------------------- kustomize v2

#: The kustomization fields Debian's kubectl 1.20 (kustomize v2.0.3) renders as kustomize
#: v5 does: no generators (their hash suffixes differ), no commonLabels (v5 and v2 differ
#: on which selectors get them), no `patches`/`replacements`/`components` (v2 lacks them).
V2_SAFE = {"namespace", "resources", "bases", "patchesStrategicMerge", "vars", "configurations"}


def test_kustomizations_use_what_kustomize_v2_and_v5_share() -> None:
    files = sorted(K8S.rglob("kustomization.yaml"))
    assert len(files) == len(OVERLAYS) + 1
    for f in files:
        k = yaml.safe_load(f.read_text(encoding="utf-8"))
        assert set(k) <= V2_SAFE, f"{f}: {sorted(set(k) - V2_SAFE)}"
        for entry in k.get("resources", []):  # v2: files only
            assert (f.parent / entry).is_file(), f"{f}: resources entry {entry} is not a file"
        for entry in k.get("bases", []):  # v2: directories go here
            assert (f.parent / entry / "kustomization.yaml").is_file(), f"{f}: base {entry}"
        for entry in k.get("patchesStrategicMerge", []) + k.get("configurations", []):
            assert (f.parent / entry).is_file(), f"{f}: {entry}"


# --------------------------------------------------------------------------- settings


def env_of(objs: tuple[dict[str, Any], ...], c: dict[str, Any]) -> dict[str, str | None]:
    """The container's environment as the kubelet builds it: the ConfigMaps of envFrom,
    then env (None: a value from a Secret, not in the manifests)."""
    env: dict[str, str | None] = {}
    for source in c.get("envFrom", []):
        assert set(source) == {"configMapRef"}, source
        env.update(one(objs, "ConfigMap", source["configMapRef"]["name"])["data"])
    for item in c.get("env", []):
        env[item["name"]] = item.get("value")
    return env


def settings_of(env: dict[str, str | None], monkeypatch: pytest.MonkeyPatch) -> Settings:
    """Settings() as the container's process reads them (nothing of this test's own
    environment). LANTERN_ORT_PROVIDERS is checked against this installation at start, so
    a GPU worker's is checked by name in the gpu test and left out here."""
    import os

    for name in list(os.environ):
        if name.startswith("LANTERN_"):
            monkeypatch.delenv(name)
    for name, value in env.items():
        if value is not None and name != "LANTERN_ORT_PROVIDERS":
            monkeypatch.setenv(name, value)
    return Settings()


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_env_var_is_a_setting_with_a_valid_value(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered(overlay)
    fields = set(Settings.model_fields)
    for c in (api(objs), worker(objs)):
        env = env_of(objs, c)
        for name in env:
            assert name.startswith("LANTERN_"), f"{c['name']}: {name} is no Lantern setting"
            assert name.removeprefix("LANTERN_").lower() in fields, f"{c['name']}: {name}"
        settings = settings_of(env, monkeypatch)  # raises on a value Settings refuses
        assert settings.redis_url and settings.queue
    # the Secret-sourced keys are the only value not in the manifests
    secret = [e for e in api(objs)["env"] if "valueFrom" in e]
    assert [e["name"] for e in secret] == ["LANTERN_API_KEYS"]


# --------------------------------------------------------------------------- commands


def _parsed(command: list[str], monkeypatch: pytest.MonkeyPatch) -> dict[str, Any]:
    """The arguments Lantern's CLI parses from a container command (serve and worker
    captured before they start anything)."""
    assert command[0] == "lantern"
    seen: dict[str, Any] = {}

    def capture(args: argparse.Namespace) -> int:
        seen.update(vars(args))
        return 0

    monkeypatch.setattr(cli, "_serve", capture)
    monkeypatch.setattr(cli, "_worker", capture)
    assert cli.main(command[1:]) == 0
    return seen


def _cpu(quantity: str | int) -> float:
    text = str(quantity)
    return int(text[:-1]) / 1000 if text.endswith("m") else float(text)


def _bytes(quantity: str) -> int:
    units = {"Ki": 2**10, "Mi": 2**20, "Gi": 2**30, "K": 10**3, "M": 10**6, "G": 10**9}
    for suffix, factor in units.items():
        if quantity.endswith(suffix):
            return int(quantity[: -len(suffix)]) * factor
    return int(quantity)


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_api_command_probes_and_service(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    objs = rendered(overlay)
    c = api(objs)
    settings_of(env_of(objs, c), monkeypatch)
    args = _parsed(c["command"], monkeypatch)
    assert args["command"] == "serve" and args["host"] == "0.0.0.0" and args["api_only"]
    (port,) = c["ports"]
    assert port["containerPort"] == args["port"] == 8000
    for probe in ("startupProbe", "readinessProbe", "livenessProbe"):
        assert c[probe]["httpGet"]["port"] in (port["name"], port["containerPort"]), probe
    assert c["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert c["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert c["startupProbe"]["httpGet"]["path"] == "/healthz"

    service = one(objs, "Service", "lantern-api")
    (sp,) = service["spec"]["ports"]
    assert sp["targetPort"] in (port["name"], port["containerPort"])


def test_the_probed_paths_are_routes_of_the_app(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from service.app import create_app

    probed = {
        c[p]["httpGet"]["path"]
        for o in OVERLAYS
        for c in [api(rendered(o))]
        for p in ("startupProbe", "readinessProbe", "livenessProbe")
    }
    assert probed == {"/readyz", "/healthz"}
    app = create_app(Settings(data_dir=tmp_path, redis_url=None, builtin_model=False))
    assert set(app.openapi()["paths"]) >= probed
    # served (no lifespan: the app has not started, so it is alive but not ready)
    client = TestClient(app)
    assert client.get("/healthz").status_code == 200
    ready = client.get("/readyz")
    assert ready.status_code == 503 and ready.json()["code"] == "not_ready"


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_worker_command_and_its_cpu(overlay: str, monkeypatch: pytest.MonkeyPatch) -> None:
    objs = rendered(overlay)
    deployment = one(objs, "Deployment", "lantern-worker")
    c = worker(objs)
    settings = settings_of(env_of(objs, c), monkeypatch)
    args = _parsed(c["command"], monkeypatch)
    assert args["command"] == "worker" and args["concurrency"] >= 1
    assert "ports" not in c  # a worker serves nothing
    # ONNX Runtime threads of all pool processes fit the CPU limit (0 would mean all the
    # node's cores, not the pod's)
    assert settings.ort_threads >= 1
    assert args["concurrency"] * settings.ort_threads <= _cpu(c["resources"]["limits"]["cpu"])
    # KEDA owns the replica count; a warm shutdown outlasts a task's hard time limit
    # (workers/dispatch.py: the job's soft limit + 60 s)
    assert "replicas" not in deployment["spec"]
    grace = deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"]
    assert grace >= settings.job_time_limit_s + 60


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_every_container_has_requests_and_limits(overlay: str) -> None:
    for obj in rendered(overlay):
        if obj["kind"] not in ("Deployment", "StatefulSet"):
            continue
        for c in obj["spec"]["template"]["spec"]["containers"]:
            res = c["resources"]
            assert {"cpu", "memory"} <= set(res["requests"]), c["name"]
            assert _bytes(res["limits"]["memory"]) >= _bytes(res["requests"]["memory"])
            if "cpu" in res["limits"]:
                assert _cpu(res["limits"]["cpu"]) >= _cpu(res["requests"]["cpu"])


def test_the_resource_figures_are_cited_from_the_benchmarks() -> None:
    """The sizes' comments name the benchmark figure they come from, and that figure is
    in bench/RESULTS.md."""
    results = (ROOT / "bench" / "RESULTS.md").read_text(encoding="utf-8")
    for name in ("api-deployment.yaml", "worker-deployment.yaml"):
        text = (K8S / "base" / name).read_text(encoding="utf-8")
        assert "bench/RESULTS.md" in text and "461 MB" in text, name
    assert "**461 MB** (at most 2 decodes at once)" in results
    assert "Scale-out" in results


# --------------------------------------------------------------------------- security


def _dockerfile_ids(path: Path) -> tuple[int, int]:
    text = path.read_text(encoding="utf-8")
    uid = re.search(r"useradd [^\n]*--uid (\d+)", text)
    gid = re.search(r"groupadd [^\n]*--gid (\d+)", text)
    assert uid and gid and re.search(r"^USER lantern$", text, flags=re.M)
    return int(uid.group(1)), int(gid.group(1))


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_lantern_pods_run_as_the_images_user(overlay: str) -> None:
    objs = rendered(overlay)
    for name, c in (("lantern-api", api(objs)), ("lantern-worker", worker(objs))):
        dockerfile = "Dockerfile.gpu" if c["image"].startswith("lantern-gpu") else "Dockerfile"
        uid, gid = _dockerfile_ids(ROOT / dockerfile)
        pod = one(objs, "Deployment", name)["spec"]["template"]["spec"]["securityContext"]
        assert pod["runAsNonRoot"] is True
        assert (pod["runAsUser"], pod["runAsGroup"], pod["fsGroup"]) == (uid, gid, gid)
        assert c["securityContext"]["allowPrivilegeEscalation"] is False
        assert c["securityContext"]["capabilities"]["drop"] == ["ALL"]


# --------------------------------------------------------------------------- volumes


def _mounts(workload: dict[str, Any], c: dict[str, Any]) -> dict[str, str]:
    """mountPath -> claim name, for the container's PVC volumes (and volumeClaimTemplates)."""
    spec = workload["spec"]
    claims = {
        v["name"]: v["persistentVolumeClaim"]["claimName"]
        for v in spec["template"]["spec"].get("volumes", [])
        if "persistentVolumeClaim" in v
    }
    claims.update({t["metadata"]["name"]: t["metadata"]["name"]
                   for t in spec.get("volumeClaimTemplates", [])})  # fmt: skip
    return {m["mountPath"]: claims[m["name"]] for m in c.get("volumeMounts", [])}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_the_data_store_is_shared_at_the_data_dir(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered(overlay)
    (pvc,) = [o for o in objs if o["kind"] == "PersistentVolumeClaim"]
    assert pvc["spec"]["accessModes"] == ["ReadWriteMany"]
    assert _bytes(pvc["spec"]["resources"]["requests"]["storage"]) >= 2**30
    for name, c in (("lantern-api", api(objs)), ("lantern-worker", worker(objs))):
        data_dir = settings_of(env_of(objs, c), monkeypatch).data_dir
        assert _mounts(one(objs, "Deployment", name), c) == {
            str(data_dir): pvc["metadata"]["name"]
        }, name


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_redis_keeps_its_append_only_file_on_its_volume(overlay: str) -> None:
    objs = rendered(overlay)
    sts = one(objs, "StatefulSet", "lantern-redis")
    c = container(sts, "redis")
    args = c["args"]
    assert args[0] == "redis-server"
    assert args[args.index("--appendonly") + 1] == "yes"
    data = args[args.index("--dir") + 1]
    (template,) = sts["spec"]["volumeClaimTemplates"]
    assert template["spec"]["accessModes"] == ["ReadWriteOnce"]
    assert _mounts(sts, c) == {data: template["metadata"]["name"]}
    assert sts["spec"]["replicas"] == 1
    service = one(objs, "Service", sts["spec"]["serviceName"])
    assert service["spec"]["clusterIP"] == "None"  # headless: the StatefulSet's pod DNS


# --------------------------------------------------------------------------- selectors


def _pods(objs: tuple[dict[str, Any], ...]) -> dict[str, dict[str, str]]:
    return {
        o["metadata"]["name"]: o["spec"]["template"]["metadata"]["labels"]
        for o in objs
        if o["kind"] in ("Deployment", "StatefulSet")
    }


def _selected(selector: dict[str, str], pods: dict[str, dict[str, str]]) -> set[str]:
    return {n for n, labels in pods.items() if selector.items() <= labels.items()}


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_selectors_pick_exactly_their_pods(overlay: str) -> None:
    objs = rendered(overlay)
    pods = _pods(objs)
    expected = {
        ("Service", "lantern-api"): {"lantern-api"},
        ("Service", "lantern-redis"): {"lantern-redis"},
        ("PodDisruptionBudget", "lantern-api"): {"lantern-api"},
        ("PodDisruptionBudget", "lantern-worker"): {"lantern-worker"},
        ("Deployment", "lantern-api"): {"lantern-api"},
        ("Deployment", "lantern-worker"): {"lantern-worker"},
        ("StatefulSet", "lantern-redis"): {"lantern-redis"},
    }
    for (kind, name), want in expected.items():
        spec = one(objs, kind, name)["spec"]
        selector = spec["selector"] if kind == "Service" else spec["selector"]["matchLabels"]
        assert set(spec.get("selector", {})) - {"matchLabels"} == set() or kind == "Service"
        assert _selected(selector, pods) == want, (kind, name)
    for kind in ("PodDisruptionBudget",):
        for o in (o for o in objs if o["kind"] == kind):
            assert o["spec"]["maxUnavailable"] == 1  # a drain proceeds even with one replica


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_everything_is_in_the_overlays_namespace(overlay: str) -> None:
    objs = rendered(overlay)
    namespaces = {o["metadata"].get("namespace") for o in objs}
    assert {o["kind"] for o in objs} <= NAMESPACED
    assert len(namespaces) == 1 and None not in namespaces, namespaces


# --------------------------------------------------------------------------- KEDA


@pytest.mark.parametrize("overlay", OVERLAYS)
def test_keda_scales_the_workers_on_lanterns_redis(
    overlay: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    objs = rendered(overlay)
    so = scaled_object(objs)
    spec = so["spec"]
    target = spec["scaleTargetRef"]
    assert (target.get("apiVersion", "apps/v1"), target.get("kind", "Deployment")) == (
        "apps/v1", "Deployment",
    )  # fmt: skip
    assert target["name"] == "lantern-worker"
    one(objs, "Deployment", target["name"])
    assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"]

    (trigger,) = spec["triggers"]
    assert trigger["type"] == "redis"
    meta = trigger["metadata"]
    settings = settings_of(env_of(objs, worker(objs)), monkeypatch)
    assert meta["listName"] == settings.queue
    assert int(meta["listLength"]) >= 1
    # the operator runs in KEDA's namespace: Redis by its full name, port and database of
    # the URL the API and the workers use
    url = urlparse(settings.redis_url or "")
    service = one(objs, "Service", str(url.hostname))
    assert url.port in [p["port"] for p in service["spec"]["ports"]]
    ns = service["metadata"]["namespace"]
    assert meta["address"] == f"{url.hostname}.{ns}.svc.cluster.local:{url.port}"
    assert meta.get("databaseIndex", "0") == url.path.strip("/")


def test_the_list_keda_measures_is_where_lantern_queues_work(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real redis-server started with the StatefulSet's own arguments (--dir pointed at
    tmp_path, a private port): it runs with appendonly and writes its append-only file
    into --dir; Lantern's Celery dispatcher, with the workers' rendered settings, queues a
    task into the list the ScaledObject names, on its database."""
    objs = rendered("production")
    args = list(container(one(objs, "StatefulSet", "lantern-redis"), "redis")["args"])
    args[args.index("--dir") + 1] = str(tmp_path)
    exe = shutil.which("redis-server")
    assert exe, "redis-server is needed (.ci/run installs it)"
    port = free_port()
    proc = subprocess.Popen(
        [exe, *args[1:], "--port", str(port), "--bind", "127.0.0.1", "--save", ""],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        meta = scaled_object(objs)["spec"]["triggers"][0]["metadata"]
        client = redis.Redis(
            port=port, db=int(meta.get("databaseIndex", "0")), decode_responses=True
        )
        wait_for(client.ping, 10, "redis-server")
        assert client.config_get("appendonly") == {"appendonly": "yes"}
        assert client.config_get("appendfsync") == {"appendfsync": "always"}

        from jobs.runtime import Runtime
        from workers.dispatch import CeleryDispatcher

        settings = settings_of(env_of(objs, worker(objs)), monkeypatch).model_copy(
            update={"redis_url": f"redis://127.0.0.1:{port}/{meta.get('databaseIndex', '0')}",
                    "data_dir": tmp_path / "data"}
        )  # fmt: skip
        dispatcher = CeleryDispatcher(Runtime(settings))
        dispatcher.submit_chunk("job-1", 0, 128)
        dispatcher.submit("job-2", 60.0)
        assert client.llen(meta["listName"]) == 2
        assert dispatcher.pending() == {("chunk", "job-1", 0), ("explain", "job-2", -1)}
        client.bgrewriteaof()
        wait_for(lambda: any(tmp_path.rglob("*.aof")), 10, "the append-only file")
    finally:
        proc.terminate()
        proc.wait(10)


# --------------------------------------------------------------------------- overlays


def test_dev_is_one_of_each_and_small() -> None:
    dev, prod = rendered("dev"), rendered("production")
    assert one(dev, "Deployment", "lantern-api")["spec"]["replicas"] == 1
    assert one(dev, "StatefulSet", "lantern-redis")["spec"]["replicas"] == 1
    spec = scaled_object(dev)["spec"]
    assert spec["minReplicaCount"] == spec["maxReplicaCount"] == 1
    for pick in (api, worker):
        small, big = pick(dev)["resources"]["requests"], pick(prod)["resources"]["requests"]
        assert _cpu(small["cpu"]) < _cpu(big["cpu"])
        assert _bytes(small["memory"]) < _bytes(big["memory"])


def test_production_scales() -> None:
    dev, prod = rendered("dev"), rendered("production")
    replicas = one(prod, "Deployment", "lantern-api")["spec"]["replicas"]
    assert replicas >= 2 and replicas > one(dev, "Deployment", "lantern-api")["spec"]["replicas"]
    spec = scaled_object(prod)["spec"]
    assert 2 <= spec["minReplicaCount"] < spec["maxReplicaCount"]
    assert env_of(prod, api(prod))["LANTERN_AUTH_REQUIRED"] == "true"


def test_gpu_workers_run_the_gpu_image_on_cuda_then_cpu() -> None:
    import onnxruntime as ort

    from engine.models.runtime import _provider_name

    gpu, prod = rendered("gpu"), rendered("production")
    c = worker(gpu)
    assert c["image"].split(":")[0] == "lantern-gpu"
    assert int(c["resources"]["limits"]["nvidia.com/gpu"]) == 1
    raw = env_of(gpu, c)["LANTERN_ORT_PROVIDERS"]
    split = Settings._split_providers(raw)
    assert isinstance(split, list)
    names = [_provider_name(p, list(ort.get_all_providers())) for p in split]
    assert names == ["CUDAExecutionProvider", "CPUExecutionProvider"]
    tolerations = one(gpu, "Deployment", "lantern-worker")["spec"]["template"]["spec"][
        "tolerations"
    ]
    assert {"key": "nvidia.com/gpu", "operator": "Exists", "effect": "NoSchedule"} in tolerations
    # the API stays on the CPU image, and nothing else of production changes for it
    assert api(gpu) == api(prod) and api(gpu)["image"].split(":")[0] == "lantern"
    assert "nvidia.com/gpu" not in str(api(gpu))
    assert "LANTERN_ORT_PROVIDERS" not in env_of(prod, worker(prod))


# --------------------------------------------------------------------------- README


def production_section() -> str:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"^## Production\b.*?(?=^## )", text, flags=re.S | re.M)
    assert match, "README.md has no '## Production' section"
    return match.group(0)


def subsection(title: str) -> str:
    match = re.search(
        rf"^### {re.escape(title)}\b.*?(?=^### |\Z)", production_section(), flags=re.S | re.M
    )
    assert match, f"README's Production section has no '### {title}'"
    return match.group(0)


def commands(markdown: str) -> list[list[str]]:
    """The shell commands of the markdown's ```bash blocks, one per line (comments and
    continuations handled by shlex)."""
    out = []
    for block in re.findall(r"```bash\n(.*?)```", markdown, flags=re.S):
        for line in block.replace("\\\n", " ").splitlines():
            tokens = shlex.split(line, comments=True)
            if tokens:
                out.append(tokens)
    return out


def _option(tokens: list[str], name: str) -> str | None:
    return tokens[tokens.index(name) + 1] if name in tokens else None


def test_the_readme_kubernetes_commands_are_the_validated_overlays() -> None:
    kube = [t for t in commands(subsection("Kubernetes")) if t[0] == "kubectl"]
    overlays = []
    for tokens in kube:
        path = _option(tokens, "-k") or (
            tokens[tokens.index("kustomize") + 1] if "kustomize" in tokens else None
        )
        if path is None:
            continue
        assert path.startswith("deploy/k8s/overlays/"), path
        name = path.removeprefix("deploy/k8s/overlays/").rstrip("/")
        assert name in OVERLAYS, name
        assert rendered(name)  # renders (and test_every_object_validates validates it)
        overlays.append(name)
    assert PROMISED <= set(overlays), overlays

    namespaces = {rendered(o)[0]["metadata"]["namespace"] for o in OVERLAYS}
    (secret,) = [t for t in kube if "secret" in t]
    ref = next(e for e in api(rendered("production"))["env"] if "valueFrom" in e)
    key = ref["valueFrom"]["secretKeyRef"]
    assert secret[secret.index("generic") + 1] == key["name"]
    assert any(t.startswith(f"--from-literal={key['key']}=") for t in secret)
    assert _option(secret, "-n") in namespaces

    # KEDA is installed first: the ScaledObject's kind is its CRD
    text = subsection("Kubernetes")
    assert "KEDA" in text and text.index("kedacore") < text.index("apply -k")


def test_the_readme_compose_commands_name_compose_services() -> None:
    services = set(yaml.safe_load(COMPOSE.read_text(encoding="utf-8"))["services"])
    compose = [t for t in commands(subsection("Compose")) if t[:2] == ["docker", "compose"]]
    assert compose
    for tokens in compose:
        for i, token in enumerate(tokens):
            if token == "--scale":
                name, _, count = tokens[i + 1].partition("=")
                assert name in services and count.isdigit(), tokens
        positional = [
            t for i, t in enumerate(tokens[3:], 3)
            if not t.startswith("-") and tokens[i - 1] != "--scale"
        ]  # fmt: skip
        assert set(positional) <= services, tokens


def test_the_readme_gpu_build_makes_the_gpu_overlays_image() -> None:
    builds = [t for t in commands(subsection("Completion callbacks and GPU workers"))
              if t[:2] == ["docker", "build"]]  # fmt: skip
    (build,) = builds
    dockerfile = _option(build, "-f")
    assert dockerfile == "Dockerfile.gpu" and (ROOT / dockerfile).is_file()
    assert _option(build, "-t") == worker(rendered("gpu"))["image"]
