"""Sign-in, roles and ownership in a real browser: `backlake dashboard` (password sign-in
against a temporary users file) over a lake with runs by different users.

One lake (GOOG daily sample bars; runs created by alice and by bob), one users file (alice and
bob researchers, vera a viewer, ada an admin), one `backlake dashboard` in a subprocess (its own
process group, with `panel serve` under it), one headless Chromium (/usr/bin/chromium, never
downloaded). Screenshots go to each test's tmp dir.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from backlake import auth
from backlake.data.ingest import ingest_bars
from backlake.lake import Lake, connect
from backlake.settings import Settings
from tests.e2e.test_dashboard import (
    REPO,
    UI_TIMEOUT_MS,
    _free_port,
    _wait_for_page,
    goog_bars,
    run_configs_as,
    sma_config,
)

PASSWORDS = {"alice": "alice-research-pw", "bob": "bob-research-pw", "vera": "vera-viewer-pw", "ada": "ada-admin-pw"}
ROLES = {"alice": "researcher", "bob": "researcher", "vera": "viewer", "ada": "admin"}
SUBMIT_TIMEOUT_MS = 120_000  # a submitted backtest: plan, execute (numba, maybe compiling), commit


@dataclass
class AuthLake:
    settings: Settings
    users_file: Path
    runs_by: dict[str, list[str]]

    def created_by(self) -> dict[str, str]:
        with connect(self.settings) as con:
            rows = con.sql("SELECT run_id, created_by FROM runs WHERE status = 'completed'").fetchall()
        return dict(rows)


@pytest.fixture(scope="module")
def auth_lake(tmp_path_factory: pytest.TempPathFactory) -> AuthLake:
    root = tmp_path_factory.mktemp("auth")
    settings = Settings(lake_uri=str(root / "lake"))
    lake = Lake(settings)
    # GOOG without one session (Tuesday 9 March 2010): a real gap, which the editor warns about
    ingest_bars(lake, goog_bars().filter(pl.col("ts").dt.date() != dt.date(2010, 3, 9)))
    runs_by = {
        "alice": run_configs_as(lake, [sma_config(10, 30), sma_config(20, 100)], "alice"),
        "bob": run_configs_as(lake, [sma_config(15, 60)], "bob"),
    }
    users_file = root / "home" / "users.json"
    for name, role in ROLES.items():
        auth.add_user(name, role, PASSWORDS[name], path=users_file)
    return AuthLake(settings, users_file, runs_by)


@pytest.fixture(scope="module")
def server(auth_lake: AuthLake, tmp_path_factory: pytest.TempPathFactory, prefect_harness: None) -> Iterator[str]:
    """`backlake dashboard` (python -m flows.cli) on a free port; the base URL. Submitted jobs
    run as flow runs on the session's Prefect server."""
    from prefect.settings import PREFECT_API_URL

    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("BACKLAKE_", "PANEL_", "BOKEH_"))}
    env.update(BACKLAKE_LAKE_URI=auth_lake.settings.lake_uri, BACKLAKE_USERS_FILE=str(auth_lake.users_file),
               BACKLAKE_USER="cli-user", PREFECT_API_URL=str(PREFECT_API_URL.value()))
    log = tmp_path_factory.mktemp("panel") / "dashboard.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "flows.cli", "dashboard", "--port", str(port)],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, start_new_session=True,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_page(f"{base}/login", proc, log)
        yield base
    finally:
        _stop_group(proc)


def _stop_group(proc: subprocess.Popen) -> None:
    """Stop the CLI and the panel server it started (whatever process group that runs in):
    SIGTERM, then SIGKILL for anything left."""
    import psutil

    try:
        procs = [psutil.Process(proc.pid), *psutil.Process(proc.pid).children(recursive=True)]
    except psutil.NoSuchProcess:
        procs = []
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(p.pid, sig)
            with contextlib.suppress(psutil.NoSuchProcess):
                p.send_signal(sig)
        _gone, procs = psutil.wait_procs(procs, timeout=15)
        if not procs:
            break
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


