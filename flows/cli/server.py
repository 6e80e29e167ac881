"""``backlake server start | stop | status``: a local Prefect server that stays up between
commands, and :func:`use_prefect_api`, which every command that runs a flow calls first.

The server runs in the background in its own session (``prefect server start`` on 127.0.0.1),
its database, log (``backlake-server.log``) and state file (``backlake-server.json``: pid, port,
url, started_at) under the Prefect home (``PREFECT_HOME``, ``~/.prefect`` by default; ``make``
sets ``./.prefect``). A state file whose process is gone is stale: it is ignored and removed.

Which Prefect API a command uses (:func:`use_prefect_api`): ``PREFECT_API_URL`` from the
environment; else an API URL Prefect's own settings already give (a profile, ``prefect.toml``,
a test harness); else the recorded server when it is running; else one is started here, said
once on stderr, and left running for the next commands. A start that fails is retried once,
then reported in one line (exit code 3).

Also :func:`run_in_foreground`: a child server (the dashboard's ``panel serve``, the moto S3
server) in its own process group, stopped with its whole group on SIGINT or SIGTERM.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import json
import os
import re
import shlex
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from pathlib import Path

from backlake.errors import BacklakeError
from flows.cli.output import port

STATE_FILE = "backlake-server.json"
LOG_FILE = "backlake-server.log"
LOCK_FILE = "backlake-server.lock"
DEFAULT_PORT = 4200  # Prefect's own default
#: seconds one start may take before it is retried (a first start migrates the database; a busy
#: machine makes it slower); overridable with BACKLAKE_PREFECT_SERVER_TIMEOUT or --timeout
DEFAULT_TIMEOUT = 180.0
ATTEMPTS = 2


class ServerError(BacklakeError):
    """The Prefect server could not be started or reached (the CLI exits with code 3)."""


@dataclass(frozen=True)
class ServerState:
    """What ``backlake-server.json`` records about the running server."""

    pid: int
    port: int
    url: str  # the API URL, http://127.0.0.1:<port>/api
    started_at: str
    log: str

    @property
    def ui_url(self) -> str:
        return self.url.removesuffix("/api")


# -- where ------------------------------------------------------------------------------------------
def prefect_home() -> Path:
    """The Prefect home Prefect itself uses (``PREFECT_HOME``, a profile, ``~/.prefect``)."""
    from prefect.settings import get_current_settings

    return Path(get_current_settings().home).expanduser()


def program() -> str:
    """How the user called backlake (``.venv/bin/backlake``), for the hints we print."""
    argv0 = sys.argv[0] if sys.argv else ""
    return argv0 if Path(argv0).name == "backlake" else "backlake"


def stop_command(home: Path) -> str:
    """The command that stops the server of ``home``, as typed in a shell: with PREFECT_HOME
    when ``home`` is not Prefect's default (``make`` sets ./.prefect; a plain shell may not)."""
    if home.resolve() == Path("~/.prefect").expanduser().resolve():
        return f"{program()} server stop"
    return f"PREFECT_HOME={shlex.quote(str(home))} {program()} server stop"


# -- the process --------------------------------------------------------------------------------
def pid_alive(pid: int) -> bool:
    """Whether ``pid`` is a live process (a zombie child of ours is reaped and counts as gone)."""
    with contextlib.suppress(ChildProcessError, OSError):
        done, _ = os.waitpid(pid, os.WNOHANG)
        if done == pid:
            return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    stat = Path(f"/proc/{pid}/stat")
    with contextlib.suppress(OSError, IndexError):
        return stat.read_text().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    return True


def is_prefect_server(pid: int) -> bool:
    """Whether ``pid`` runs ``prefect server`` (a pid reused by another program does not)."""
    cmdline = Path(f"/proc/{pid}/cmdline")
    if not Path("/proc/self/cmdline").exists():  # no /proc (macOS): trust the pid
        return pid_alive(pid)
    try:
        args = cmdline.read_bytes().split(b"\0")
    except OSError:
        return False
    return b"prefect" in b" ".join(args) and b"server" in args


def healthy(url: str, timeout: float = 3.0) -> bool:
    """Whether the Prefect API at ``url`` answers ``/health`` (no proxy: it is local)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url.rstrip("/") + "/health", timeout=timeout) as r:
            return bool(r.status == 200)
    except (OSError, ValueError):
        return False


def reachable(url: str, timeout: float = 5.0) -> bool:
    """Whether anything answers HTTP at ``url`` (an HTTP error such as 401 still counts)."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url.rstrip("/") + "/health", timeout=timeout):
            return True
    except urllib.error.HTTPError:
        return True
    except (OSError, ValueError):
        return False


