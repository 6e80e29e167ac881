"""The deployment files point at things that exist: prefect.yaml entrypoints are flows, the
Dockerfile copies real paths, lib/backlake imports neither Prefect nor Panel."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[2]


def test_prefect_yaml_entrypoints_are_flows():
    from prefect import Flow

    spec = yaml.safe_load((REPO / "prefect.yaml").read_text())
    names = set()
    for dep in spec["deployments"]:
        path, func = dep["entrypoint"].split(":")
        module = importlib.import_module(path.removesuffix(".py").replace("/", "."))
        assert isinstance(getattr(module, func), Flow), dep["entrypoint"]
        names.add(dep["name"])
    assert {"ingest-samples", "backtest"} <= names


def test_dockerfile_copies_existing_paths():
    for line in (REPO / "Dockerfile").read_text().splitlines():
        if line.startswith("COPY "):
            for src in line.split()[1:-1]:
                assert (REPO / src).exists(), line


def test_lib_imports_neither_prefect_nor_panel():
    bad = re.compile(r"^\s*(import|from)\s+(prefect|panel|hvplot|flows|dashboards)\b", re.M)
    offenders = [p for p in (REPO / "lib" / "backlake").rglob("*.py") if bad.search(p.read_text())]
    assert offenders == []


def test_compose_services():
    spec = yaml.safe_load((REPO / "infra" / "docker-compose.yml").read_text())
    assert {"minio", "lake-bootstrap", "prefect-server", "worker", "dashboard"} <= set(spec["services"])
    assert (REPO / "infra" / ".env.example").exists()
