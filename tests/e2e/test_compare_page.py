"""The compare page in a real browser: `panel serve dashboards/compare.py` over a lake with three
real backtests (SP500 and NASDAQ daily samples, with costs), opened by a shareable URL.

The numbers on the page are checked against the lake through `backlake sql`'s read-only
connection and against the library; the screenshot is kept at /tmp/compare.png."""

from __future__ import annotations

import math
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from backlake.analytics.compare import compare_runs
from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.data.samples import load_samples
from backlake.lake import Lake, connect
from backlake.lake.sql import connect_readonly
from backlake.settings import Settings
from tests.conftest import stop_process
from tests.e2e.test_dashboard import (
    APP,
    DRAWN_FIGURES_JS,
    REPO,
    UI_TIMEOUT_MS,
    _free_port,
    _wait_for_page,
    run_configs,
)

PAGE = REPO / "dashboards" / "compare.py"
SCREENSHOT = Path("/tmp/compare.png")
COSTS = {"commission_bps": 5, "commission_fixed": 1.0, "slippage_bps": 5, "market": "us"}


def config(symbol: str, fast: int, slow: int, start: str) -> BacktestConfig:
    return BacktestConfig.model_validate({
        "strategy": "sma_crossover", "params": {"fast": fast, "slow": slow}, "universe": [symbol],
        "start": start, "end": "2018-12-31", "initial_cash": 100_000, "costs": COSTS,
    })


@pytest.fixture(scope="module")
def lake3(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, list[str]]:
    settings = Settings(lake_uri=str(tmp_path_factory.mktemp("compare-page") / "lake"))
    lake = Lake(settings)
    ingest_bars(lake, load_samples(["SP500", "NASDAQ"]))
    ids = run_configs(lake, [config("SP500", 10, 50, "2010-01-01"), config("SP500", 20, 100, "2012-01-01"),
                             config("NASDAQ", 10, 50, "2011-01-01")])
    return settings, ids