@dataclass
class Session:
    page: object
    errors: list[str]
    shots: Path

    def shot(self, name: str) -> Path:
        path = self.shots / f"{name}.png"
        self.page.screenshot(path=str(path), full_page=True)
        return path


@pytest.fixture
def session(browser, tmp_path: Path) -> Iterator[Session]:
    """A fresh browser context (no cookies) and page."""
    context = browser.new_context(viewport={"width": 1400, "height": 1400})
    page = context.new_page()
    page.set_default_timeout(UI_TIMEOUT_MS)
    out = Session(page, [], tmp_path)
    page.on("console", lambda m: out.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: out.errors.append(f"page error: {e}"))
    try:
        yield out
    finally:
        context.close()


def sign_in(s: Session, base: str, name: str, password: str) -> None:
    s.page.goto(f"{base}/app")
    s.page.wait_for_url("**/login**")
    s.page.fill("input[name=username]", name)
    s.page.fill("input[name=password]", password)
    s.page.click("button[type=submit]")


def signed_in(s: Session, base: str, name: str) -> None:
    sign_in(s, base, name, PASSWORDS[name])
    s.page.wait_for_url(f"{base}/app**")
    s.page.locator(".user-badge").get_by_text(name).wait_for()


def table_run_ids(s: Session) -> set[str]:
    rows = s.page.locator(".runs-table .tabulator-row")
    return {t.split()[0] for t in rows.all_inner_texts() if t.strip()}


@pytest.mark.browser
def test_wrong_password_is_refused(session: Session, server: str) -> None:
    page = session.page
    sign_in(session, server, "alice", "not-alices-password")
    page.locator(".errormessage").get_by_text("Invalid username or password").wait_for()
    assert "/login" in page.url
    assert page.locator(".runs-table").count() == 0
    session.shot("wrong-password")
    # still no way in: the app sends the browser back to the login page
    page.goto(f"{server}/app")
    page.wait_for_url("**/login**")
    assert page.locator("input[name=password]").count() == 1
    # an unknown user is refused the same way, and so is a request without the cookie
    sign_in(session, server, "mallory", PASSWORDS["alice"])
    page.locator(".errormessage").get_by_text("Invalid username or password").wait_for()
    with urllib.request.urlopen(f"{server}/app", timeout=10) as resp:
        assert "/login" in resp.url and 'name="password"' in resp.read().decode()
    assert session.errors == []


@pytest.mark.browser
def test_sign_in_shows_user_and_role_and_sign_out_ends_the_session(session: Session, server: str) -> None:
    page = session.page
    signed_in(session, server, "ada")
    badge = page.locator(".user-badge")
    badge.get_by_text("admin").wait_for()
    page.locator(".runs-table .tabulator-row").first.wait_for()
    assert page.locator(".owner-filter .bk-btn.bk-active").inner_text() == "Everyone"  # admins oversee all
    session.shot("admin")
    # the header fits a 1400 and a 1280 px window: navigation, user badge and health badge side by
    # side, each link whole, none cut off
    health = page.locator(".health-badge button")
    health.get_by_text("All OK").or_(health.get_by_text("Issues")).wait_for()
    for width in (1400, 1280):
        page.set_viewport_size({"width": width, "height": 1400})
        page.wait_for_timeout(300)
        boxes = {name: page.locator(sel).bounding_box() for name, sel in
                 (("nav", ".nav-bar"), ("last link", ".bl-nav a >> nth=-1"), ("user", ".user-badge .bl-user"),
                  ("health", ".health-badge button"))}
        assert boxes["last link"]["x"] + boxes["last link"]["width"] <= boxes["nav"]["x"] + boxes["nav"]["width"]
        assert boxes["nav"]["x"] + boxes["nav"]["width"] <= boxes["user"]["x"], (width, boxes)
        assert boxes["user"]["x"] + boxes["user"]["width"] <= boxes["health"]["x"], (width, boxes)
        assert boxes["health"]["x"] + boxes["health"]["width"] <= width - 40, (width, boxes)  # the theme toggle's room
    page.set_viewport_size({"width": 1400, "height": 1400})
    badge.get_by_text("Sign out").click()
    page.get_by_text("You are signed out").wait_for()
    session.shot("signed-out")
    page.goto(f"{server}/app")
    page.wait_for_url("**/login**")
    assert session.errors == []


