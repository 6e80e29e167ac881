"""The project's deployments as a team uses them, against a real Prefect server (its own process,
home and port): `prefect deploy --all` from the repo root with nothing exported registers every
deployment of prefect.yaml (process and docker pools, rendered job variables with no empty or
host values), the compose stack's deploy command does the same with the stack's environment,
a schedule fires (the scheduler creates runs, a process worker runs one to Completed with its
bars in the lake, no scheduler traceback in the server log), and the docker deployments'
entrypoints load from the image's working directory laid out as the Dockerfile copies it."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO, free_port, wait_until

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

BIN = Path(sys.executable).parent
SPEC = yaml.safe_load((REPO / "prefect.yaml").read_text())
COMPOSE = yaml.safe_load((REPO / "infra" / "docker-compose.yml").read_text())
NAMES = {d["name"] for d in SPEC["deployments"]}
DOCKER = {d["name"] for d in SPEC["deployments"] if d["work_pool"]["name"] == "backlake-docker"}
# environment a user's shell may carry that the deployments must not need
DROP_PREFIXES = ("BACKLAKE_", "AWS_", "PREFECT_", "PYTEST_")


def clean_env(home: Path, url: str, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(DROP_PREFIXES)}
    env.update(PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}", PREFECT_HOME=str(home),
               PREFECT_SERVER_ANALYTICS_ENABLED="false", DOCKER_HOST=f"tcp://127.0.0.1:{free_port()}")
    env.update(extra, PREFECT_API_URL=url)
    return env


def run(cmd: list[str] | str, env: dict[str, str], timeout: float = 300, **kw) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, env=env, cwd=kw.pop("cwd", REPO), capture_output=True, text=True, timeout=timeout,
                         stdin=subprocess.DEVNULL, shell=isinstance(cmd, str), **kw)
    assert out.returncode == 0, f"{cmd} exited {out.returncode}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
    return out


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A Prefect server whose scheduler loops every 5 s (60 s by default), stopped at the end."""
    from flows.cli.server import start_server, stop_server

    home = tmp_path_factory.mktemp("prefect-home")
    saved = {k: os.environ.get(k) for k in ("PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS",
                                            "BACKLAKE_PREFECT_SERVER_TIMEOUT", "PREFECT_SERVER_DATABASE_TIMEOUT")}
    os.environ["PREFECT_SERVER_SERVICES_SCHEDULER_LOOP_SECONDS"] = "5"
    os.environ["PREFECT_SERVER_DATABASE_TIMEOUT"] = "60"  # SQLite waits out a busy machine's locks
    os.environ.setdefault("BACKLAKE_PREFECT_SERVER_TIMEOUT", "150")
    try:
        state = start_server(home, port=free_port())
    finally:
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    try:
        yield state.url, home
    finally:
        stop_server(home)


def client(url: str):
    from prefect.client.orchestration import SyncPrefectClient

    return SyncPrefectClient(api=url)


def deployments(url: str) -> dict[str, object]:
    with client(url) as c:
        return {d.name: d for d in c.read_deployments()}


def env_values(job_variables: dict) -> dict[str, str]:
    env = job_variables.get("env") or {}
    assert isinstance(env, dict), job_variables
    return env


