"""The runs page's list in a real browser: every kind and status, filters, sorting, paging,
badges, long universes; checked against SQL on the same lake.

The lake: GOOG daily sample bars, three SMA backtests through the run protocol (two by ``e2e``,
one by ``alice``), then, written with the library's run protocol (``claim`` / ``commit`` /
``finish``): a completed sweep over a 20-symbol universe, a failed backtest (its error and
traceback on the runs row), a cancelled run and a running one (both only in ``run_events``), and
enough completed walk-forward rows to need a second page.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import polars as pl
import pytest

from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.lake import Lake, connect
from backlake.runs.commit import RunRecord, commit
from backlake.runs.events import Attempt, End, claim, finish
from backlake.settings import Settings
from tests.e2e.test_dashboard import (
    APP,
    UI_TIMEOUT_MS,
    Page,
    goog_bars,
    run_configs_as,
    serve_app,
    sma_config,
)

SHOTS = Path("/tmp/runs_page")
UNIVERSE = [f"S{i:02d}" for i in range(19)] + ["GOOG"]
N_WALK_FORWARD = 30  # with the rest: more than one 25-row page
ERROR = "RuntimeError: engine stopped: no GOOG bars in 2030-01\nTraceback (most recent call last):\n  File x"


def _rid(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


@dataclass
class RunsLake:
    settings: Settings
    backtests: list[str]
    alices: str
    sweep: str
    failed: str
    cancelled: str
    running: str
    walk_forwards: list[str]

    def sql(self, query: str, params: list | None = None) -> pl.DataFrame:
        with connect(self.settings) as con:
            return con.execute(query, params or []).pl()


def build_runs_lake(lake_dir: str) -> RunsLake:
    """The lake of this module (see the module docstring)."""
    settings = Settings(lake_uri=lake_dir)
    lake = Lake(settings)
    ingest_bars(lake, goog_bars())
    backtests = run_configs_as(lake, [sma_config(10, 30), sma_config(20, 100)], "e2e")
    (alices,) = run_configs_as(lake, [sma_config(15, 60)], "alice")
    now = dt.datetime.now(dt.UTC)
    attempt = Attempt.new(tag="flow run e2e-runs-page")

    def record(run_id: str, kind: str, cfg: BacktestConfig, **kw: object) -> RunRecord:
        return RunRecord(run_id=run_id, kind=kind, config=cfg, data_versions={"bars": 0}, fingerprint="e2e",
                         started_at=kw.pop("started_at", now), **kw)  # type: ignore[arg-type]

    sweep_cfg = BacktestConfig.model_validate({
        "strategy": "sma_crossover", "params": {"fast": 10, "slow": 30}, "universe": UNIVERSE, "timeframe": "1d"})
    sweep, failed, cancelled, running = (_rid(f"runs-page-{k}") for k in ("sweep", "failed", "cancelled", "running"))
    wfs = [_rid(f"runs-page-wf-{i}") for i in range(N_WALK_FORWARD)]
    got = claim(lake, [sweep, failed, cancelled, running, *wfs], attempt)
    headline = {"total_return": 1.8245, "cagr": 0.21, "sharpe": 1.234, "sortino": 1.9, "max_drawdown": -0.31,
                "n_trades": 14}
    records = [
        record(sweep, "sweep", sweep_cfg, generation=got.claimed[sweep], params={"fast": [5, 10], "slow": [30, 60]},
               headline=headline, segments={"full": headline}),
        record(failed, "backtest", sma_config(12, 40), generation=got.claimed[failed], status="failed", error=ERROR),
    ]
    for i, rid in enumerate(wfs):
        m = {"total_return": 0.01 * (i - 10), "cagr": 0.001 * i, "sharpe": 0.1 * i - 1.0, "sortino": 0.0,
             "max_drawdown": -0.01 * (i + 1), "n_trades": i}
        records.append(record(rid, "walk_forward", sma_config(5 + i, 200), generation=got.claimed[rid],
                              headline=m, segments={"oos": m},
                              started_at=now - dt.timedelta(days=40 + i)))
    commit(lake, records, attempt, created_by="e2e")
    finish(lake, [End(cancelled, got.claimed[cancelled], "cancelled", "cancelled by alice from the dashboard")],
           attempt)
    return RunsLake(settings, backtests, alices, sweep, failed, cancelled, running, wfs)


@pytest.fixture(scope="module")
def runs_lake(tmp_path_factory: pytest.TempPathFactory) -> RunsLake:
    return build_runs_lake(str(tmp_path_factory.mktemp("runs-page") / "lake"))


@pytest.fixture(scope="module")
def server(runs_lake: RunsLake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_app(APP, runs_lake.settings.lake_uri, tmp_path_factory.mktemp("panel"), index="app") as url:
        yield url


@pytest.fixture
def dash(browser, server: str) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1500, "height": 1800})
    page.set_default_timeout(UI_TIMEOUT_MS)
    out = Page(page)
    page.on("console", lambda m: out.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: out.errors.append(f"page error: {e}"))
    page.goto(server)
    page.locator(".runs-table .tabulator-row").first.wait_for()
    try:
        yield out
    finally:
        page.close()


def shown_ids(page) -> list[str]:
    """The run ids of the table's rows, in order."""
    return [t.split()[0] for t in page.locator(".runs-table .tabulator-row").all_inner_texts() if t.strip()]