@pytest.mark.browser
def test_viewer_has_no_enabled_submit_control(session: Session, server: str, auth_lake: AuthLake) -> None:
    page = session.page
    signed_in(session, server, "vera")
    page.locator(".user-badge").get_by_text("viewer").wait_for()
    page.locator(".runs-table .tabulator-row").first.wait_for()
    # a viewer reads everyone's runs
    assert page.locator(".owner-filter .bk-btn.bk-active").inner_text() == "Everyone"
    assert table_run_ids(session) == set(auth_lake.created_by())
    submit = page.locator(".submit-run button")
    submit.wait_for()
    assert submit.is_disabled()
    assert page.locator(".submit-config textarea").is_disabled()
    enabled = page.locator("button:enabled", has_text="Submit")
    assert enabled.count() == 0
    page.locator(".submit-denied").get_by_text("needs the researcher or admin role").wait_for()
    session.shot("viewer")
    assert session.errors == []


@pytest.mark.browser
def test_researcher_mine_shows_only_their_runs(session: Session, server: str, auth_lake: AuthLake) -> None:
    page = session.page
    signed_in(session, server, "alice")
    page.locator(".user-badge").get_by_text("researcher").wait_for()
    page.locator(".runs-table .tabulator-row").first.wait_for()
    owners = auth_lake.created_by()
    alices = {r for r, by in owners.items() if by == "alice"}
    # researchers start on "Mine"
    assert page.locator(".owner-filter .bk-btn.bk-active").inner_text() == "Mine"
    page.locator(".runs-summary").get_by_text(f"{len(alices)} completed runs by alice").wait_for()
    assert table_run_ids(session) == alices
    assert not set(auth_lake.runs_by["bob"]) & table_run_ids(session)
    session.shot("researcher-mine")
    page.locator(".owner-filter").get_by_text("Everyone").click()
    page.locator(".runs-summary").get_by_text(f"{len(owners)} completed runs").wait_for()
    page.locator(".runs-table .tabulator-row", has_text=auth_lake.runs_by["bob"][0]).wait_for()
    assert table_run_ids(session) == set(owners)
    page.locator(".owner-filter").get_by_text("Mine").click()
    page.locator(".runs-table .tabulator-row", has_text=auth_lake.runs_by["bob"][0]).wait_for(state="detached")
    assert table_run_ids(session) == alices
    assert session.errors == []


@pytest.mark.browser
def test_researcher_submits_a_run_recorded_as_theirs(session: Session, server: str, auth_lake: AuthLake) -> None:
    from playwright.sync_api import expect

    page = session.page
    signed_in(session, server, "bob")
    before = auth_lake.created_by()
    (bobs,) = auth_lake.runs_by["bob"]
    page.locator(".runs-table .tabulator-row", has_text=bobs).click()  # copies its config into the form
    editor = page.locator(".submit-config textarea")
    expect(editor).to_have_value(re.compile('"fast": 15'), timeout=UI_TIMEOUT_MS)
    editor.fill(editor.input_value().replace('"fast": 15', '"fast": 7'))
    page.locator(".submit-run button").click()
    page.locator(".submit-feedback").get_by_text("queued").wait_for()
    job = page.locator(".jobs-list .job").first
    job.get_by_text("completed").wait_for(timeout=SUBMIT_TIMEOUT_MS)
    new = set(auth_lake.created_by()) - set(before)
    assert len(new) == 1, new
    (run_id,) = new
    assert auth_lake.created_by()[run_id] == "bob"
    job.get_by_text(run_id).wait_for()
    page.locator(".runs-table .tabulator-row", has_text=run_id).wait_for()  # the table re-read the lake
    session.shot("researcher-submitted")
    assert session.errors == []
    # the job was a Prefect flow run: named after the backtest, tagged with bob, its artifact has the run
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, FlowRunFilter, FlowRunFilterTags

    with get_client(sync_client=True) as client:
        (flow_run,) = client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=["user:bob"])))
        artifacts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run.id])))
    assert flow_run.name == "backtest sma_crossover GOOG fast=7 slow=60", flow_run.name
    assert {"kind:backtest", "strategy:sma_crossover"} <= set(flow_run.tags)
    assert flow_run.state_type.value == "COMPLETED"
    assert any(run_id in (a.data or "") for a in artifacts)


