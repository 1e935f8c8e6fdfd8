"""The layers' import rules (DESIGN.md): engine/ and jobs/ import neither FastAPI nor Celery;
service/ imports no Celery. Checked statically over every module, and at run time in a fresh
interpreter that imports the whole service."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]

FORBIDDEN = {
    "engine": {"fastapi", "starlette", "celery", "kombu", "uvicorn", "service", "workers", "jobs"},
    "jobs": {"fastapi", "starlette", "celery", "kombu", "uvicorn", "service", "workers"},
    "service": {"celery", "kombu", "workers"},
    "api_schemas": {"fastapi", "celery", "engine", "jobs", "service", "workers"},
}


def imported_roots(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    roots: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            roots.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            roots.add(node.module.split(".")[0])
    return roots


@pytest.mark.parametrize("package", sorted(FORBIDDEN))
def test_no_module_imports_a_forbidden_layer(package: str) -> None:
    offenders = []
    for path in sorted((REPO / package).rglob("*.py")):
        bad = imported_roots(path) & FORBIDDEN[package]
        if bad:
            offenders.append(f"{path.relative_to(REPO)}: {sorted(bad)}")
    assert not offenders, "\n".join(offenders)


def test_the_checker_sees_imports(tmp_path: Path) -> None:
    probe = tmp_path / "m.py"
    probe.write_text("import celery.app\nfrom fastapi import FastAPI\nfrom . import x\n")
    assert imported_roots(probe) == {"celery", "fastapi"}


def test_the_service_runs_without_loading_celery() -> None:
    code = (
        "import sys\n"
        "from lantern.settings import Settings\n"
        "from service.app import create_app\n"
        "import engine.methods.registry as r; r.all_methods()\n"
        "import jobs.runner, jobs.split\n"
        "create_app(Settings(builtin_model=False, data_dir='/tmp/lantern-import-graph'))\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('celery', 'kombu'))\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "", f"Celery modules loaded: {out.stdout.strip()}"