def choose(page, widget: str, option: str) -> None:
    """Pick ``option`` in the MultiChoice ``widget`` (a CSS class)."""
    page.locator(f"{widget} input").click()
    page.locator(f"{widget} .choices__item--choice", has_text=option).first.click()
    page.keyboard.press("Escape")


def wait_ids(page, expected: list[str], timeout: float = UI_TIMEOUT_MS / 1000) -> None:
    """Wait until the table shows exactly ``expected``, in order (Panel's shadow DOM: poll the
    locator, which pierces it)."""
    deadline = time.monotonic() + timeout
    got: list[str] = []
    while time.monotonic() < deadline:
        got = shown_ids(page)
        if got == expected:
            return
        page.wait_for_timeout(200)
    raise AssertionError(f"the table shows {got}, expected {expected}")


def newest(runs_lake: RunsLake, where: str = "TRUE", params: list | None = None, limit: int = 25,
           order: str = "created_at DESC NULLS LAST, run_id") -> list[str]:
    """The run ids the page should show, from SQL over runs + the latest run_events."""
    df = runs_lake.sql(f"""
        WITH ev AS (SELECT run_id, arg_max(status, ts) AS st, min(ts) AS first FROM run_events GROUP BY run_id),
        allr AS (
            SELECT coalesce(r.run_id, ev.run_id) AS run_id, r.kind, r.strategy, r.symbols, r.params, r.created_by,
                   r.sharpe, r.total_return,
                   CASE WHEN r.status = 'completed' OR ev.st IS NULL THEN r.status ELSE ev.st END AS status,
                   coalesce(r.created_at, ev.first) AS created_at
            FROM runs r FULL OUTER JOIN ev ON r.run_id = ev.run_id)
        SELECT run_id FROM allr WHERE {where} ORDER BY {order} LIMIT {limit}""", params)
    return df["run_id"].to_list()


