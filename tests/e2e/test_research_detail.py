"""The research run views and the Regression page in a real browser.

One lake made by the real flows in the session's Prefect harness (GOOG daily sample bars): a
sweep (and a backtest of its best parameters), a walk-forward, an optimisation, a Monte Carlo,
and a golden whose stored Sharpe was tampered with so its second regression report drifts. A
test-only Panel app in tmp_path renders ``dashboards.details.render(store, run)`` for the run of
``?run=<id>``; ``dashboards/regression.py`` is served beside it. Every figure checked is drawn,
every number checked is the page's text against DuckDB on the same run, and no page logs a
console error.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backlake.data.ingest import ingest_bars
from backlake.lake import Lake, connect
from backlake.runs.goldens import add_golden
from backlake.settings import Settings
from dashboards.fmt import metric_text, value_text
from tests.conftest import stop_process
from tests.e2e.test_dashboard import (
    DRAWN_FIGURES_JS,
    REPO,
    UI_TIMEOUT_MS,
    _free_port,
    _wait_for_page,
    goog_bars,
)

pytestmark = [pytest.mark.browser, pytest.mark.prefect]

CFG = {"strategy": "sma_crossover", "params": {"fast": 10, "slow": 50}, "universe": ["GOOG"], "timeframe": "1d",
       "initial_cash": 100_000, "costs": {"commission_bps": 2}}
GRID = {"fast": [5, 10, 20], "slow": [30, 50, 100]}
SHOTS = Path("/tmp/research_detail")
APP = '''
import panel as pn
from dashboards.details import render
from dashboards.store import LakeStore

pn.extension(sizing_mode="stretch_width")
store = LakeStore()
rid = (pn.state.session_args or {}).get("run", [b""])[0].decode()
pn.Column(render(store, store.run(rid)), sizing_mode="stretch_width").servable(title="detail")
'''
SHORT = "sma_crossover GOOG"
MACD_GRID = {"fast": [8, 12], "slow": [26, 40], "signal": [5, 9]}
#: the cell texts of the heatmap titled ``title`` as {(x, y): text}
HEATMAP_CELLS_JS = """(title) => {
    const f = [...Bokeh.index.query(v => v.model.type === 'Figure')].find(v => v.model.title.text === title);
    const d = f.model.renderers.find(r => r.data_source.data.text !== undefined).data_source.data;
    return Object.fromEntries(d.x.map((x, i) => [x + '|' + d.y[i], d.text[i]]));
}"""
SHADOW_TEXT_JS = """e => [...(e.shadowRoot ? e.shadowRoot.children : [e])]
    .filter(c => !['STYLE', 'LINK'].includes(c.tagName)).map(c => c.innerText).join('\\n')"""


@dataclass
class ResearchLake:
    settings: Settings
    runs: dict[str, str]  # kind -> run id
    best_backtest: str
    golden: str

    def sql(self, query: str, params: list | None = None) -> list[tuple]:
        with connect(self.settings) as con:
            return con.execute(query, params or []).fetchall()

    def one(self, query: str, params: list | None = None) -> object:
        return self.sql(query, params)[0][0]


@pytest.fixture(scope="module")
def research_lake(prefect_harness, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ResearchLake]:
    from flows.backtest import backtest_flow
    from flows.regression import regression_flow
    from flows.research import monte_carlo_flow, optimize_flow, walk_forward_flow
    from flows.sweep import sweep_flow

    uri = str(tmp_path_factory.mktemp("research") / "lake")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BACKLAKE_LAKE_URI", uri)
        for k in ("BACKLAKE_S3_ENDPOINT_URL", "BACKLAKE_S3_ALLOW_HTTP"):
            mp.delenv(k, raising=False)
        settings = Settings()
        lake = Lake(settings)
        ingest_bars(lake, goog_bars())
        sweep = sweep_flow(CFG, GRID, lake_uri=uri)
        macd = sweep_flow({**CFG, "strategy": "macd_crossover", "params": {}}, MACD_GRID, lake_uri=uri)
        best = backtest_flow({**CFG, "params": sweep["best_params"]}, lake_uri=uri)[0]["run_id"]
        wf = walk_forward_flow(CFG, {"fast": [5, 20], "slow": [50, 100]}, train="3y", test="1y", lake_uri=uri)
        opt = optimize_flow(CFG, {"fast": {"low": 3, "high": 40}, "slow": {"low": 30, "high": 200}}, n_trials=16,
                            lake_uri=uri)
        mc = monte_carlo_flow(CFG, method="block_bootstrap", n_paths=300, seeds=[0, 1], lake_uri=uri)
        golden = backtest_flow(CFG, lake_uri=uri)[0]["run_id"]
        add_golden(lake, golden, {"sharpe": 1e-9}, note="e2e golden", user="e2e")
        assert all(r["ok"] for r in regression_flow(lake_uri=uri))  # report 1: passes
        from deltalake import DeltaTable

        DeltaTable(lake.uri("metrics")).update(
            predicate=f"run_id = '{golden}' AND name = 'sharpe' AND segment = 'full'",
            updates={"value": "value + 0.25"})
        with pytest.raises(Exception, match="sharpe"):
            regression_flow(lake_uri=uri)  # report 2: drift
        yield ResearchLake(settings, {"sweep": sweep["run_id"], "sweep3": macd["run_id"], "walk_forward": wf["run_id"],
                                      "optimize": opt["run_id"], "monte_carlo": mc["run_id"]}, best, golden)


@pytest.fixture(scope="module")
def server(research_lake: ResearchLake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    d = tmp_path_factory.mktemp("app")
    (d / "detail.py").write_text(APP)
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKLAKE_")}
    env.update(BACKLAKE_LAKE_URI=research_lake.settings.lake_uri, BACKLAKE_DASHBOARD_AUTH="none",
               PYTHONPATH=os.pathsep.join([str(REPO), env.get("PYTHONPATH", "")]))
    log = d / "panel.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "panel", "serve", str(d / "detail.py"), str(REPO / "dashboards" / "regression.py"),
             "--port", str(port), "--address", "127.0.0.1", "--allow-websocket-origin", f"127.0.0.1:{port}"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_page(f"{base}/regression", proc, log)
        yield base
    finally:
        stop_process(proc)
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]


class Opened:
    def __init__(self, browser, url: str, name: str) -> None:
        self.page = browser.new_page(viewport={"width": 1400, "height": 1100})
        self.page.set_default_timeout(UI_TIMEOUT_MS)
        self.errors: list[str] = []
        self.name = name
        self.page.on("console", lambda m: self.errors.append(f"console: {m.text}") if m.type == "error" else None)
        self.page.on("pageerror", lambda e: self.errors.append(f"page error: {e}"))
        self.page.goto(url)

    def drawn(self, title: str) -> None:
        self.page.wait_for_function(f"({DRAWN_FIGURES_JS})({json.dumps(title)}) > 0", timeout=UI_TIMEOUT_MS)

    def text(self, selector: str) -> str:
        """The rendered text of a Panel pane (its content lives in the pane's shadow root)."""
        loc = self.page.locator(selector).first
        loc.wait_for()
        return loc.evaluate(SHADOW_TEXT_JS)

    def close(self) -> None:
        SHOTS.mkdir(exist_ok=True)
        self.page.wait_for_timeout(500)
        self.page.screenshot(path=str(SHOTS / f"{self.name}.png"), full_page=True)
        self.page.close()
        assert self.errors == [], self.errors


@pytest.fixture
def open_page(browser, server: str) -> Iterator:
    pages: list[Opened] = []

    def go(path: str, name: str) -> Opened:
        p = Opened(browser, server + path, name)
        pages.append(p)
        return p

    yield go
    for p in pages:
        p.close()


def test_sweep_heatmap_pickers_top_table_and_best_run(open_page, research_lake: ResearchLake) -> None:
    rid = research_lake.runs["sweep"]
    p = open_page(f"/detail?run={rid}", "sweep")
    p.drawn(f"sharpe by fast x slow · {SHORT} (every combination)")
    assert "Parameter sweep · sma_crossover on GOOG" in p.text(".rv-header")
    # the top row is the best trial by SQL, with its Sharpe formatted
    fast, slow, sharpe = research_lake.sql(
        "SELECT params->>'fast', params->>'slow', sharpe FROM trials WHERE parent_id = ? "
        "ORDER BY sharpe DESC, trial LIMIT 1", [rid])[0]
    first = p.page.locator(".sweep-top tbody tr").first.inner_text().split("\t")
    assert first[:4] == ["1", str(fast), str(slow), metric_text("sharpe", sharpe)]
    n_trials = research_lake.one("SELECT count(*) FROM trials WHERE parent_id = ?", [rid])
    assert p.page.locator(".sweep-top tbody tr").count() == min(10, n_trials)
    # the best parameters' own backtest run is linked
    assert p.page.locator(".sweep-best a.best-run-link").get_attribute("href") == \
        f"./app?run={research_lake.best_backtest}"
    # pick another metric: the heatmap and the table follow
    p.page.locator(".sweep-pickers select").nth(2).select_option("total_return")
    p.drawn(f"total return by fast x slow · {SHORT} (every combination)")
    p.page.get_by_text(f"Top {min(10, n_trials)} combinations by total return").wait_for()
    best_tr = research_lake.one("SELECT max(total_return) FROM trials WHERE parent_id = ?", [rid])
    row = p.page.locator(".sweep-top tbody tr").first.inner_text().split("\t")
    assert row[3] == metric_text("total_return", best_tr)
    # swap the axes
    p.page.locator(".sweep-pickers select").nth(0).select_option("slow")
    p.page.locator(".sweep-pickers select").nth(1).select_option("fast")
    p.drawn(f"total return by slow x fast · {SHORT} (every combination)")


def test_optimize_overfitting_panel_and_charts(open_page, research_lake: ResearchLake) -> None:
    rid = research_lake.runs["optimize"]
    p = open_page(f"/detail?run={rid}", "optimize")
    for title in (f"sharpe by trial · {SHORT}", f"In-sample vs out-of-sample sharpe · {SHORT}",
                  f"Parameter importance for sharpe · {SHORT}"):
        p.drawn(title)
    cards = p.text(".opt-overfit")
    study = dict(research_lake.sql("SELECT name, value FROM metrics WHERE run_id = ? AND segment = 'study'", [rid]))
    assert value_text("pct", study["pbo"]) in cards
    assert value_text("pct", study["deflated_sharpe"]) in cards and f"given {int(study['n_trials'])} trials" in cards
    n_flag, n = research_lake.sql("SELECT count(*) FILTER (WHERE flagged), count(*) FROM trials WHERE parent_id = ?",
                                  [rid])[0]
    assert f"{n_flag} of {n}" in cards
    ov = research_lake.one("SELECT overfit_score FROM trials WHERE parent_id = ? ORDER BY objective DESC, trial "
                           "LIMIT 1", [rid])
    assert value_text("pct", ov) in cards
    oos_sharpe = research_lake.one("SELECT value FROM metrics WHERE run_id = ? AND segment = 'oos' AND name = 'sharpe'",
                                   [rid])
    assert metric_text("sharpe", oos_sharpe) in p.text(".opt-segments")
    assert p.page.locator(".opt-importance tbody tr").count() == 2
    # the PBO's logit distribution, stored with the run: its shares sum to 1 and those at or
    # below 0 to the PBO; the page draws it
    dist = research_lake.sql("SELECT name, value FROM metrics WHERE run_id = ? AND segment = 'pbo_logits'", [rid])
    assert dist and abs(sum(v for _, v in dist) - 1.0) < 1e-9
    assert abs(sum(v for k, v in dist if float(k) <= 0) - study["pbo"]) < 1e-9
    p.drawn(f"PBO logit distribution · {SHORT} (PBO {value_text('pct', study['pbo'])})")


def test_walk_forward_windows_and_stitched_equity(open_page, research_lake: ResearchLake) -> None:
    rid = research_lake.runs["walk_forward"]
    p = open_page(f"/detail?run={rid}", "walk_forward")
    for title in (f"Windows · {SHORT}", f"In-sample vs out-of-sample Sharpe per window · {SHORT}",
                  f"Parameters chosen per window · {SHORT}",
                  f"Stitched out-of-sample equity · {SHORT} (dotted: window starts)"):
        p.drawn(title)
    n = research_lake.one("SELECT count(*) FROM windows WHERE parent_id = ?", [rid])
    assert n >= 3 and p.page.locator(".wf-windows tbody tr").count() == n
    oos = research_lake.one("SELECT value FROM metrics WHERE run_id = ? AND segment = 'oos' AND name = 'sharpe'", [rid])
    assert f"OOS SHARPE\n{metric_text('sharpe', oos)}" in p.text(".wf-cards")
    # what the out-of-sample trade statistics cover, with the run's own counts
    n_trades, closed = (research_lake.one("SELECT value FROM metrics WHERE run_id = ? AND segment = 'oos' AND name = ?",
                                          [rid, name]) for name in ("n_trades", "n_closed_trades"))
    assert (f"trades entered in its test windows ({closed:.0f} of {n_trades:.0f} closed)"
            in p.text(".wf-trades-note"))
    deg = research_lake.one('SELECT degradation FROM windows WHERE parent_id = ? ORDER BY "window" LIMIT 1', [rid])
    assert p.page.locator(".wf-windows tbody tr").first.inner_text().split("\t")[-1] == value_text("pct", deg)


def test_monte_carlo_fan_intervals_and_ruin(open_page, research_lake: ResearchLake) -> None:
    rid = research_lake.runs["monte_carlo"]
    p = open_page(f"/detail?run={rid}", "monte_carlo")
    p.drawn(f"Monte Carlo fan (600 paths, block_bootstrap) · {SHORT}")
    for m in ("total return", "max drawdown", "sharpe"):
        p.drawn(f"{m} over paths · {SHORT}")
    mc = dict(research_lake.sql("SELECT name, value FROM metrics WHERE run_id = ? AND segment = 'mc'", [rid]))
    cards = p.text(".mc-cards")
    for m in ("total_return", "max_drawdown", "sharpe"):
        assert f"{metric_text(m, mc[f'{m}_low'])} … {metric_text(m, mc[f'{m}_high'])}" in cards
    assert value_text("pct", mc["prob_ruin"]) in p.text(".mc-ruin")
    # move the ruin level down by 2 steps (50 % -> 40 %): the share follows, as SQL counts it
    handle = p.page.locator(".mc-ruin-slider .noUi-handle").first
    handle.focus()
    handle.press("ArrowLeft")
    handle.press("ArrowLeft")
    share = research_lake.one("SELECT avg((coalesce(max_drawdown, 0) <= -0.4)::DOUBLE) FROM trials WHERE parent_id = ?",
                              [rid])
    p.page.locator(".mc-ruin").get_by_text("P(RUIN) AT 40% DRAWDOWN", exact=False).wait_for()
    assert value_text("pct", share) in p.text(".mc-ruin")


def test_regression_page_highlights_the_drifted_golden(open_page, research_lake: ResearchLake) -> None:
    p = open_page("/regression", "regression")
    golden = p.page.locator(f".golden-{research_lake.golden}")
    golden.get_by_text("DRIFT").first.wait_for()
    drift_rows = golden.locator("tr.drift")
    assert drift_rows.count() == 1
    cells = drift_rows.first.inner_text().split("\t")
    stored, replayed = research_lake.sql(
        "SELECT stored, replayed FROM regression_reports WHERE run_id = ? AND metric = 'sharpe' ORDER BY ts DESC "
        "LIMIT 1", [research_lake.golden])[0]
    assert cells[:3] == ["sharpe", metric_text("sharpe", stored), metric_text("sharpe", replayed)]
    history = p.page.locator(".regression-history tbody tr")
    assert history.count() == 2
    assert "DRIFT" in history.nth(0).inner_text() and "PASS" in history.nth(1).inner_text()
    assert "DRIFT\n1" in p.text(".regression-summary")


def test_sweep_heatmap_fixes_or_aggregates_the_other_parameter(open_page, research_lake: ResearchLake) -> None:
    rid = research_lake.runs["sweep3"]
    p = open_page(f"/detail?run={rid}", "sweep_3_params")
    short = "macd_crossover GOOG"

    def cells(title: str) -> dict:
        p.drawn(title)
        return p.page.evaluate(f"({HEATMAP_CELLS_JS})({json.dumps(title)})")

    def sql(agg: str, where: str = "") -> dict:
        rows = research_lake.sql(
            f"SELECT params->>'fast', params->>'slow', {agg}(sharpe) FROM trials WHERE parent_id = ? {where} "
            "GROUP BY 1, 2", [rid])
        return {f"{f}|{s}": metric_text("sharpe", v) for f, s, v in rows}

    # default: the best over the other parameter (signal)
    assert cells(f"sharpe by fast x slow · {short} (max over signal)") == sql("max")
    pickers = p.page.locator(".sweep-pickers select")
    pickers.nth(3).select_option("mean")
    assert cells(f"sharpe by fast x slow · {short} (mean over signal)") == sql("avg")
    pickers.nth(3).select_option("fixed")
    assert cells(f"sharpe by fast x slow · {short} (signal = 5)") == sql("max", "AND (params->>'signal') = '5'")
    p.page.locator(".sweep-fixed select").first.select_option("9")
    assert cells(f"sharpe by fast x slow · {short} (signal = 9)") == sql("max", "AND (params->>'signal') = '9'")
