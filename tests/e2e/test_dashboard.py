"""The runs page in a real browser: `panel serve dashboards/app.py` over a lake with real runs.

One lake (GOOG daily sample bars, SMA-crossover runs through the run protocol), one Panel
server in a subprocess, one headless Chromium (Debian's /usr/bin/chromium, never downloaded).
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.lake import Lake, connect
from backlake.runs.backtest import commit_outcomes, execute_run, plan_runs
from backlake.settings import Settings
from tests.conftest import stop_process

REPO = Path(__file__).resolve().parents[2]
APP = REPO / "dashboards" / "app.py"
GOOG_CSV = REPO / "lib" / "backlake" / "data" / "samples" / "GOOG.csv.gz"
SCREENSHOT = Path("/tmp/dashboard.png")
SERVER_START_TIMEOUT = 90.0  # seconds; the first start imports panel, holoviews and bokeh
UI_TIMEOUT_MS = 30_000

#: Bokeh views of the figure titled ``title``: drawn (has_finished) onto a live, non-empty canvas.
DRAWN_FIGURES_JS = """(title) => [...Bokeh.index.query(v => v.model.type === 'Figure')]
    .filter(v => v.model.title != null && v.model.title.text === title)
    .filter(v => v.has_finished() && v.el.isConnected && v.canvas_view.primary.canvas.width > 0)
    .length"""

#: Drawn figures whose title starts with ``prefix`` and names ``what`` (strategy and symbols).
DRAWN_PREFIX_JS = """(prefix, what) => [...Bokeh.index.query(v => v.model.type === 'Figure')]
    .filter(v => v.model.title != null && v.model.title.text.startsWith(prefix) && v.model.title.text.includes(what))
    .filter(v => v.has_finished() && v.el.isConnected && v.canvas_view.primary.canvas.width > 0)
    .length"""


def sma_config(fast: int, slow: int) -> BacktestConfig:
    return BacktestConfig.model_validate({
        "strategy": "sma_crossover", "params": {"fast": fast, "slow": slow}, "universe": ["GOOG"],
        "timeframe": "1d", "initial_cash": 10_000, "costs": {"commission_bps": 10},
    })


def goog_bars() -> pl.DataFrame:
    """The real GOOG daily sample as a normalised bars frame."""
    try:
        from backlake.data.samples import load_samples  # type: ignore[import-not-found]
    except ImportError:  # the samples loader is not written yet: read the bundled CSV here
        raw = pl.read_csv(GOOG_CSV)
        return raw.select(
            symbol=pl.lit("GOOG"),
            ts=pl.col(raw.columns[0]).str.to_date().cast(pl.Datetime("us")).dt.replace_time_zone("UTC"),
            timeframe=pl.lit("1d"),
            open=pl.col("Open"), high=pl.col("High"), low=pl.col("Low"), close=pl.col("Close"),
            volume=pl.col("Volume").cast(pl.Float64), source=pl.lit("sample:GOOG"),
        )
    return load_samples(["GOOG"])


def run_configs_as(lake: Lake, configs: list[BacktestConfig], created_by: str) -> list[str]:
    """Plan, execute and commit ``configs`` as ``created_by``; the completed run ids."""
    planned = plan_runs(lake, configs)
    outcomes = [execute_run(lake, p) for p in planned]
    errors = [o.error for o in outcomes if o.error]
    assert not errors, errors
    commit_outcomes(lake, outcomes, created_by=created_by)
    return [p.run_id for p in planned]


def run_configs(lake: Lake, configs: list[BacktestConfig]) -> list[str]:
    return run_configs_as(lake, configs, "e2e")


@dataclass
class DemoLake:
    settings: Settings
    run_ids: list[str]

    def completed_runs(self) -> pl.DataFrame:
        with connect(self.settings) as con:
            return con.sql("SELECT run_id, n_trades FROM runs WHERE status = 'completed'").pl()

    def first_trade(self, run_id: str) -> dict:
        with connect(self.settings) as con:
            return con.execute(
                "SELECT entry_ts FROM trades WHERE run_id = ? ORDER BY trade_id LIMIT 1", [run_id]
            ).pl().row(0, named=True)


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> DemoLake:
    settings = Settings(lake_uri=str(tmp_path_factory.mktemp("dashboard") / "lake"))
    lake = Lake(settings)
    ingest_bars(lake, goog_bars())
    return DemoLake(settings, run_configs(lake, [sma_config(10, 30), sma_config(20, 100)]))


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for_page(url: str, proc: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_TIMEOUT
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"panel serve exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=5) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.25)
    raise TimeoutError(f"{url} did not answer within {SERVER_START_TIMEOUT}s:\n{log.read_text()[-3000:]}")


@contextlib.contextmanager
def serve_app(app: Path, lake_uri: str, log_dir: Path, *, index: str | None = None,
              no_traceback: bool = False) -> Iterator[str]:
    """``python -m panel serve APP`` on a free port against the lake ``lake_uri`` with sign-in off
    (``BACKLAKE_*`` from the environment dropped); yields the page's URL once it answers, stops
    the server after. ``index``: the app served at ``/`` as well (and the URL's page);
    ``no_traceback``: the server's log must hold no traceback when it stops."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKLAKE_")}
    env.update(BACKLAKE_LAKE_URI=lake_uri, BACKLAKE_DASHBOARD_AUTH="none",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    log = log_dir / "panel.log"
    cmd = [sys.executable, "-m", "panel", "serve", str(app), "--port", str(port), "--address", "127.0.0.1",
           "--allow-websocket-origin", f"127.0.0.1:{port}"]
    with open(log, "wb") as out:
        proc = subprocess.Popen(cmd + (["--index", index] if index else []), cwd=REPO, env=env, stdout=out,
                                stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/{index or app.stem}"
        _wait_for_page(url, proc, log)
        yield url
    finally:
        stop_process(proc)
        if no_traceback:
            assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


@pytest.fixture(scope="module")
def dashboard_url(demo_lake: DemoLake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """`python -m panel serve dashboards/app.py` on a free port, as `backlake dashboard --no-auth`
    runs it (sign-in is tested in test_auth.py)."""
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKLAKE_")}
    env["BACKLAKE_LAKE_URI"] = demo_lake.settings.lake_uri
    env["BACKLAKE_DASHBOARD_AUTH"] = "none"
    log = tmp_path_factory.mktemp("panel") / "panel.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "panel", "serve", str(APP), "--port", str(port),
             "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}", "--index", "app"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/app"
        _wait_for_page(url, proc, log)
        yield url
    finally:
        stop_process(proc)


@dataclass
class Page:
    """A browser page on the dashboard and every console error / page error it raised."""

    page: object
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def dash(browser, dashboard_url: str) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1400, "height": 2000})
    page.set_default_timeout(UI_TIMEOUT_MS)
    out = Page(page)
    page.on("console", lambda m: out.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: out.errors.append(f"page error: {e}"))
    page.goto(dashboard_url)
    page.locator(".runs-table .tabulator-row").first.wait_for()
    try:
        yield out
    finally:
        page.close()


@pytest.mark.browser
def test_runs_table_lists_completed_runs(dash: Page, demo_lake: DemoLake) -> None:
    page = dash.page
    n = demo_lake.completed_runs().height
    summary = page.locator(".runs-summary")
    summary.get_by_text(f"{n} completed runs").wait_for()
    summary.get_by_text(demo_lake.settings.lake_uri).wait_for()
    for run_id in demo_lake.run_ids:
        page.locator(".runs-table .tabulator-row", has_text=run_id).wait_for()
    headers = page.locator(".runs-table .tabulator-col-title").all_inner_texts()
    for title in ("Run", "Strategy", "Params", "Total return", "Sharpe", "Max DD", "Trades", "Created (UTC)"):
        assert title in headers, headers
    first = page.locator(".runs-table .tabulator-row").first.inner_text()
    assert "%" in first and "fast=" in first, first
    page.get_by_text("Select a run in the table").wait_for()
    assert dash.errors == []


@pytest.mark.browser
def test_selecting_a_run_draws_its_equity_and_trades(dash: Page, demo_lake: DemoLake) -> None:
    page = dash.page
    runs = demo_lake.completed_runs()
    for run_id in reversed(demo_lake.run_ids):  # select one run, then another: the detail follows
        page.locator(".runs-table .tabulator-row", has_text=run_id).click()
        page.locator(".run-detail").get_by_text(f"Run {run_id}").wait_for()
        page.locator(".run-detail").get_by_text("Backtest · sma_crossover on GOOG (1d)").wait_for()
        # the charts are titled with strategy and symbols (dashboards/details/backtest.py)
        page.wait_for_function(f"() => ({DRAWN_PREFIX_JS})('Equity', 'sma_crossover on GOOG') >= 1")
        assert page.evaluate(f"() => ({DRAWN_PREFIX_JS})('Drawdown', 'sma_crossover on GOOG')") >= 1
        assert page.locator(".run-detail canvas").count() > 0

        n_trades = runs.filter(pl.col("run_id") == run_id)["n_trades"].item()
        assert n_trades > 0
        page.locator(".run-detail").get_by_text(f"Trades ({n_trades})").wait_for()
        entry = demo_lake.first_trade(run_id)["entry_ts"].strftime("%Y-%m-%d")
        page.locator(".trades-table .tabulator-row", has_text=entry).first.wait_for()
        page.locator(".run-detail").get_by_text("Total return").first.wait_for()
        page.locator(".run-detail").get_by_text('"sma_crossover"').first.wait_for()  # the config JSON
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert dash.errors == []


@pytest.mark.browser
def test_refresh_rereads_the_lake(dash: Page, demo_lake: DemoLake) -> None:
    page = dash.page
    before = demo_lake.completed_runs().height
    (new_run,) = run_configs(Lake(demo_lake.settings), [sma_config(5, 50)])
    assert page.locator(".runs-table .tabulator-row", has_text=new_run).count() == 0
    page.get_by_role("button", name="Refresh").click()
    page.locator(".runs-table .tabulator-row", has_text=new_run).wait_for()
    page.locator(".runs-summary").get_by_text(f"{before + 1} completed runs").wait_for()
    assert dash.errors == []


def test_empty_lake_says_how_to_get_runs(tmp_path: Path) -> None:
    """No browser needed: the page object over an empty lake shows the hint, not an error."""
    from dashboards.runs import RunsPage
    from dashboards.store import LakeStore

    page = RunsPage(LakeStore(Settings(lake_uri=str(tmp_path / "lake"))))
    assert page.table.n_runs == 0
    assert page.table.run_id is None
    message = page.table.message
    assert message.visible and message.alert_type == "info"
    assert "No runs yet" in message.object and "backlake demo" in message.object