def port_free(port: int, host: str = "127.0.0.1") -> bool:
    with socket.socket() as s:
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def free_port(host: str = "127.0.0.1") -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


# -- the state file -----------------------------------------------------------------------------
def read_state(home: Path) -> ServerState | None:
    """The recorded server if its process is still a Prefect server; a stale or unreadable
    file is removed and gives None."""
    path = home / STATE_FILE
    try:
        raw = json.loads(path.read_text())
        state = ServerState(int(raw["pid"]), int(raw["port"]), str(raw["url"]), str(raw.get("started_at", "")),
                            str(raw.get("log", home / LOG_FILE)))
    except FileNotFoundError:
        return None
    except (OSError, ValueError, KeyError, TypeError):
        state = None
    if state is None or not (pid_alive(state.pid) and is_prefect_server(state.pid)):
        with contextlib.suppress(FileNotFoundError):
            path.unlink()
        return None
    return state


def _write_state(home: Path, state: ServerState) -> None:
    tmp = home / (STATE_FILE + ".tmp")
    tmp.write_text(json.dumps(asdict(state), indent=2) + "\n")
    tmp.replace(home / STATE_FILE)


@contextlib.contextmanager
def _locked(home: Path) -> Iterator[None]:
    """One process at a time checks and starts the server of ``home`` (others wait)."""
    home.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # not POSIX: no lock
        yield
        return
    with open(home / LOCK_FILE, "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


# -- start and stop -------------------------------------------------------------------------------
def _kill_group(pid: int, timeout: float = 20.0) -> None:
    """SIGTERM the process group ``pid`` leads, SIGKILL what is left after ``timeout``."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.1)
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pid, signal.SIGKILL)
    deadline = time.monotonic() + 5
    while pid_alive(pid) and time.monotonic() < deadline:
        time.sleep(0.05)


def _log_tail(log: Path, n: int = 300) -> str:
    """Why the last start failed, from the server's log: of that attempt's lines (after the
    last ``==`` header we wrote), the last exception raised, else the last error line, else the
    last line."""
    try:
        text = log.read_text(errors="replace")[-50_000:]
    except OSError:
        return ""
    lines = [ln.strip() for ln in text.rsplit("\n== ", 1)[-1].splitlines()[1:] if ln.strip()]
    raised = [ln for ln in lines if re.match(r"[A-Za-z_][\w.]*(Error|Exception)\b[^:]*: ", ln)]
    errors = [ln for ln in lines if "error" in ln.lower() or "in use" in ln.lower()]
    return (raised or errors or lines or [""])[-1][:n]


def _start_once(home: Path, port: int, timeout: float) -> tuple[ServerState | None, str]:
    """Start ``prefect server start`` on ``port``; the state once ``/health`` answers, else
    (None, why) with the process group killed."""
    log = home / LOG_FILE
    url = f"http://127.0.0.1:{port}/api"
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_KEY")}
    env["PREFECT_HOME"] = str(home)
    env.setdefault("PREFECT_SERVER_ANALYTICS_ENABLED", "false")  # a local server: no telemetry unless asked
    with open(log, "a") as out:
        out.write(f"== {dt.datetime.now().astimezone().isoformat(timespec='seconds')}: backlake starts "
                  f"the Prefect server on 127.0.0.1:{port}\n")
        out.flush()
        proc = subprocess.Popen(
            [sys.executable, "-m", "prefect", "server", "start", "--host", "127.0.0.1", "--port", str(port)],
            env=env, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
            cwd=str(home),
        )
    try:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if proc.poll() is not None:
                return None, f"it exited with code {proc.returncode}: {_log_tail(log)}".rstrip(": ")
            if healthy(url, timeout=2.0):
                state = ServerState(proc.pid, port, url, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                                    str(log))
                _write_state(home, state)
                return state, ""
            time.sleep(0.25)
    except BaseException:  # Ctrl-C while waiting: leave no server behind
        _kill_group(proc.pid, timeout=5)
        raise
    _kill_group(proc.pid, timeout=5)
    return None, f"no answer from {url}/health within {timeout:.0f} s"


def start_server(home: Path, port: int | None = None, timeout: float | None = None) -> ServerState:
    """Start the server of ``home`` (caller holds the lock and checked none is running) on
    ``port`` (retried there), or on 4200 when free, else a free port (retried on a free port)."""
    if timeout is None:
        timeout = float(os.environ.get("BACKLAKE_PREFECT_SERVER_TIMEOUT") or DEFAULT_TIMEOUT)
    if port is not None and not port_free(port):
        raise ServerError(f"port {port} on 127.0.0.1 is in use: choose another --port, or leave it out")
    home.mkdir(parents=True, exist_ok=True)
    why = ""
    for attempt in range(ATTEMPTS):
        if port is not None:
            p = port
        elif attempt == 0 and port_free(DEFAULT_PORT):
            p = DEFAULT_PORT
        else:
            p = free_port()
        state, why = _start_once(home, p, timeout)
        if state is not None:
            return state
    raise ServerError(f"could not start the Prefect server ({why}): see {home / LOG_FILE}; "
                      f"or set PREFECT_API_URL to a running server")


def stop_server(home: Path) -> ServerState | None:
    """Stop the recorded server of ``home`` (its whole process group) and remove the state
    file; the state it had, or None when none was running."""
    with _locked(home):
        state = read_state(home)
        if state is not None:
            _kill_group(state.pid)
        with contextlib.suppress(FileNotFoundError):
            (home / STATE_FILE).unlink()
    return state


def ensure_server(home: Path, announce: bool = True) -> ServerState:
    """The running server of ``home``, started (and announced on stderr) when there is none."""
    with _locked(home):
        state = read_state(home)
        if state is not None:
            deadline = time.monotonic() + 30  # a server busy with a heavy request may answer late
            while not healthy(state.url, timeout=5.0):
                if time.monotonic() > deadline or not pid_alive(state.pid):
                    raise ServerError(
                        f"the Prefect server recorded in {home / STATE_FILE} (pid {state.pid}) does not answer at "
                        f"{state.url}: see {state.log}; run `{stop_command(home)}` and try again, "
                        f"or set PREFECT_API_URL to a running server")
                time.sleep(0.5)
            return state
        if announce:
            print(f"starting a local Prefect server (state in {home}) ...", file=sys.stderr, flush=True)
        state = start_server(home)
    if announce:
        print(f"started a local Prefect server at {state.ui_url} (pid {state.pid}, log {state.log}); it keeps "
              f"running for the next commands: `{stop_command(home)}` stops it", file=sys.stderr, flush=True)
    return state


# -- which API a command uses -----------------------------------------------------------------------
def use_prefect_api() -> str:
    """The Prefect API URL this process's flows use, called by every command that runs a flow
    before it imports or runs the flow: ``PREFECT_API_URL`` from the environment (checked to
    answer); else the URL Prefect's settings already give (profile, test harness); else the
    recorded local server, started and left running when there is none. A URL found here is
    set as ``PREFECT_API_URL`` for the process, so Prefect (and any thread) uses it. Inside a
    pytest test (``PYTEST_CURRENT_TEST``) without a configured API nothing is started and ""
    is returned: Prefect then runs its own temporary server, as before."""
    url = os.environ.get("PREFECT_API_URL")
    if url:
        if not reachable(url):
            raise ServerError(f"PREFECT_API_URL={url} does not answer: start that server, or unset "
                              f"PREFECT_API_URL to use the local one (`{program()} server start`)")
        return url
    from prefect.settings import get_current_settings

    configured = get_current_settings().api.url
    if configured:
        return str(configured)
    if os.environ.get("PYTEST_CURRENT_TEST"):
        # a test running a flow outside the session's harness: Prefect's temporary server, so the
        # suite never leaves a server behind in the developer's (or CI's) Prefect home
        return ""
    state = ensure_server(prefect_home())
    os.environ["PREFECT_API_URL"] = state.url
    from prefect.context import refresh_global_settings_context

    refresh_global_settings_context()  # Prefect read its settings at import; pick the URL up
    return state.url


def ui_hint() -> str:
    """One line for the end of the demo: where the flow runs are seen, and how the local server stops."""
    url = os.environ.get("PREFECT_API_URL")
    if not url:
        from prefect.settings import get_current_settings

        url = str(get_current_settings().api.url or "")
    if not url:
        return ""
    line = f"  {'Prefect UI:':<22}{url.removesuffix('/').removesuffix('/api')}  (the flow runs)"
    with contextlib.suppress(Exception):
        home = prefect_home()
        state = read_state(home)
        if state is not None and state.url == url:
            line += f"; the local Prefect server keeps running: `{stop_command(home)}` stops it"
    return line


# -- commands ---------------------------------------------------------------------------------------
def add_server(sub: argparse._SubParsersAction) -> None:
    s = sub.add_parser("server", help="start, stop or check the local Prefect server that commands use")
    ssub = s.add_subparsers(dest="server_command", required=True)
    st = ssub.add_parser("start", help="start the local Prefect server in the background (kept running)")
    st.add_argument("--port", type=port, help="port on 127.0.0.1 (default: 4200 when free, else a free port)")
    st.add_argument("--timeout", type=float,
                    help=f"seconds to wait for it to answer before one retry (default {DEFAULT_TIMEOUT:.0f})")
    st.set_defaults(fn=cmd_server_start)
    sp = ssub.add_parser("stop", help="stop the local Prefect server")
    sp.set_defaults(fn=cmd_server_stop)
    ss = ssub.add_parser("status", help="whether the local Prefect server runs and answers (exit 1 if not)")
    ss.add_argument("--format", choices=("table", "json"), default="table", help="output: lines or a JSON object")
    ss.set_defaults(fn=cmd_server_status)


def _env_note() -> str:
    url = os.environ.get("PREFECT_API_URL")
    return f"\nnote: PREFECT_API_URL={url} is set: commands in this environment use that server instead" if url else ""


def cmd_server_start(args: argparse.Namespace) -> int:
    home = prefect_home()
    with _locked(home):
        state = read_state(home)
        if state is not None:
            print(f"the Prefect server is already running at {state.ui_url} (pid {state.pid}){_env_note()}")
            return 0
        print(f"starting the Prefect server (state in {home}) ...", flush=True)
        state = start_server(home, port=args.port, timeout=args.timeout)
    print(f"started the Prefect server at {state.ui_url} (pid {state.pid}, log {state.log}); commands that run "
          f"flows use it until `{stop_command(home)}`{_env_note()}\n"
          f"for the prefect CLI (deployments, workers): export PREFECT_API_URL={state.url}")
    return 0


def cmd_server_stop(args: argparse.Namespace) -> int:
    home = prefect_home()
    state = stop_server(home)
    if state is None:
        print(f"no Prefect server was running (state in {home})")
    else:
        print(f"stopped the Prefect server at {state.ui_url} (pid {state.pid})")
    return 0


def cmd_server_status(args: argparse.Namespace) -> int:
    home = prefect_home()
    state = read_state(home)
    ok = state is not None and healthy(state.url)
    env_url = os.environ.get("PREFECT_API_URL")
    if args.format == "json":
        out = {"running": state is not None, "healthy": ok, "home": str(home), "prefect_api_url_env": env_url,
               **(asdict(state) if state else {})}
        print(json.dumps(out))
    elif state is None:
        print(f"no Prefect server running (state in {home}); commands that run flows start one"
              f"{_env_note()}")
    else:
        print(f"the Prefect server is running at {state.ui_url} (pid {state.pid}, since {state.started_at}) and "
              f"{'answers' if ok else 'does NOT answer'} at {state.url}/health; log {state.log}{_env_note()}\n"
              f"for the prefect CLI (deployments, workers): export PREFECT_API_URL={state.url}")
    return 0 if ok else 1


# -- servers in the foreground ----------------------------------------------------------------------
def run_in_foreground(start: Callable[[], subprocess.Popen], ready: Callable[[], None] | None = None,
                      grace: float = 10.0) -> int:
    """Run the child server ``start()`` returns (started with ``start_new_session=True``) until
    it exits, forwarding SIGINT and SIGTERM to its whole process group as SIGTERM (SIGKILL after
    ``grace`` s); whatever is left of the group is killed on the way out, so no server outlives
    the command. ``ready()`` runs once the child is started (wait for it, print where it is);
    its errors propagate unless a signal asked to stop meanwhile. Returns 0 when stopped by a
    signal, else the child's exit code."""
    stop_at: list[float] = []
    procs: list[subprocess.Popen] = []

    def terminate(sig: int) -> None:
        for p in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)

    def forward(signum: int, frame: object) -> None:
        if not stop_at:
            stop_at.append(time.monotonic())
        terminate(signal.SIGTERM)

    main_thread = threading.current_thread() is threading.main_thread()
    previous = {s: signal.signal(s, forward) for s in (signal.SIGINT, signal.SIGTERM)} if main_thread else {}
    try:
        procs.append(start())
        proc = procs[0]
        if stop_at:  # a signal came before the child existed
            terminate(signal.SIGTERM)
        if ready is not None and not stop_at:
            try:
                ready()
            except Exception:
                if stop_at:
                    return 0
                raise
        while True:
            try:
                rc = proc.wait(timeout=0.2)
                break
            except subprocess.TimeoutExpired:
                if stop_at and time.monotonic() - stop_at[0] > grace:
                    terminate(signal.SIGKILL)
    finally:
        terminate(signal.SIGKILL)  # the group's stragglers, or all of it after an error
        for p in procs:
            if p.poll() is None:
                with contextlib.suppress(subprocess.TimeoutExpired):
                    p.wait(timeout=5)
        for s, h in previous.items():
            signal.signal(s, h)
    return 0 if stop_at else rc