@pytest.fixture(scope="module")
def compare_url(lake3: tuple[Settings, list[str]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings, _ = lake3
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKLAKE_")}
    env["BACKLAKE_LAKE_URI"] = settings.lake_uri
    env["BACKLAKE_DASHBOARD_AUTH"] = "none"
    log = tmp_path_factory.mktemp("panel-compare") / "panel.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "panel", "serve", str(APP), str(PAGE), "--port", str(port), "--address", "127.0.0.1",
             "--allow-websocket-origin", f"127.0.0.1:{port}"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        url = f"http://127.0.0.1:{port}/compare"
        _wait_for_page(url, proc, log)
        yield url
    finally:
        stop_process(proc)


def open_page(browser, url: str) -> tuple[object, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.set_default_timeout(UI_TIMEOUT_MS)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.goto(url)
    return page, errors


def sql(settings: Settings, query: str) -> pl.DataFrame:
    with connect_readonly(settings) as con:
        return con.execute(query).pl()


@pytest.mark.browser
def test_compare_three_runs(browser, compare_url: str, lake3: tuple[Settings, list[str]]) -> None:
    settings, ids = lake3
    a, b, c = ids
    page, errors = open_page(browser, f"{compare_url}?runs={a},{b},{c}&baseline={b}&basis=gross")
    page.locator(".metrics-diff td[data-metric='sharpe']").first.wait_for()
    title = "Equity, normalised (gross of costs)"
    page.wait_for_function(f"() => ({DRAWN_FIGURES_JS})('{title}') === 1")

    # the overlap: inner join of the three runs' dates, stated in the subtitle
    dates = sql(settings, f"SELECT ts FROM equity WHERE run_id = '{a}' INTERSECT SELECT ts FROM equity WHERE "
                          f"run_id = '{b}' INTERSECT SELECT ts FROM equity WHERE run_id = '{c}'")
    first, last = dates["ts"].min(), dates["ts"].max()
    subtitle = page.locator(".overlay-subtitle").inner_text()
    assert f"overlap {first:%Y-%m-%d} to {last:%Y-%m-%d}, {dates.height} dates" in subtitle, subtitle
    assert subtitle.startswith("gross of costs"), subtitle

    # metrics on the page = the lake's metrics (segment full) and cost summary (runs row)
    picked = f"run_id IN ('{a}', '{b}', '{c}')"
    stored = sql(settings, f"SELECT run_id, segment, name, value FROM metrics WHERE {picked} AND segment = 'full' "
                           "UNION ALL BY NAME SELECT run_id, 'costs' AS segment, "
                           "unnest(['total_costs', 'cost_commission']) AS name, "
                           f"unnest([total_costs, cost_commission]) AS value FROM runs WHERE {picked}")
    for name, segment in (("sharpe", "full"), ("total_return", "full"), ("max_drawdown", "full"),
                          ("total_costs", "costs"), ("cost_commission", "costs")):
        for run in ids:
            want = stored.filter((pl.col("run_id") == run) & (pl.col("name") == name)
                                 & (pl.col("segment") == segment))["value"].item()
            cell = page.locator(f".metrics-diff td[data-run='{run}'][data-metric='{name}']")
            assert float(cell.get_attribute("data-value")) == want
    # colouring: best / worst of sharpe (higher is better), total costs (lower is better)
    for name, best_fn in (("sharpe", max), ("total_costs", min)):
        vals = {r: stored.filter((pl.col("run_id") == r) & (pl.col("name") == name))["value"].item() for r in ids}
        best = best_fn(vals, key=vals.get)
        worst = (min if best_fn is max else max)(vals, key=vals.get)
        assert "best" in page.locator(f".metrics-diff td[data-run='{best}'][data-metric='{name}']").get_attribute(
            "class")
        assert "worst" in page.locator(f".metrics-diff td[data-run='{worst}'][data-metric='{name}']").get_attribute(
            "class")
    page.locator(".metrics-footnote").get_by_text("Metrics cover each run's full period").wait_for()

    # tracking error vs the baseline b, recomputed here from the equity and costs in the lake
    eq = sql(settings, f"SELECT run_id, ts, equity, costs FROM equity WHERE run_id IN ('{a}', '{b}') ORDER BY ts")

    def gross_returns(run: str) -> pl.DataFrame:
        e = eq.filter(pl.col("run_id") == run).with_columns(g=pl.col("equity") + pl.col("costs").cum_sum())
        return e.select("ts", r=pl.col("g") / pl.col("g").shift(1) - 1).slice(1)

    both = gross_returns(a).join(gross_returns(b), on="ts", suffix="_b")
    te = float(np.std((both["r"] - both["r_b"]).to_numpy(), ddof=1) * math.sqrt(252))
    shown = page.locator(f".tracking-error td.te[data-run='{a}']")
    assert float(shown.get_attribute("data-value")) == pytest.approx(te, rel=1e-9)
    assert shown.inner_text() == f"{te:.2%}"
    assert page.locator(f".tracking-error td.te[data-run='{b}']").inner_text() == "baseline"

    # the correlation heatmap: the library's values, shown to 2 decimals
    with connect(settings) as con:
        lib = compare_runs(con, [a, b, c], baseline=b, basis="gross")
    corr = {row["run_id"]: row for row in lib.correlation.iter_rows(named=True)}
    cell = page.locator(f".correlation td.corr[data-a='{a}'][data-b='{c}']")
    assert float(cell.get_attribute("data-value")) == corr[a][c]
    assert cell.inner_text() == f"{corr[a][c]:.2f}"
    assert page.locator(".compare-warning").count() == 0

    page.set_viewport_size({"width": 1400, "height": 2900})  # the whole page, not just the first screen
    page.wait_for_function(f"() => ({DRAWN_FIGURES_JS})('{title}') === 1")
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert errors == []
    page.close()


@pytest.mark.browser
def test_warnings_and_bad_input_on_the_page(browser, compare_url: str, lake3: tuple[Settings, list[str]]) -> None:
    _, ids = lake3
    page, errors = open_page(browser, f"{compare_url}?runs={ids[0]},{ids[0][:-1]}x&basis=net")
    page.locator(".compare-error").get_by_text("is not in the lake").wait_for()
    page.close()
    page, errors2 = open_page(browser, f"{compare_url}?runs={ids[0]}")
    page.locator(".compare-hint").get_by_text("Pick 2 to 10 completed runs").wait_for()
    page.close()
    assert errors == [] and errors2 == []


@pytest.mark.browser
def test_runs_table_multi_select_opens_the_comparison(browser, compare_url: str,
                                                      lake3: tuple[Settings, list[str]]) -> None:
    _, ids = lake3
    page, errors = open_page(browser, compare_url.replace("/compare", "/app"))
    rows = page.locator(".runs-table .tabulator-row")
    rows.first.wait_for()
    page.locator(".compare-link").get_by_text("Ctrl- or Shift-click 2 to 10 runs").wait_for()
    page.locator(".runs-table .tabulator-row", has_text=ids[0]).click()
    page.locator(".run-detail").get_by_text(f"Run {ids[0]}").wait_for()  # one click: its detail
    for run in ids[1:]:
        page.locator(".runs-table .tabulator-row", has_text=run).click(modifiers=["Control"])
    link = page.locator(".compare-link a.compare-selected")
    link.get_by_text("Compare selected (3)").wait_for()
    page.screenshot(path="/tmp/compare_select.png")
    href = link.get_attribute("href")
    assert href == f"./compare?runs={','.join(ids)}&amp;baseline={ids[0]}&amp;basis=net" or \
        href == f"./compare?runs={','.join(ids)}&baseline={ids[0]}&basis=net", href
    page.locator(".run-detail").get_by_text(f"Run {ids[2]}").wait_for()  # the detail follows the last one
    link.click()
    page.wait_for_url("**/compare?runs=*")
    for run in ids:
        page.locator(f".metrics-diff td[data-run='{run}'][data-metric='sharpe']").wait_for()
    assert errors == []
    page.close()
