"""The servers the CLI runs, as real processes: the local Prefect server that stays up between
commands (`backlake server start | stop | status`, and a flow command starting it when none
runs), `backlake s3 serve`, and `backlake dashboard` stopping its server on SIGTERM.

Every test has its own Prefect home and lake under tmp_path and stops what it started: the
suite never leaves a server running, and never touches the developer's `.prefect`."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import REPO, free_port, wait_for_port, wait_until

START_TIMEOUT = "150"  # seconds per start attempt: a busy 2-core machine is slow to migrate the database
CFG = {"strategy": "sma_crossover", "params": {"fast": 5, "slow": 20}, "universe": ["SYN"]}


def child_env(home: Path, lake: Path | None = None, **extra: str) -> dict[str, str]:
    """This environment minus any Prefect API and pytest's marker (the CLI starts no server under
    pytest), with its own Prefect home and lake."""
    drop = ("PREFECT_API_URL", "PREFECT_API_KEY", "PYTEST_CURRENT_TEST", "PREFECT_PROFILE")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    env.update(PREFECT_HOME=str(home), PYTHONUNBUFFERED="1", PREFECT_SERVER_ANALYTICS_ENABLED="false",
               BACKLAKE_PREFECT_SERVER_TIMEOUT=START_TIMEOUT, **extra)
    if lake is not None:
        env["BACKLAKE_LAKE_URI"] = str(lake)
        for k in ("BACKLAKE_S3_ENDPOINT_URL", "BACKLAKE_S3_ALLOW_HTTP"):
            env.pop(k, None)
    return env


def backlake(args: list[str], env: dict[str, str], timeout: float = 360) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "flows.cli", *args], env=env, cwd=REPO, capture_output=True,
                          text=True, timeout=timeout, stdin=subprocess.DEVNULL)


def alive(pid: int) -> bool:
    import psutil

    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


def group_members(pgid: int) -> list[int]:
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, OSError):
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.info["pid"]) == pgid:
                out.append(p.info["pid"])
    return out


def state_of(home: Path) -> dict | None:
    path = home / "backlake-server.json"
    return json.loads(path.read_text()) if path.exists() else None


@pytest.fixture
def prefect_home(tmp_path: Path) -> Iterator[Path]:
    """A Prefect home of its own; whatever server was recorded in it is stopped afterwards."""
    home = tmp_path / "prefect-home"
    home.mkdir()
    try:
        yield home
    finally:
        state = state_of(home)
        with contextlib.suppress(Exception):
            backlake(["server", "stop"], child_env(home), timeout=60)
        if state:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(state["pid"], signal.SIGKILL)


def flow_run_count(api_url: str, flow_name: str) -> int:
    body = json.dumps({"flows": {"name": {"any_": [flow_name]}}}).encode()
    req = urllib.request.Request(f"{api_url}/flow_runs/count", data=body, method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as r:
        return int(json.loads(r.read()))


# -- the local Prefect server -----------------------------------------------------------------------
@pytest.mark.prefect
def test_an_api_url_prefect_already_has_is_used_as_it_is(prefect_harness, monkeypatch: pytest.MonkeyPatch):
    from prefect.settings import get_current_settings

    from flows.cli.server import ServerError, use_prefect_api

    harness = str(get_current_settings().api.url)
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert use_prefect_api() == harness  # the test harness's server, through Prefect's settings
    assert "PREFECT_API_URL" not in os.environ  # nothing leaks into later tests
    monkeypatch.setenv("PREFECT_API_URL", harness)
    assert use_prefect_api() == harness  # explicit, and it answers
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{free_port()}/api")
    with pytest.raises(ServerError, match="does not answer"):
        use_prefect_api()


@pytest.mark.prefect
@pytest.mark.slow
@pytest.mark.timeout(500)
def test_server_start_status_stop(prefect_home: Path):
    env = child_env(prefect_home)
    out = backlake(["server", "status"], env)
    assert out.returncode == 1 and "no Prefect server running" in out.stdout

    port = free_port()
    out = backlake(["server", "start", "--port", str(port)], env)
    assert out.returncode == 0, out.stdout + out.stderr
    state = state_of(prefect_home)
    assert state is not None and state["port"] == port and state["url"] == f"http://127.0.0.1:{port}/api"
    assert {"pid", "started_at", "log"} <= set(state) and Path(state["log"]).exists()
    with urllib.request.urlopen(state["url"] + "/health", timeout=10) as r:
        assert json.loads(r.read()) is True

    out = backlake(["server", "status", "--format", "json"], env)
    assert out.returncode == 0
    status = json.loads(out.stdout)
    assert status["running"] and status["healthy"] and status["pid"] == state["pid"]

    out = backlake(["server", "start"], env)  # a second start finds it
    assert out.returncode == 0 and "already running" in out.stdout
    assert state_of(prefect_home) == state

    out = backlake(["server", "stop"], env)
    assert out.returncode == 0 and f"pid {state['pid']}" in out.stdout
    assert state_of(prefect_home) is None
    wait_until(lambda: not alive(state["pid"]) and not group_members(state["pid"]), 30, "server group gone")
    out = backlake(["server", "status"], env)
    assert out.returncode == 1
    out = backlake(["server", "stop"], env)
    assert out.returncode == 0 and "no Prefect server was running" in out.stdout


@pytest.mark.timeout(120)
def test_stale_state_file_is_ignored_and_removed_and_a_taken_port_refused(prefect_home: Path):
    env = child_env(prefect_home)
    path = prefect_home / "backlake-server.json"
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    path.write_text(json.dumps({"pid": dead.pid, "port": 4999, "url": "http://127.0.0.1:4999/api",
                                "started_at": "2020-01-01T00:00:00+00:00", "log": "x"}))
    out = backlake(["server", "status"], env)
    assert out.returncode == 1 and "no Prefect server running" in out.stdout
    assert not path.exists()

    # a live pid that is not a Prefect server (the pid was reused) is not ours: stale, and never killed
    other = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(120)"], start_new_session=True)
    try:
        path.write_text(json.dumps({"pid": other.pid, "port": 4999, "url": "http://127.0.0.1:4999/api",
                                    "started_at": "2020-01-01T00:00:00+00:00", "log": "x"}))
        out = backlake(["server", "stop"], env)
        assert out.returncode == 0 and "no Prefect server was running" in out.stdout
        assert not path.exists() and other.poll() is None
        path.write_text("not json")
        assert backlake(["server", "status"], env).returncode == 1 and not path.exists()
        with socket.socket() as busy:  # an explicit port that is taken: one line, nothing started
            busy.bind(("127.0.0.1", 0))
            busy.listen()
            out = backlake(["server", "start", "--port", str(busy.getsockname()[1])], env)
        assert out.returncode == 3 and out.stderr.count("\n") == 1 and "is in use" in out.stderr
        assert not path.exists()
    finally:
        other.kill()
        other.wait()


@pytest.mark.prefect
@pytest.mark.slow
@pytest.mark.timeout(600)
def test_flow_command_starts_the_server_and_leaves_it_running(prefect_home: Path, tmp_path: Path):
    env = child_env(prefect_home, lake=tmp_path / "lake")
    out = backlake(["ingest", "--source", "synthetic", "--symbols", "SYN", "--periods", "300"], env)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert out.stderr.count("started a local Prefect server") == 1 and "server stop" in out.stderr
    assert "ingested 1 symbol(s): 300 new bar(s)" in out.stdout
    state = state_of(prefect_home)
    assert state is not None and alive(state["pid"])  # still there after the command ended
    with urllib.request.urlopen(state["url"] + "/health", timeout=10) as r:
        assert json.loads(r.read()) is True

    (tmp_path / "cfg.json").write_text(json.dumps(CFG))
    out = backlake(["backtest", str(tmp_path / "cfg.json")], env)
    assert out.returncode == 0, out.stdout + out.stderr[-3000:]
    assert "started a local Prefect server" not in out.stderr  # said once: this one found it
    assert "sma_crossover" in out.stdout and "(1 row)" in out.stdout
    assert state_of(prefect_home) == state
    # both flow runs are on the recorded server
    assert flow_run_count(state["url"], "ingest") == 1 and flow_run_count(state["url"], "backtest") == 1

    # an explicit PREFECT_API_URL wins; one that does not answer is one line, exit code 3
    bad = backlake(["backtest", str(tmp_path / "cfg.json")],
                   {**env, "PREFECT_API_URL": f"http://127.0.0.1:{free_port()}/api"})
    assert bad.returncode == 3 and "does not answer" in bad.stderr and "Traceback" not in bad.stderr


@pytest.mark.prefect
@pytest.mark.timeout(300)
def test_a_start_that_fails_is_retried_then_one_line(prefect_home: Path, tmp_path: Path):
    # a database the server cannot open: it exits at start-up, twice
    env = child_env(prefect_home, lake=tmp_path / "lake",
                    PREFECT_SERVER_DATABASE_CONNECTION_URL=f"sqlite+aiosqlite:///{tmp_path}/no/such/dir/x.db")
    # (ingest: a command with no input to check against the lake first, so it goes straight
    # to the server; backtest and the research commands check their configs before it)
    out = backlake(["ingest", "--source", "synthetic", "--symbols", "SYN", "--periods", "50"], env)
    assert out.returncode == 3, out.stdout + out.stderr
    err = [ln for ln in out.stderr.strip().splitlines() if not ln.startswith("starting a local Prefect server")]
    assert len(err) == 1, err
    assert "could not start the Prefect server (it exited with code" in err[0] and "database" in err[0]
    assert f"see {prefect_home / 'backlake-server.log'}; or set PREFECT_API_URL to a running server" in err[0]
    log = (prefect_home / "backlake-server.log").read_text()
    assert log.count("backlake starts the Prefect server") == 2  # retried once
    assert state_of(prefect_home) is None


# -- s3 serve -------------------------------------------------------------------------------------------
@pytest.mark.s3
@pytest.mark.timeout(180)
def test_s3_serve_prints_exports_that_work(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    import psutil

    from backlake.lake import Lake
    from backlake.settings import Settings

    port = free_port()
    log = tmp_path / "s3.log"
    env = child_env(tmp_path / "prefect-home")
    with open(log, "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "s3", "serve", "--port", str(port),
                                 "--bucket", "trial"], env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=err,
                                text=True, start_new_session=True)
    children: list[int] = []
    try:
        assert proc.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 120
        while not any(ln.startswith("export ") for ln in lines):
            line = proc.stdout.readline()
            assert line and time.monotonic() < deadline, f"no exports printed: {lines} {log.read_text()[-2000:]}"
            lines.append(line.strip())
        export = next(ln for ln in lines if ln.startswith("export "))
        values = dict(kv.split("=", 1) for kv in export.removeprefix("export ").split())
        assert values["BACKLAKE_LAKE_URI"] == "s3://trial/lake"
        assert values["BACKLAKE_S3_ENDPOINT_URL"] == f"http://127.0.0.1:{port}"
        assert values["BACKLAKE_S3_ALLOW_HTTP"] == "true"
        for k, v in values.items():
            monkeypatch.setenv(k, v)
        lake = Lake(Settings())
        lake.ensure_all()
        assert lake.version("runs") == 0 and lake.read("runs").height == 0
        children += [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert children, "the moto server runs as a child"

        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        wait_until(lambda: not any(alive(c) for c in children) and not group_members(proc.pid), 20,
                   "moto server gone")
    finally:
        for pid in (proc.pid, *children):  # moto runs in a session of its own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(timeout=10)


# -- dashboard ------------------------------------------------------------------------------------------
@pytest.mark.slow
@pytest.mark.timeout(180)
def test_dashboard_stops_its_server_on_sigterm(tmp_path: Path):
    import psutil

    port = free_port()
    (tmp_path / "lake").mkdir()  # the dashboard only reads: it refuses a lake path that does not exist
    env = child_env(tmp_path / "prefect-home", lake=tmp_path / "lake")
    log = tmp_path / "dashboard.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen([sys.executable, "-m", "flows.cli", "dashboard", "--port", str(port), "--no-auth"],
                                env=env, cwd=REPO, stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
    panel: list[int] = []
    try:
        try:
            wait_for_port(port, proc, timeout=120)
        except (TimeoutError, RuntimeError) as e:
            pytest.fail(f"{e}:\n{log.read_text()[-3000:]}")
        panel += [c.pid for c in psutil.Process(proc.pid).children(recursive=True)]
        assert panel, "panel serve runs as a child"
        proc.send_signal(signal.SIGTERM)  # the backlake process only, as a service manager would
        assert proc.wait(timeout=30) == 0
        wait_until(lambda: not any(alive(p) for p in panel), 20, "panel serve gone")
        with pytest.raises(OSError):  # nothing listens any more
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
    finally:
        for pid in (proc.pid, *panel):  # panel serve runs in a session of its own
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(pid, signal.SIGKILL)
        if proc.poll() is None:
            proc.wait(timeout=10)
