"""The backtest detail view (``dashboards.details.render`` of a backtest run) in a real browser.

One lake with the real samples (GOOG; AAPL, MSFT, XOM; SP500 as the benchmark), two backtests
through the run protocol (GOOG alone, and the 3-symbol universe), and a tiny test-only Panel
app that shows ``render(store, run)`` for the run named in its URL. Every number checked on the
page is compared with SQL over the same lake.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.data.samples import load_samples
from backlake.lake import Lake
from backlake.lake.sql import connect_readonly
from backlake.settings import Settings
from dashboards.fmt import metric_text, value_text
from tests.e2e.test_dashboard import (
    UI_TIMEOUT_MS,
    run_configs,
    serve_app,
)

SHOTS = Path("/tmp")
LOAD_TIMEOUT_MS = 4 * UI_TIMEOUT_MS  # a whole tear sheet on a busy 2-core machine
UNIVERSE = ["AAPL", "MSFT", "XOM"]
APP_SOURCE = '''
import panel as pn
from dashboards.details import render
from dashboards.store import LakeStore

pn.extension("tabulator")
store = LakeStore()
args = pn.state.session_args.get("run")
body = render(store, store.run(args[0].decode())) if args else pn.pane.Markdown("open ?run=<run_id>")
pn.Column(body, sizing_mode="stretch_width").servable()
'''

#: How many figures whose title starts with ``prefix`` are drawn onto a live, visible canvas.
DRAWN_JS = """(prefix) => [...Bokeh.index.query(v => v.model.type === 'Figure')]
    .filter(v => v.model.title != null && v.model.title.text.startsWith(prefix))
    .filter(v => v.has_finished() && v.el.isConnected && v.canvas_view.primary.canvas.width > 0
                 && getComputedStyle(v.el).visibility === "visible")
    .length"""
TITLES_JS = "() => [...Bokeh.index.query(v => v.model.type === 'Figure')].map(v => v.model.title?.text)"
#: The y scale type of the drawn figures whose title starts with ``prefix``.
Y_SCALES_JS = """(prefix) => [...Bokeh.index.query(v => v.model.type === 'Figure')]
    .filter(v => v.model.title != null && v.model.title.text.startsWith(prefix))
    .filter(v => getComputedStyle(v.el).visibility === "visible")
    .map(v => v.model.y_scale.type)"""


def universe_config() -> BacktestConfig:
    return BacktestConfig.model_validate({
        "strategy": "sma_crossover", "params": {"fast": 10, "slow": 50}, "universe": UNIVERSE,
        "start": "2012-01-01", "end": "2018-12-31", "timeframe": "1d", "initial_cash": 100_000,
        "sizing": {"method": "equal_weight"}, "benchmark": "SP500",
        "costs": {"commission_bps": 5, "slippage_bps": 2, "market": "us"},
    })


def goog_config() -> BacktestConfig:
    return BacktestConfig.model_validate({
        "strategy": "sma_crossover", "params": {"fast": 10, "slow": 30}, "universe": ["GOOG"],
        "timeframe": "1d", "initial_cash": 10_000, "costs": {"commission_bps": 10},
    })


@pytest.fixture(scope="module")
def lake(tmp_path_factory: pytest.TempPathFactory) -> tuple[Settings, dict[str, str]]:
    settings = Settings(lake_uri=str(tmp_path_factory.mktemp("backtest-detail") / "lake"))
    lk = Lake(settings)
    ingest_bars(lk, load_samples(["GOOG", *UNIVERSE, "SP500"]))
    goog, uni = run_configs(lk, [goog_config(), universe_config()])
    return settings, {"goog": goog, "universe": uni}


@pytest.fixture(scope="module")
def detail_url(lake: tuple[Settings, dict[str, str]], tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    settings, _ = lake
    folder = tmp_path_factory.mktemp("detail-app")
    app = folder / "detail.py"
    app.write_text(APP_SOURCE)
    with serve_app(app, settings.lake_uri, folder) as url:
        yield url


def sql(settings: Settings, query: str, params: list | None = None) -> pl.DataFrame:
    with connect_readonly(settings) as con:
        return con.execute(query, params or []).pl()


def open_detail(browser, url: str, run_id: str) -> tuple[object, list[str]]:
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    page.goto(f"{url}?run={run_id}")
    page.locator(".trades-table .tabulator-row").first.wait_for()
    return page, errors


def wait_drawn(page, prefix: str, n: int = 1) -> None:
    page.wait_for_function(f"() => ({DRAWN_JS})({json.dumps(prefix)}) >= {n}")


def shown_metrics(page) -> dict[str, str]:
    """data-metric -> text of the full-period cells of the metric groups."""
    cells = page.locator(".metric-groups td[data-segment='full']")
    cells.first.wait_for()
    return dict(zip(cells.evaluate_all("els => els.map(e => e.dataset.metric)"), cells.all_inner_texts(),
                    strict=True))


def expected_metrics(settings: Settings, run_id: str) -> dict[str, str]:
    """Every full-period metric and the cost summary of ``run_id`` from SQL, formatted by unit."""
    rows = sql(settings, "SELECT name, value FROM metrics WHERE run_id = ? AND segment = 'full'", [run_id])
    costs = sql(settings, "SELECT total_costs, cost_commission, cost_fees, cost_slippage, cost_impact FROM runs "
                          "WHERE run_id = ?", [run_id]).row(0, named=True)
    return {**{n: metric_text(n, v) for n, v in rows.iter_rows()}, **{n: metric_text(n, v) for n, v in costs.items()}}


def check_drawdown_table(page, settings: Settings, run_id: str) -> None:
    mdd = sql(settings, "SELECT value FROM metrics WHERE run_id = ? AND segment = 'full' AND name = 'max_drawdown'",
              [run_id]).item()
    low = sql(settings, "SELECT min(drawdown) FROM equity WHERE run_id = ?", [run_id]).item()
    assert low == pytest.approx(mdd)
    rows = page.locator(".drawdown-table .tabulator-row")
    assert rows.count() == 5
    first = rows.first.inner_text()
    assert value_text("pct", mdd) in first, first


@pytest.mark.browser
def test_universe_backtest_detail(browser, detail_url: str, lake: tuple[Settings, dict[str, str]]) -> None:
    settings, runs = lake
    run_id = runs["universe"]
    page, errors = open_detail(browser, detail_url, run_id)
    title = "sma_crossover on AAPL, MSFT, XOM"
    for prefix in (f"Equity vs benchmark — {title}", f"Drawdown — {title}", f"Monthly returns — {title}",
                   "Yearly returns", f"Cumulative costs — {title}", "P&L per trade", "Exit reasons",
                   "Holding time", "MAE vs MFE", "Contribution to total return", "Correlation of 1d asset returns"):
        wait_drawn(page, prefix)
    assert run_id not in page.locator(".backtest-detail").inner_text()  # titles name strategy and symbols

    # every metric (all groups, not the first 9) and the cost summary equal SQL, in their units
    shown, expected = shown_metrics(page), expected_metrics(settings, run_id)
    assert shown == expected
    assert len(shown) > 30
    groups = page.locator(".metric-groups .bl-group h5").all_inner_texts()
    assert [g.lower() for g in groups] == ["returns", "risk", "risk-adjusted", "benchmark-relative", "trades", "costs"]
    assert expected["total_costs"] != "–" and float(expected["total_costs"].replace(",", "")) > 0

    check_drawdown_table(page, settings, run_id)

    # per asset: one row per symbol, P&L = SQL's per-symbol sum, contributions sum to the total return
    by_symbol = sql(settings, "SELECT symbol, sum(pnl) AS pnl, count(*) AS n FROM trades WHERE run_id = ? "
                              "GROUP BY symbol", [run_id])
    rows = page.locator(".asset-table .tabulator-row")
    assert rows.count() == 3
    for sym, pnl, n in by_symbol.iter_rows():
        text = page.locator(".asset-table .tabulator-row", has_text=sym).inner_text()
        assert f"{pnl:,.2f}" in text and str(n) in text, (sym, text)
    total = sql(settings, "SELECT total_return FROM runs WHERE run_id = ?", [run_id]).item()
    assert by_symbol["pnl"].sum() / 100_000 == pytest.approx(total)
    version = json.loads(sql(settings, "SELECT data_versions FROM runs WHERE run_id = ?", [run_id]).item())["bars"]
    assert f"Correlation of 1d asset returns (bars version {version}, run period)" in page.evaluate(TITLES_JS)

    # config: what the user set, without the India fee schedule
    config = page.locator(".run-config pre").inner_text()
    assert "equal_weight" in config and "commission_bps" in config
    assert "india" not in config.lower() and "stt_rate" not in config

    # the log toggle: the log-scale figure has a log y scale once its tab is shown
    assert page.evaluate(Y_SCALES_JS, f"Equity vs benchmark — {title}") == ["LinearScale"]
    page.locator(".equity-scale").get_by_text("Log scale").click()
    wait_drawn(page, f"Equity vs benchmark — {title} (log scale)")
    assert page.evaluate(Y_SCALES_JS, f"Equity vs benchmark — {title}") == ["LogScale"]
    page.locator(".equity-scale").get_by_text("Linear").click()
    page.screenshot(path=str(SHOTS / "backtest_detail_universe.png"), full_page=True)
    assert errors == []


@pytest.mark.browser
def test_goog_backtest_detail(browser, detail_url: str, lake: tuple[Settings, dict[str, str]]) -> None:
    settings, runs = lake
    run_id = runs["goog"]
    page, errors = open_detail(browser, detail_url, run_id)
    title = "sma_crossover on GOOG"
    for prefix in (f"Equity vs benchmark — {title}", f"Drawdown — {title}", f"Monthly returns — {title}",
                   "P&L per trade", "MAE vs MFE"):
        wait_drawn(page, prefix)
    assert shown_metrics(page) == expected_metrics(settings, run_id)
    check_drawdown_table(page, settings, run_id)
    assert page.locator(".asset-section").count() == 0  # one symbol: no per-asset view
    n = sql(settings, "SELECT count(*) FROM trades WHERE run_id = ?", [run_id]).item()
    page.locator(".backtest-detail").get_by_text(f"Trades ({n})").wait_for()
    config = page.locator(".run-config pre").inner_text()
    assert "commission_bps" in config and not re.search(r"india|sec_fee_rate|whole_units", config)
    page.screenshot(path=str(SHOTS / "backtest_detail_goog.png"), full_page=True)
    assert errors == []


def test_is_oos_shading_and_config_folding(lake: tuple[Settings, dict[str, str]]) -> None:
    """No browser: the split a run with IS/OOS segments is shaded at, and the config shown."""
    from dashboards.details.backtest import _segment_costs, _spans, shown_config
    from dashboards.store import LakeStore

    settings, runs = lake
    store = LakeStore(settings)
    run = store.run(runs["goog"])
    equity = store.equity(runs["goog"])
    spans, caption = _spans(run, {"oos_fraction": 0.25}, equity, ["full", "is", "oos"], store.query("SELECT 1 LIMIT 0"))
    n = len(equity)
    split = equity["ts"].iloc[n - round(n * 0.25)]
    assert len(spans) == 2 and f"before {split:%Y-%m-%d}" in caption
    assert _spans(run, {}, equity, ["full"], store.query("SELECT 1 LIMIT 0")) == ([], "")
    # the IS / OOS columns of the costs group: the per-bar costs on each side of the split, as SQL sums them
    per_bar = store.query("SELECT timezone('UTC', ts) AS ts, costs, cost_commission, cost_fees, cost_slippage, "
                          "cost_impact FROM equity WHERE run_id = ? ORDER BY ts", [runs["goog"]])
    seg = _segment_costs(per_bar, split.to_pydatetime())
    is_sql, oos_sql = sql(settings, "SELECT sum(costs) FILTER (WHERE ts < ?), sum(costs) FILTER (WHERE ts >= ?) "
                                    "FROM equity WHERE run_id = ?",
                          [split.tz_localize("UTC"), split.tz_localize("UTC"), runs["goog"]]).row(0)
    assert seg["is"]["total_costs"] == pytest.approx(is_sql) and seg["oos"]["total_costs"] == pytest.approx(oos_sql)
    assert is_sql > 0 and oos_sql > 0
    cfg = json.loads(run["config"])
    assert cfg["costs"]["market"] == "none" and "india" in cfg["costs"]
    assert shown_config(cfg) == {"strategy": "sma_crossover", "universe": ["GOOG"], "costs": {"commission_bps": 10}}
    india = {**cfg, "costs": {**cfg["costs"], "market": "us", "india": {**cfg["costs"]["india"], "stt_rate": 0.002}}}
    assert "india" not in shown_config(india)["costs"]
    store.close()


def test_a_run_without_rows_shows_empty_states(lake: tuple[Settings, dict[str, str]]) -> None:
    """No browser: a backtest row whose child rows are absent renders hints, not a traceback."""
    import panel as pn

    from dashboards.details import render
    from dashboards.store import LakeStore

    settings, runs = lake
    store = LakeStore(settings)
    run = {**store.run(runs["universe"]), "run_id": "0000000000000000"}
    view = render(store, run)

    def texts(obj: object) -> list[str]:
        out = [str(getattr(obj, "object", ""))]
        for child in getattr(obj, "objects", []):
            out += texts(child)
        return out

    shown = " ".join(texts(view))
    assert isinstance(view, pn.Column)
    assert "has no equity rows" in shown and "backlake backtest" in shown
    assert "No metrics recorded" in shown and "made no trades" in shown
    store.close()