# -- no browser: the store's list ---------------------------------------------------------------
def test_store_lists_every_status_and_kind(runs_lake: RunsLake) -> None:
    from dashboards.store import LakeStore, RunFilter

    store = LakeStore(runs_lake.settings)
    got = store.runs_page(RunFilter(), limit=100)
    n = 3 + 1 + 1 + 1 + 1 + N_WALK_FORWARD
    assert got.total == n and len(got.rows) == n
    assert got.counts == {"completed": 3 + 1 + N_WALK_FORWARD, "failed": 1, "cancelled": 1, "running": 1}
    by_id = got.rows.set_index("run_id")
    assert by_id.loc[runs_lake.failed, "error"] == ERROR
    assert by_id.loc[runs_lake.cancelled, "message"] == "cancelled by alice from the dashboard"
    assert by_id.loc[runs_lake.running, "message"] == "flow run e2e-runs-page"
    assert by_id.loc[runs_lake.sweep, "kind"] == "sweep"
    # paging: two pages of 25 are the first 50 of one ordering, no overlap
    p1 = store.runs_page(RunFilter(), sort="sharpe", offset=0, limit=25).rows["run_id"].tolist()
    p2 = store.runs_page(RunFilter(), sort="sharpe", offset=25, limit=25).rows["run_id"].tolist()
    assert p1 + p2 == newest(runs_lake, order="sharpe DESC NULLS LAST, run_id", limit=50)
    # every status is a run's detail
    for rid, status in ((runs_lake.failed, "failed"), (runs_lake.cancelled, "cancelled"),
                        (runs_lake.running, "running"), (runs_lake.sweep, "completed")):
        run = store.run(rid)
        assert run is not None and run["status"] == status, (rid, run)
    assert store.run("0" * 16) is None
    with pytest.raises(Exception, match="sort: cannot sort runs by 'config'"):
        store.runs_page(RunFilter(), sort="config")
    store.close()


def test_filters_match_sql(runs_lake: RunsLake) -> None:
    from dashboards.store import LakeStore, RunFilter

    store = LakeStore(runs_lake.settings)
    cases = [
        (RunFilter(kinds=("walk_forward",)), "kind = 'walk_forward'", []),
        (RunFilter(statuses=("failed", "cancelled")), "status IN ('failed', 'cancelled')", []),
        (RunFilter(strategies=("sma_crossover",)), "strategy = 'sma_crossover'", []),
        (RunFilter(symbol="s05"), "list_contains(string_split(symbols, ','), 'S05')", []),
        (RunFilter(owner="alice"), "created_by = 'alice'", []),
        (RunFilter(search='"slow": 100'), "contains(params, '\"slow\": 100')", []),
        (RunFilter(search="Fast=15, slow=60"), "params = '{\"fast\": 15, \"slow\": 60}'", []),
        (RunFilter(search=runs_lake.sweep[:6]), f"run_id = '{runs_lake.sweep}'", []),
        (RunFilter(since=(dt.datetime.now(dt.UTC) - dt.timedelta(days=50)).date(),
                   until=(dt.datetime.now(dt.UTC) - dt.timedelta(days=45)).date()),
         "created_at >= ? AND created_at < ?",
         [dt.datetime.combine((dt.datetime.now(dt.UTC) - dt.timedelta(days=50)).date(), dt.time(), dt.UTC),
          dt.datetime.combine((dt.datetime.now(dt.UTC) - dt.timedelta(days=44)).date(), dt.time(), dt.UTC)]),
    ]
    for flt, where, params in cases:
        want = newest(runs_lake, where, params, limit=100)
        assert want, where  # every case narrows to something
        got = store.runs_page(flt, limit=100)
        assert got.rows["run_id"].tolist() == want, (flt, where)
        assert got.total == len(want)
    store.close()


# -- the page in a browser ----------------------------------------------------------------------
@pytest.mark.browser
def test_list_shows_every_kind_and_status_with_badges(dash: Page, runs_lake: RunsLake) -> None:
    page = dash.page
    SHOTS.mkdir(exist_ok=True)
    summary = page.locator(".runs-summary")
    summary.get_by_text(f"{3 + 1 + N_WALK_FORWARD} completed runs").wait_for()
    summary.get_by_text("1 running · 1 failed · 1 cancelled").wait_for()
    wait_ids(page, newest(runs_lake))
    page.locator(".page-info").get_by_text(f"1–25 of {4 + 3 + N_WALK_FORWARD}").wait_for()
    table = page.locator(".runs-table")
    for kind in ("sweep", "backtest", "walk_forward"):
        assert table.locator(f".bl-kind-{kind}").count() > 0, kind
    row = table.locator(".tabulator-row", has_text=runs_lake.failed)
    assert row.locator(".bl-status-failed").count() == 1
    note = row.locator(".bl-status-note")
    assert note.inner_text() == "RuntimeError: engine stopped: no GOOG bars in 2030-01"
    assert note.get_attribute("title") == ERROR  # the whole error on hover
    row = table.locator(".tabulator-row", has_text=runs_lake.cancelled)
    assert "cancelled by alice from the dashboard" in row.locator(".bl-status-note").inner_text()
    row = table.locator(".tabulator-row", has_text=runs_lake.running)
    assert row.locator(".bl-status-running").count() == 1
    assert "flow run e2e-runs-page" in row.locator(".bl-status-note").inner_text()
    # the 20-symbol sweep: "20 symbols", the list on hover; its metrics in their units
    row = table.locator(".tabulator-row", has_text=runs_lake.sweep)
    universe = row.locator(".bl-universe")
    assert universe.inner_text() == "20 symbols"
    assert universe.get_attribute("title") == ", ".join(UNIVERSE)
    text = row.inner_text()
    assert "182.45 %" in text and "1.234" in text and "-31.00 %" in text, text
    page.screenshot(path=str(SHOTS / "list.png"), full_page=True)
    assert dash.errors == []