def test_deploy_all_from_the_repo_root_with_nothing_exported(server, tmp_path):
    url, home = server
    env = clean_env(home, url)
    run([str(BIN / "prefect"), "work-pool", "create", "backlake-process", "--type", "process", "--overwrite"], env)
    run([str(BIN / "prefect"), "work-pool", "create", "backlake-docker", "--type", "docker", "--overwrite"], env)
    out = run([str(BIN / "prefect"), "--no-prompt", "deploy", "--all"], env)
    assert "no Docker engine answers here" in out.stdout + out.stderr  # named, not built, and said so

    deps = deployments(url)
    assert set(deps) == NAMES
    from flows.deploy_steps import image_tag

    for name, d in deps.items():
        if name in DOCKER:
            assert d.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": "/opt/backlake"}}]
            jv = d.job_variables
            assert jv["image"] == f"backlake:{image_tag()}"
            assert env_values(jv) == {}  # nothing set, nothing baked: no empty strings, no host path
            assert jv["volumes"] == ["backlake-lake:/data/lake"]
        else:
            assert d.pull_steps == [{"prefect.deployments.steps.set_working_directory": {"directory": str(REPO)}}]
            assert d.job_variables == {}
    cron = {d.name: [s.schedule.cron for s in d.schedules] for d in deps.values() if d.schedules}
    assert cron == {d["name"]: [s["cron"] for s in d["schedules"]] for d in SPEC["deployments"] if d.get("schedules")}
    assert {"ingest-samples": ["30 22 * * 1-5"], "regression-nightly": ["0 3 * * *"],
            "maintenance-nightly": ["30 3 * * *"]}.items() <= cron.items()
    assert deps["regression-nightly"].parameters.get("goldens") is None  # the lake's goldens table


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with the defaults (infra/.env.example sets the same values)."""
    return re.sub(r"\$\{(\w+)(?::-([^}]*))?\}", lambda m: m.group(2) or "", value)


def compose_deploy_command() -> str:
    cmd = COMPOSE["services"]["deploy"]["command"]
    assert isinstance(cmd, str)
    return cmd


def test_compose_file_brings_up_the_stack():
    services = COMPOSE["services"]
    assert {"minio", "lake-bootstrap", "prefect-server", "deploy", "worker", "dashboard"} <= set(services)
    assert "mc mb" in (REPO / "infra" / "bootstrap-minio.sh").read_text()
    for name in ("deploy", "worker", "dashboard", "prefect-server"):
        assert services[name]["image"] == "backlake:latest", name
    assert services["prefect-server"]["build"]["dockerfile"] == "Dockerfile"
    deploy = compose_deploy_command()
    for pool, kind in (("backlake-process", "process"), ("backlake-docker", "docker")):
        assert f"prefect work-pool create {pool} --type {kind}" in deploy
    assert "prefect --no-prompt deploy --all" in deploy
    assert services["deploy"]["depends_on"]["prefect-server"]["condition"] == "service_healthy"
    worker = services["worker"]
    assert "--pool backlake-process" in worker["command"]
    for name in ("deploy", "worker", "dashboard"):
        env = services[name]["environment"]
        assert env["BACKLAKE_LAKE_URI"].startswith("s3://"), name
        assert env["BACKLAKE_S3_ENDPOINT_URL"] == "http://minio:9000", name
        assert env["PREFECT_API_URL"] == "http://prefect-server:4200/api", name
    assert services["deploy"]["environment"]["BACKLAKE_IMAGE"] == "backlake:latest"
    assert services["deploy"]["environment"]["BACKLAKE_DOCKER_NETWORK"] == "backlake_default"
    assert COMPOSE["name"] == "backlake"  # the network containers join is backlake_default
    # the image's server runs the SQLAlchemy its scheduler works with (2.1 breaks it)
    for lock in ("requirements-runtime.lock", "requirements.lock"):
        pins = dict(line.split("==") for line in (REPO / lock).read_text().splitlines()
                    if "==" in line and not line.startswith("#"))
        assert pins["SQLAlchemy"].startswith("2.0."), lock
        assert pins["prefect-docker"] and pins["prefect"] == "3.8.8", lock


def test_compose_deploy_command_registers_both_pools_and_every_deployment(server):
    """The deploy service's own command, with the service's environment (the stack's API URL
    swapped for this server's), in the repo (the image's working directory holds the same files)."""
    url, home = server
    service_env = {k: interpolate(str(v)) for k, v in COMPOSE["services"]["deploy"]["environment"].items()}
    env = clean_env(home, url, **service_env)
    run(compose_deploy_command(), env)

    with client(url) as c:
        pools = {p.name: p.type for p in c.read_work_pools()}
    assert pools["backlake-process"] == "process" and pools["backlake-docker"] == "docker"
    deps = deployments(url)
    assert set(deps) == NAMES
    for name in DOCKER:
        jv = deps[name].job_variables
        assert jv["image"] == "backlake:latest"
        assert jv["networks"] == ["backlake_default"] and jv["volumes"] == []
        env_vars = env_values(jv)
        assert env_vars["BACKLAKE_LAKE_URI"] == service_env["BACKLAKE_LAKE_URI"]
        assert env_vars["BACKLAKE_S3_ENDPOINT_URL"] == "http://minio:9000"
        assert env_vars["BACKLAKE_S3_ALLOW_HTTP"] == "true"
        assert all(v.strip() for v in env_vars.values()), env_vars
        assert not any(v.startswith(("/", "./", "~")) for v in env_vars.values()), env_vars


NIGHTLY = ("ingest-samples", "regression-nightly", "maintenance-nightly")


def test_schedules_fire_and_a_worker_runs_the_nightly_jobs_to_completed(server, tmp_path):
    """The nightly deployments of prefect.yaml, their cron schedules replaced by a 10 s
    interval: the scheduler creates their runs, and a process worker started here (one run at a
    time) runs each to Completed: the samples' bars are in the lake, the regression passes with
    no goldens yet, maintenance completes."""
    from prefect.client.schemas.filters import (
        DeploymentFilter,
        DeploymentFilterName,
        FlowRunFilter,
        FlowRunFilterState,
        FlowRunFilterStateType,
    )
    from prefect.client.schemas.objects import StateType

    url, home = server
    lake = tmp_path / "lake"
    env = clean_env(home, url, BACKLAKE_LAKE_URI=str(lake))
    run([str(BIN / "prefect"), "work-pool", "create", "backlake-process", "--type", "process", "--overwrite"], env)
    run([str(BIN / "prefect"), "--no-prompt", "deploy", *(a for n in NIGHTLY for a in ("--name", n))], env)
    flows = {d["name"]: d["entrypoint"].split(":")[1].removesuffix("_flow") for d in SPEC["deployments"]}
    for name in NIGHTLY:
        run([str(BIN / "prefect"), "deployment", "schedule", "create", f"{flows[name]}/{name}", "--interval", "10",
             "--replace", "-y"], env)

    def runs(name: str, *states: StateType) -> list:
        flt = FlowRunFilter(state=FlowRunFilterState(type=FlowRunFilterStateType(any_=list(states))))
        with client(url) as c:
            return c.read_flow_runs(deployment_filter=DeploymentFilter(name=DeploymentFilterName(any_=[name])),
                                    flow_run_filter=flt)

    started = time.monotonic()
    for name in NIGHTLY:
        scheduled = wait_until(lambda n=name: runs(n, StateType.SCHEDULED), 90, f"the scheduler scheduling {name}", 1)
        assert all(r.auto_scheduled for r in scheduled)
    created_after = time.monotonic() - started

    log = tmp_path / "worker.log"
    with open(log, "wb") as out:
        worker = subprocess.Popen([str(BIN / "prefect"), "worker", "start", "--pool", "backlake-process",
                                   "--limit", "1"], env=env, cwd=tmp_path, stdout=out, stderr=subprocess.STDOUT,
                                  start_new_session=True)
    try:
        done = {name: wait_until(lambda n=name: runs(n, StateType.COMPLETED), 300, f"a worker running {name}", 2)
                for name in NIGHTLY}
    except TimeoutError as e:
        raise AssertionError(f"{e}; worker log:\n{log.read_text()[-4000:]}") from None
    finally:
        os.killpg(worker.pid, 15)
        worker.wait(timeout=60)
    for name in NIGHTLY:
        assert done[name][0].auto_scheduled, name
        assert not runs(name, StateType.FAILED, StateType.CRASHED), (name, log.read_text()[-4000:])
    assert done["ingest-samples"][0].name == "ingest samples"

    from backlake.lake import Lake
    from backlake.settings import Settings

    bars = Lake(Settings(lake_uri=str(lake))).read("bars")
    assert bars.height > 1000 and bars["symbol"].n_unique() >= 2

    server_log = (home / "backlake-server.log").read_text()
    # the scheduler's failure on SQLAlchemy 2.1 logs this on every loop; any scheduler error counts
    assert "bulk DML" not in server_log and "_insert_scheduled_flow_runs" not in server_log
    scheduler_errors = [line for line in server_log.splitlines() if "ERROR" in line and "schedul" in line.lower()]
    assert scheduler_errors == []
    print(f"scheduled runs created after {created_after:.1f} s")


def test_docker_entrypoints_load_from_the_image_working_directory(server, tmp_path):
    """The image is laid out as the Dockerfile copies it (its COPY lines, under a stand-in for
    /opt/backlake); each docker deployment's registered pull step (with /opt/backlake mapped to
    that stand-in) and entrypoint then load the flow from there."""
    url, _ = server
    root = tmp_path / "opt" / "backlake"
    root.mkdir(parents=True)
    lines = (REPO / "Dockerfile").read_text().splitlines()
    assert "WORKDIR /opt/backlake" in lines
    for line in lines:
        if line.startswith("COPY "):
            *srcs, dest = line.split()[1:]
            for src in srcs:
                target = root / dest / Path(src).name if dest.endswith("/") or dest == "./" else root / dest
                if (REPO / src).is_dir():
                    shutil.copytree(REPO / src, target, ignore=shutil.ignore_patterns("__pycache__"))
                else:
                    shutil.copy(REPO / src, target)
    env = clean_env(tmp_path, url)
    run([str(BIN / "prefect"), "work-pool", "create", "backlake-docker", "--type", "docker", "--overwrite"], env)
    run([str(BIN / "prefect"), "--no-prompt", "deploy", *(a for n in sorted(DOCKER) for a in ("--name", n))], env)
    deps = deployments(url)
    assert DOCKER and set(deps) >= DOCKER
    for name in sorted(DOCKER):
        d = deps[name]
        steps = [{k: {"directory": v["directory"].replace("/opt/backlake", str(root))}} for s in d.pull_steps
                 for k, v in s.items()]
        script = (
            "import asyncio, json, sys\n"
            "from prefect.deployments.steps.core import run_steps\n"
            "from prefect.flows import load_flow_from_entrypoint\n"
            f"asyncio.run(run_steps({steps!r}))\n"
            f"flow = load_flow_from_entrypoint({d.entrypoint!r})\n"
            "print(json.dumps([flow.name, flow.fn.__code__.co_filename]))\n"
        )
        out = run([sys.executable, "-c", script], env, cwd=tmp_path)
        import json

        flow_name, filename = json.loads(out.stdout.strip().splitlines()[-1])
        assert Path(filename).is_relative_to(root), (name, filename)
        assert flow_name == d.entrypoint.split(":")[1].removesuffix("_flow"), name
