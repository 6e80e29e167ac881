"""The Alpha page in a real browser, over what the real code writes.

One lake: the shipped 20-stock S&P 500 panel, two alphas (``momentum_12_1``, ``low_volatility``)
evaluated together and backtested by the ``alpha`` Prefect flow (the session's harness), the
momentum run and an ordinary SMA backtest attributed to the Fama-French 3 factors by
``backlake.runs.alpha.attribute_run``. One ``panel serve dashboards/alpha.py dashboards/app.py``
over it (and one over an empty lake for the empty state), one headless Chromium. Every number
checked on the page is compared with a DuckDB query on the same lake.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import parse_qs, urlparse

import pytest

from backlake.config import UNIVERSES, BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.data.samples import load_samples
from backlake.lake import Lake, connect
from backlake.settings import Settings
from dashboards.runs import PARAMS_WIDTH
from tests.conftest import stop_process
from tests.e2e.test_dashboard import REPO, UI_TIMEOUT_MS, Page, _free_port, _wait_for_page, run_configs

pytestmark = [pytest.mark.browser, pytest.mark.prefect, pytest.mark.slow]

SHOTS = Path("/tmp")
ALPHAS = ["momentum_12_1", "low_volatility"]

#: Titles of the drawn figures (has_finished, on a live canvas of non-zero width) that start with ``prefix``.
DRAWN_JS = """(prefix) => [...Bokeh.index.query(v => v.model.type === 'Figure')]
    .filter(v => v.model.title != null && v.model.title.text.startsWith(prefix))
    .filter(v => v.has_finished() && v.el.isConnected && v.canvas_view.primary.canvas.width > 0)
    .map(v => v.model.title.text)"""


@dataclass
class AlphaLake:
    settings: Settings
    momentum: str  # run ids
    low_vol: str
    sma: str

    def metric(self, run_id: str, segment: str, name: str) -> float | None:
        with connect(self.settings) as con:
            rows = con.execute("SELECT value FROM metrics WHERE run_id = ? AND segment = ? AND name = ?",
                               [run_id, segment, name]).fetchall()
        assert len(rows) == 1, (run_id, segment, name, rows)
        return rows[0][0]

    def segment(self, run_id: str, segment: str) -> dict[str, float | None]:
        with connect(self.settings) as con:
            rows = con.execute("SELECT name, value FROM metrics WHERE run_id = ? AND segment = ?",
                               [run_id, segment]).fetchall()
        return dict(rows)

    def scalar(self, sql: str, params: list) -> float:
        with connect(self.settings) as con:
            return con.execute(sql, params).fetchone()[0]


def sma_config() -> BacktestConfig:
    return BacktestConfig.model_validate({
        "strategy": "sma_crossover", "params": {"fast": 20, "slow": 100}, "universe": ["AAPL"],
        "timeframe": "1d", "initial_cash": 100_000, "costs": {"commission_bps": 5},
    })


@pytest.fixture(scope="module")
def alpha_lake(prefect_harness, tmp_path_factory: pytest.TempPathFactory) -> AlphaLake:
    from backlake.runs.alpha import attribute_run
    from flows.alpha import alpha_flow

    settings = Settings(lake_uri=str(tmp_path_factory.mktemp("alpha") / "lake"))
    lake = Lake(settings)
    ingest_bars(lake, load_samples(list(UNIVERSES["sp500_stocks"])))
    out = alpha_flow(ALPHAS, universe="sp500_stocks", weights={"method": "zscore", "rebalance": "monthly"},
                     lake_uri=settings.lake_uri)
    assert [r["status"] for r in out["runs"]] == ["completed", "completed"], out
    momentum, low_vol = (r["run_id"] for r in out["runs"])
    (sma,) = run_configs(lake, [sma_config()])
    attribute_run(lake, momentum, "ff3")
    attribute_run(lake, sma, "ff3")
    return AlphaLake(settings, momentum, low_vol, sma)


def _serve(lake_uri: str, tmp_path_factory: pytest.TempPathFactory) -> tuple[subprocess.Popen, str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKLAKE_")}
    env["BACKLAKE_LAKE_URI"] = lake_uri
    env["BACKLAKE_DASHBOARD_AUTH"] = "none"
    log = tmp_path_factory.mktemp("panel") / "panel.log"
    apps = [str(REPO / "dashboards" / f"{name}.py") for name in ("alpha", "app")]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "panel", "serve", *apps, "--port", str(port), "--address", "127.0.0.1",
             "--allow-websocket-origin", f"127.0.0.1:{port}", "--index", "app"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_for_page(f"{base}/alpha", proc, log)
    except Exception:
        stop_process(proc)
        raise
    return proc, base


@pytest.fixture(scope="module")
def base_url(alpha_lake: AlphaLake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    proc, base = _serve(alpha_lake.settings.lake_uri, tmp_path_factory)
    try:
        yield base
    finally:
        stop_process(proc)


def open_page(browser, url: str, height: int = 1400) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": height})
    page.set_default_timeout(UI_TIMEOUT_MS)
    out = Page(page)
    page.on("console", lambda m: out.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: out.errors.append(f"page error: {e}"))
    page.goto(url)
    return out


def drawn(page, prefix: str, contains: str = "") -> str:
    """The title of the drawn figure whose title starts with ``prefix`` (and contains ``contains``)."""
    page.wait_for_function(f"(a) => ({DRAWN_JS})(a[0]).some(t => t.includes(a[1]))", arg=[prefix, contains])
    titles = [t for t in page.evaluate(f"(p) => ({DRAWN_JS})(p)", prefix) if contains in t]
    assert len(titles) == 1, titles
    return titles[0]


def card(page, metric: str, where: str = ".alpha-cards") -> tuple[float | None, str]:
    """(the card's exact value, its shown number)."""
    el = page.locator(f"{where} [data-metric='{metric}']")
    raw = el.get_attribute("data-value")
    return (float(raw) if raw else None), el.locator(".n").inner_text()


def title(page) -> str:
    return page.locator(".alpha-run-header h2").inner_text()


# -- the page --------------------------------------------------------------------------------------
def test_every_section_draws_for_a_run(browser, base_url: str, alpha_lake: AlphaLake) -> None:
    dash = open_page(browser, f"{base_url}/alpha?run={alpha_lake.momentum}", height=3000)
    page = dash.page
    page.locator(".alpha-run-header").get_by_text("momentum_12_1 on sp500_stocks (20 symbols)").wait_for()
    sub = page.locator(".alpha-run-header .bl-sub").inner_text()
    assert "zscore weights, monthly rebalance" in sub and "horizons 1 d, 5 d, 10 d, 21 d" in sub, sub
    # every chart, titled by the alpha and its universe (never a hash)
    titles = [
        drawn(page, "IC at the 5-day horizon, 63-day rolling means"),
        drawn(page, "IC by horizon"),
        drawn(page, "Mean 5-day forward return by score quantile"),
        drawn(page, "Turnover per rebalance"),
        drawn(page, "Coverage of 20 names"),
        drawn(page, "Rank correlation of scores, 2 alphas"),
        drawn(page, "Rolling 36-month factor betas (ff3)"),
    ]
    for t in titles[:5] + titles[6:]:
        assert "momentum_12_1 on sp500_stocks" in t, t
    for t in titles:
        assert alpha_lake.momentum not in t and alpha_lake.low_vol not in t, t
    # the selector lists both alpha runs with their alpha, parameters, universe size and dates
    options = page.locator(".alpha-run-select option").all_inner_texts()
    assert len(options) == 2, options
    assert any(o.startswith("momentum_12_1 (lookback=252, skip=21) on sp500_stocks (20 symbols)") for o in options)
    assert any(o.startswith("low_volatility (window=63) on sp500_stocks (20 symbols)") for o in options)
    assert all(" – " in o for o in options), options  # the dates
    # the IC summary: one row per horizon; the signals table: both alphas
    assert page.locator(".alpha-summary tbody tr").count() == 4
    assert page.locator(".alpha-signals tbody tr").count() == 2
    page.locator(".alpha-summary").get_by_text("adjusted across the alphas evaluated together").wait_for()
    page.wait_for_timeout(300)
    page.screenshot(path=str(SHOTS / "alpha_page.png"), full_page=True)
    assert dash.errors == []
    page.close()


def test_numbers_equal_duckdb(browser, base_url: str, alpha_lake: AlphaLake) -> None:
    run = alpha_lake.momentum
    dash = open_page(browser, f"{base_url}/alpha?run={run}")
    page = dash.page
    page.locator(".alpha-cards [data-metric='mean_ic']").wait_for()
    # mean IC at h=5: the stored value exactly, shown with 4 decimals
    mean_ic = alpha_lake.metric(run, "ic:h5", "mean_ic")
    exact, shown = card(page, "mean_ic")
    assert exact == mean_ic and shown == f"{mean_ic:.4f}", (exact, shown, mean_ic)
    t_stat = alpha_lake.metric(run, "ic:h5", "t_stat")
    exact, shown = card(page, "t_stat")
    assert exact == t_stat and shown == f"{t_stat:.2f}"
    hit = alpha_lake.metric(run, "ic:h5", "hit_rate")
    assert card(page, "hit_rate") == (hit, f"{hit:.2%}".replace("%", " %"))
    # the summary table: every stored value of every horizon
    cells = page.locator(".alpha-summary td[data-metric]")
    assert cells.count() > 40
    for h in (1, 5, 10, 21):
        stored = alpha_lake.segment(run, f"ic:h{h}")
        for name in ("mean_ic", "icir", "t_stat", "p_value", "p_bonferroni", "p_bh", "hit_rate", "n_dates"):
            raw = page.locator(f".alpha-summary td[data-h='{h}'][data-metric='{name}']").get_attribute("data-value")
            assert float(raw) == stored[name], (h, name, raw, stored[name])
    # the turnover the page computes from `weights` is the evaluation's stored mean turnover
    exact, shown = card(page, "turnover")
    assert exact == pytest.approx(alpha_lake.metric(run, "ic:h5", "turnover"), abs=1e-12)
    # the daily IC note: the mean of the ic rows
    avg = alpha_lake.scalar("SELECT avg(ic) FROM ic WHERE run_id = ? AND horizon = 5", [run])
    page.locator(".alpha-ic-note").get_by_text(f"mean IC {avg:.4f}").wait_for()
    # coverage from `signals`: scored names of the universe / 20 on the run's dates
    cov = alpha_lake.scalar(
        "WITH d AS (SELECT min(date) AS a, max(date) AS b FROM ic WHERE run_id = ?) "
        "SELECT avg(n) / 20 FROM (SELECT date, count(DISTINCT symbol) AS n FROM signals, d "
        "WHERE alpha = 'momentum_12_1' AND date BETWEEN d.a AND d.b GROUP BY date)", [run])
    assert card(page, "coverage")[0] == pytest.approx(cov, abs=1e-12)
    # the attribution (default: the chosen alpha run): alpha t-stat, alpha, betas
    attr = alpha_lake.segment(run, "attribution:ff3")
    exact, shown = card(page, "alpha_t", ".attr-cards")
    assert exact == attr["alpha_t"] and shown == f"{attr['alpha_t']:.2f}"
    exact, shown = card(page, "alpha_annual", ".attr-cards")
    assert exact == attr["alpha_annual"] and shown == f"{attr['alpha_annual']:.2%}".replace("%", " %")
    for factor in ("MktRF", "SMB", "HML"):
        row = page.locator(f".attr-table tr[data-factor='{factor}']")
        assert float(row.locator("td[data-metric='beta']").get_attribute("data-value")) == attr[f"beta_{factor}"]
        assert float(row.locator("td[data-metric='t']").get_attribute("data-value")) == attr[f"t_{factor}"]
    assert dash.errors == []
    page.close()


def test_selectors_change_the_charts_and_the_url(browser, base_url: str, alpha_lake: AlphaLake) -> None:
    dash = open_page(browser, f"{base_url}/alpha?run={alpha_lake.momentum}")
    page = dash.page
    drawn(page, "IC at the 5-day horizon")
    # horizon 21: the IC chart, the quantile bars, the cards and the URL follow
    page.locator(".alpha-horizon button", has_text="21 d").click()
    drawn(page, "IC at the 21-day horizon, 63-day rolling means")
    drawn(page, "Mean 21-day forward return by score quantile")
    page.wait_for_function("() => new URL(location.href).searchParams.get('h') === '21'")
    assert card(page, "mean_ic")[0] == alpha_lake.metric(alpha_lake.momentum, "ic:h21", "mean_ic")
    assert page.locator(".alpha-summary tr.sel td").first.inner_text() == "21 d"
    # the rolling window and the daily series
    page.locator(".alpha-window select").select_option(label="252 d (1 year)")
    drawn(page, "IC at the 21-day horizon, 252-day rolling means")
    page.locator(".alpha-measure button", has_text="Rank IC").click()
    drawn(page, "Rank IC at the 21-day horizon, 252-day rolling means")
    page.wait_for_function("() => new URL(location.href).searchParams.get('window') === '252'")
    # another run: the header, the charts and the attribution follow it; it has no attribution yet
    label = next(o for o in page.locator(".alpha-run-select option").all_inner_texts()
                 if o.startswith("low_volatility"))
    page.locator(".alpha-run-select select").select_option(label=label)
    page.locator(".alpha-run-header").get_by_text("low_volatility on sp500_stocks (20 symbols)").wait_for()
    drawn(page, "IC by horizon", "low_volatility on sp500_stocks")
    drawn(page, "Rank IC at the 21-day horizon", "low_volatility")
    missing = page.locator(".attr-missing")
    missing.get_by_text(f"backlake alpha attribution {alpha_lake.low_vol}").wait_for()
    query = parse_qs(urlparse(page.url).query)
    assert query["run"] == [alpha_lake.low_vol] and query["attr"] == [alpha_lake.low_vol], query
    page.screenshot(path=str(SHOTS / "alpha_page_selected.png"), full_page=True)
    assert dash.errors == []
    page.close()


def test_attribution_of_any_run(browser, base_url: str, alpha_lake: AlphaLake) -> None:
    dash = open_page(browser, f"{base_url}/alpha?run={alpha_lake.low_vol}")
    page = dash.page
    page.locator(".attr-missing").wait_for()
    label = next(o for o in page.locator(".attr-run-select option").all_inner_texts()
                 if o.startswith("backtest · sma_crossover"))
    assert "(fast=20, slow=100) on AAPL" in label, label
    page.locator(".attr-run-select select").select_option(label=label)
    drawn(page, "Rolling 36-month factor betas (ff3)", "sma_crossover")
    attr = alpha_lake.segment(alpha_lake.sma, "attribution:ff3")
    exact, shown = card(page, "alpha_t", ".attr-cards")
    assert exact == attr["alpha_t"] and shown == f"{attr['alpha_t']:.2f}"
    assert card(page, "r2", ".attr-cards")[0] == attr["r2"]
    assert card(page, "n_obs", ".attr-cards")[0] == attr["n_obs"]
    # the alpha run's charts stay on the chosen alpha run
    assert title(page) == "low_volatility on sp500_stocks (20 symbols)"
    page.wait_for_function(f"() => new URL(location.href).searchParams.get('attr') === '{alpha_lake.sma}'")
    page.locator(".alpha-attr-section").screenshot(path=str(SHOTS / "alpha_page_attribution.png"))
    assert dash.errors == []
    page.close()


def test_run_url_parameter(browser, base_url: str, alpha_lake: AlphaLake) -> None:
    dash = open_page(browser, f"{base_url}/alpha?run={alpha_lake.low_vol}&h=10&window=21")
    page = dash.page
    page.locator(".alpha-run-header").get_by_text("low_volatility on sp500_stocks (20 symbols)").wait_for()
    drawn(page, "IC at the 10-day horizon, 21-day rolling means", "low_volatility")
    assert card(page, "mean_ic")[0] == alpha_lake.metric(alpha_lake.low_vol, "ic:h10", "mean_ic")
    page.close()
    # an unknown run: said so, and the newest alpha run is shown
    dash = open_page(browser, f"{base_url}/alpha?run=nosuchrun&h=7")
    page = dash.page
    page.locator(".url-warning").first.get_by_text("run='nosuchrun' in the URL is not a completed alpha run").wait_for()
    page.locator(".url-warning").get_by_text("h=7 in the URL is not a horizon of this run").wait_for()
    assert title(page).endswith("on sp500_stocks (20 symbols)")
    drawn(page, "IC at the 5-day horizon")
    assert dash.errors == []
    page.close()


def test_runs_page_detail_links_to_the_alpha_page(browser, base_url: str, alpha_lake: AlphaLake) -> None:
    dash = open_page(browser, f"{base_url}/app")
    page = dash.page
    row = page.locator(".runs-table .tabulator-row", has_text=alpha_lake.momentum)
    # the alpha's long params text is cut in its column (not widening the table), whole in the tooltip
    params = row.locator(".tabulator-cell[tabulator-field=params]")
    row.wait_for()
    page.wait_for_timeout(1000)  # the table draws its rows again once the page's data is in
    assert params.bounding_box()["width"] <= PARAMS_WIDTH + 1
    assert params.evaluate("e => e.scrollWidth > e.clientWidth")
    page.locator(".runs-table .tabulator-tableholder").evaluate("e => { e.scrollLeft = e.scrollWidth; }")
    box = params.bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 10)
    page.mouse.move(box["x"] + 40, box["y"] + 12, steps=5)
    tooltip = page.locator(".tabulator-tooltip")
    tooltip.wait_for()
    assert "alpha=momentum_12_1" in tooltip.inner_text() and "rebalance=monthly" in tooltip.inner_text()
    row.click()
    head = page.locator(".alpha-detail-header")
    head.get_by_text("momentum_12_1 on sp500_stocks (20 symbols)").wait_for()
    mean_ic = alpha_lake.metric(alpha_lake.momentum, "ic:h5", "mean_ic")
    assert card(page, "mean_ic", ".alpha-detail-header") == (mean_ic, f"{mean_ic:.4f}")
    assert head.locator("a.alpha-page-link").get_attribute("href") == f"./alpha?run={alpha_lake.momentum}"
    assert page.locator(".run-detail .alpha-summary tbody tr").count() == 4
    head.locator("a.alpha-page-link").click()
    page.locator(".alpha-run-header").get_by_text("momentum_12_1 on sp500_stocks (20 symbols)").wait_for()
    assert page.locator(".bl-nav a.active").inner_text() == "Alpha"
    assert dash.errors == []
    page.close()


def test_empty_lake_names_the_command(browser, tmp_path_factory: pytest.TempPathFactory) -> None:
    uri = str(tmp_path_factory.mktemp("alpha-empty") / "lake")
    proc, base = _serve(uri, tmp_path_factory)
    try:
        dash = open_page(browser, f"{base}/alpha")
        page = dash.page
        empty = page.locator(".alpha-empty")
        empty.get_by_text("No alpha runs in the lake yet.").wait_for()
        empty.get_by_text("backlake alpha evaluate momentum_12_1").wait_for()
        assert not page.locator(".alpha-controls").is_visible()
        # nothing else to show: no signals to correlate, no run to attribute
        assert page.locator(".alpha-corr-title, .alpha-attr-title").count() == 0
        page.screenshot(path=str(SHOTS / "alpha_page_empty.png"))
        assert dash.errors == []
        page.close()
        # the page only reads: it created no table in the lake
        assert not Lake(Settings(lake_uri=uri), check=False).exists("signals")
        assert not Lake(Settings(lake_uri=uri), check=False).exists("ic")
    finally:
        stop_process(proc)