@pytest.mark.browser
def test_filters_narrow_the_table(dash: Page, runs_lake: RunsLake) -> None:
    page = dash.page
    choose(page, ".filter-kind", "walk_forward")
    wait_ids(page, newest(runs_lake, "kind = 'walk_forward'"))
    page.locator(".page-info").get_by_text(f"of {N_WALK_FORWARD}").wait_for()
    page.get_by_role("button", name="Clear filters").click()
    wait_ids(page, newest(runs_lake))
    choose(page, ".filter-status", "failed")
    wait_ids(page, [runs_lake.failed])
    page.get_by_role("button", name="Clear filters").click()
    page.locator(".filter-symbol input").fill("s07")
    page.keyboard.press("Enter")
    wait_ids(page, [runs_lake.sweep])
    page.get_by_role("button", name="Clear filters").click()
    page.locator(".filter-search input").fill('"slow": 100')
    page.keyboard.press("Enter")
    wait_ids(page, newest(runs_lake, "contains(params, '\"slow\": 100')"))
    page.screenshot(path=str(SHOTS / "filtered.png"), full_page=True)
    page.locator(".filter-search input").fill("no-such-param")
    page.keyboard.press("Enter")
    page.get_by_text("No run matches these filters").wait_for()
    page.get_by_role("button", name="Clear filters").click()
    wait_ids(page, newest(runs_lake))
    # owner: Everyone is the default without login; the table's "By" column agrees with SQL
    assert dash.errors == []


@pytest.mark.browser
def test_sorting_and_paging(dash: Page, runs_lake: RunsLake) -> None:
    page = dash.page
    total = 4 + 3 + N_WALK_FORWARD
    page.get_by_role("button", name="Next →").click()
    wait_ids(page, newest(runs_lake, limit=100)[25:50])
    page.locator(".page-info").get_by_text(f"26–{total} of {total}").wait_for()
    assert page.get_by_role("button", name="Next →").is_disabled()
    page.get_by_role("button", name="← Prev").click()
    wait_ids(page, newest(runs_lake))
    page.locator(".sort-by select").select_option(label="Sharpe")
    wait_ids(page, newest(runs_lake, order="sharpe DESC NULLS LAST, run_id"))
    page.locator(".sort-order select").select_option(label="Ascending")
    wait_ids(page, newest(runs_lake, order="sharpe ASC NULLS LAST, run_id"))
    # a header click sorts the whole list too: a new column largest first, again flips it
    page.locator(".runs-table .tabulator-col", has_text="Total return").click()
    wait_ids(page, newest(runs_lake, order="total_return DESC NULLS LAST, run_id"))
    assert page.locator(".sort-by select").input_value() == "Total return"
    page.locator(".runs-table .tabulator-col", has_text="Total return").click()
    wait_ids(page, newest(runs_lake, order="total_return ASC NULLS LAST, run_id"))
    page.screenshot(path=str(SHOTS / "sorted.png"), full_page=True)
    assert dash.errors == []