# -- without a browser ----------------------------------------------------------------------------
class _Blocking:
    """A job runner that waits until released, then completes (or honours a cancel)."""

    def __init__(self) -> None:
        import threading

        self.started, self.release = threading.Event(), threading.Event()

    def __call__(self, job, settings, cancelled):
        self.started.set()
        assert self.release.wait(10)
        if cancelled():
            return "cancelled", None, "stopped before its commit; nothing was written"
        return "completed", f"run-{job.id}", ""


def _wait(predicate, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.01)


def test_job_queue_gates_submit_and_cancel_by_role_and_owner(tmp_path: Path) -> None:
    from dashboards.identity import Identity, PermissionDenied
    from dashboards.jobs import JobQueue

    alice, bob, vera, ada = (Identity(auth.User(n, ROLES[n]), "password") for n in ("alice", "bob", "vera", "ada"))
    runner = _Blocking()
    queue = JobQueue(runner, Settings(lake_uri=str(tmp_path / "lake")))
    try:
        with pytest.raises(PermissionDenied, match="researcher or admin"):
            queue.submit(vera, sma_config(10, 30))
        running = queue.submit(alice, sma_config(10, 30))
        queued = queue.submit(alice, sma_config(20, 100))
        assert runner.started.wait(10)
        assert queue.get(running.id).status == "running" and queue.get(queued.id).status == "queued"
        for who in (bob, vera):  # neither another researcher nor a viewer cancels alice's jobs
            with pytest.raises(PermissionDenied):
                queue.cancel(who, queued.id)
        assert queue.cancel(alice, queued.id).status == "cancelled"  # her own, still queued: dropped
        queue.cancel(ada, running.id)  # an admin cancels anyone's; it stops before its commit
        runner.release.set()
        _wait(lambda: not queue.get(running.id).active)
        done = queue.get(running.id)
        assert done.status == "cancelled" and done.run_id is None and "cancelled by ada" in done.message
        ok = queue.submit(bob, sma_config(5, 50))
        _wait(lambda: not queue.get(ok.id).active)
        assert queue.get(ok.id).status == "completed" and queue.get(ok.id).owner == "bob"
    finally:
        runner.release.set()
        queue.shutdown()


def test_identity_fails_closed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from dashboards.identity import auth_mode, resolve_identity, submit_gate

    users = tmp_path / "users.json"
    auth.add_user("alice", "researcher", PASSWORDS["alice"], path=users)
    assert resolve_identity("password", None, str(users)).user is None
    assert resolve_identity("password", "guest", str(users)).user is None
    stranger = resolve_identity("oauth", "mallory@example.com", str(users))
    assert stranger.user is None and "no backlake role" in stranger.problem
    assert resolve_identity("password", "alice", str(users)).user == auth.User("alice", "researcher")
    monkeypatch.setenv("BACKLAKE_USER", "laptop-user")
    local = resolve_identity("none", None, str(users))
    assert local.user == auth.User("laptop-user", "admin") and submit_gate(local)[0]
    # what the page acts on is the role as it is now: a demoted or removed user loses the right at once
    monkeypatch.setenv("BACKLAKE_USERS_FILE", str(users))
    session = resolve_identity("password", "alice")
    assert submit_gate(session.current())[0]
    auth.set_role("alice", "viewer")
    assert session.current().role == "viewer" and not submit_gate(session.current())[0]
    auth.remove_user("alice")
    assert session.current().user is None and not submit_gate(session.current())[0]
    monkeypatch.setenv("BACKLAKE_DASHBOARD_AUTH", "nonsense")
    assert auth_mode() == "password"  # an unknown mode is the strict one
    monkeypatch.delenv("BACKLAKE_DASHBOARD_AUTH")
    assert auth_mode() == "password"