@pytest.mark.browser
def test_pager_fits_a_narrow_window(dash: Page) -> None:
    """At 1200 px (sidebar open) sorting and paging share one row inside the window; at 1000 px the
    paging wraps below as a group instead of pushing the page-size picker off the page."""
    page = dash.page
    for width, one_row in ((1200, True), (1000, False)):
        page.set_viewport_size({"width": width, "height": 1200})
        page.wait_for_timeout(500)
        boxes = {name: page.locator(sel).first.bounding_box()
                 for name, sel in (("sort", ".sort-by select"), ("info", ".page-info"),
                                   ("prev", ".page-prev button"), ("next", ".page-next button"),
                                   ("size", ".page-size select"))}
        for name, box in boxes.items():
            assert box is not None and box["x"] >= 0 and box["x"] + box["width"] <= width, (width, name, box)
        rows = {name: round(box["y"] + box["height"] / 2) for name, box in boxes.items() if box is not None}
        assert abs(rows["prev"] - rows["size"]) <= 4 and abs(rows["next"] - rows["size"]) <= 4, (width, rows)
        assert (abs(rows["sort"] - rows["size"]) <= 4) == one_row, (width, rows)
    page.screenshot(path=str(SHOTS / "pager-1000px.png"), full_page=True)
    assert dash.errors == []


@pytest.mark.browser
def test_failed_cancelled_and_running_details(dash: Page, runs_lake: RunsLake) -> None:
    page = dash.page
    detail = page.locator(".run-detail")
    page.locator(".runs-table .tabulator-row", has_text=runs_lake.failed).click()
    detail.get_by_text(f"Run {runs_lake.failed}").wait_for()
    detail.get_by_text("Backtest · sma_crossover on GOOG (1d)").wait_for()
    detail.locator(".run-error").get_by_text("RuntimeError: engine stopped: no GOOG bars in 2030-01").wait_for()
    detail.locator(".run-events .tabulator-row", has_text="failed").wait_for()
    assert detail.locator("a.run-report").get_attribute("href") == f"./report?run={runs_lake.failed}"
    page.screenshot(path=str(SHOTS / "failed.png"), full_page=True)
    page.locator(".runs-table .tabulator-row", has_text=runs_lake.cancelled).click()
    detail.get_by_text(f"Run {runs_lake.cancelled}").wait_for()
    detail.locator(".run-cancelled").get_by_text("cancelled by alice from the dashboard").wait_for()
    page.locator(".runs-table .tabulator-row", has_text=runs_lake.running).click()
    detail.get_by_text(f"Run {runs_lake.running}").wait_for()
    detail.locator(".run-running").get_by_text("This run is running").wait_for()
    # a completed sweep: the header names kind, strategy and universe; its view follows
    page.locator(".runs-table .tabulator-row", has_text=runs_lake.sweep).click()
    detail.get_by_text("Sweep · sma_crossover on 20 symbols (1d)").wait_for()
    detail.locator(".bl-universe-list").get_by_text("S00, S01").wait_for()
    page.screenshot(path=str(SHOTS / "sweep.png"), full_page=True)
    assert dash.errors == []


@pytest.mark.browser
def test_compare_selected_across_a_filter(dash: Page, runs_lake: RunsLake) -> None:
    page = dash.page
    a, b = runs_lake.backtests
    page.locator(".runs-table .tabulator-row", has_text=a).click()
    page.locator(".run-detail").get_by_text(f"Run {a}").wait_for()
    page.locator(".runs-table .tabulator-row", has_text=b).click(modifiers=["Control"])
    page.locator(".run-detail").get_by_text(f"Run {b}").wait_for()
    link = page.locator("a.compare-selected")
    link.get_by_text("Compare selected (2)").wait_for()
    assert json.dumps(link.get_attribute("href")).count(a) == 2  # runs=a,b&baseline=a
    assert dash.errors == []


if __name__ == "__main__":  # build the lake to look at: python tests/e2e/test_runs_page.py DIR
    print(build_runs_lake(sys.argv[1]))
