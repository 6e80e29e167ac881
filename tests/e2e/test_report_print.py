"""Printed tear sheets leave out the charts' toolbars and the interactive widgets.

Two reports written by `backlake report RUN --format html` from a lake made here (GOOG daily
sample bars): a backtest (hvplot charts, tabs, the trades table's pager) and a ``random_entry``
Monte Carlo (Bokeh figures, the ruin slider). Each opens from file:// in Chromium: on screen the
toolbars and widgets are there; with the print media (what Print to PDF uses) none of them is
visible, while the charts still are; and the PDF is made.
"""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest

from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.engine import run_backtest
from backlake.lake import Lake
from backlake.research import monte_carlo as mc
from backlake.runs import jobs
from backlake.runs.commit import commit
from backlake.runs.events import Attempt, claim
from backlake.settings import Settings
from flows.cli.entry import main
from tests.e2e.test_dashboard import goog_bars, run_configs, sma_config

pytestmark = [pytest.mark.browser]
SHOTS = Path("/tmp/report_print")
#: every toolbar / widget element in the page, through every shadow root: [kind, visible]
CONTROLS_JS = """() => {
  const out = [];
  const kinds = [['toolbar', /(^| )bk-Toolbar( |$)/], ['slider', /(^| )noUi-target( |$)/],
                 ['pager', /(^| )tabulator-footer( |$)/], ['select', /(^| )bk-input-group( |$)/],
                 ['tabs', /(^| )bk-tab( |$)/]];
  const shown = (el) => { const r = el.getBoundingClientRect(); const st = getComputedStyle(el);
                          return r.width > 0 && r.height > 0 && st.display !== 'none' && st.visibility !== 'hidden'; };
  const walk = (root) => { for (const el of root.querySelectorAll('*')) {
      const c = typeof el.className === 'string' ? el.className : '';
      for (const [k, re] of kinds) if (re.test(c)) out.push([k, shown(el)]);
      if (el.shadowRoot) walk(el.shadowRoot); } };
  walk(document); return out; }"""
#: the page's text, through every shadow root
TEXT_JS = """() => { const parts = []; const walk = (root) => { for (const el of root.querySelectorAll('*')) {
    if (el.shadowRoot) walk(el.shadowRoot);
    if (el.children.length === 0 && !['STYLE', 'SCRIPT'].includes(el.tagName)) parts.push(el.textContent); } };
  walk(document); return parts.join(' '); }"""
#: the drawn figures whose canvas is visible
FIGURES_JS = """() => [...Bokeh.index.query(v => v.model.type === 'Figure')]
    .filter(v => v.has_finished() && v.el.isConnected && v.el.getBoundingClientRect().height > 0).length"""


@pytest.fixture(scope="module")
def reports(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("report-print")
    settings = Settings(lake_uri=str(d / "lake"))
    lake = Lake(settings)
    ingest_bars(lake, goog_bars())
    (backtest,) = run_configs(lake, [sma_config(10, 30)])
    cfg = BacktestConfig.model_validate({"strategy": "sma_crossover", "params": {"fast": 10, "slow": 50},
                                         "universe": ["GOOG"], "initial_cash": 100_000})
    job = jobs.plan_monte_carlo(lake, cfg, method="random_entry", n_paths=100, seeds=[0])
    attempt = Attempt.new(tag="e2e report print")
    gen = claim(lake, [job.run_id], attempt).claimed[job.run_id]
    base = run_backtest(cfg, job.bars)
    paths = mc.simulate_paths(base, job.bars, method="random_entry", n_paths=100, seed=0).with_columns(
        pl.lit(0).alias("seed"))
    record, _ = jobs.monte_carlo_record(job, base, paths, dt.datetime.now(dt.UTC), gen)
    commit(lake, [record], attempt)
    out = {}
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("BACKLAKE_LAKE_URI", settings.lake_uri)
        for name, rid in (("backtest", backtest), ("monte_carlo", job.run_id)):
            out[name] = d / f"{name}.html"
            assert main(["report", rid, "--format", "html", "--output", str(out[name])]) == 0
    return out


@pytest.mark.parametrize("name", ["backtest", "monte_carlo"])
def test_print_hides_toolbars_and_widgets(browser, reports: dict[str, Path], name: str) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("http://**/*", lambda r: r.abort())
    page.route("https://**/*", lambda r: r.abort())
    try:
        page.goto(reports[name].as_uri())
        page.wait_for_function(f"({FIGURES_JS})() >= 2", timeout=30_000)
        page.wait_for_timeout(500)
        screen = page.evaluate(CONTROLS_JS)
        kinds_on_screen = {k for k, visible in screen if visible}
        expected = {"toolbar", "pager", "tabs"} if name == "backtest" else {"toolbar", "slider"}
        assert expected <= kinds_on_screen, screen  # on screen: the report stays interactive
        n_figures = page.evaluate(FIGURES_JS)
        if name == "monte_carlo":  # the ruin slider opens at the run's level (50 %), as the fixed card says
            text = page.evaluate(TEXT_JS)
            assert re.findall(r"P\(ruin\) at (\d+)% drawdown", text) == ["50", "50"], text

        page.emulate_media(media="print")
        page.wait_for_function(f"() => ({CONTROLS_JS})().every(([k, visible]) => !visible)", timeout=10_000)
        assert page.evaluate(FIGURES_JS) == n_figures  # the charts themselves still print
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / f"{name}_print.png"), full_page=True)
        pdf = page.pdf(landscape=True, print_background=True)
        assert pdf[:4] == b"%PDF" and len(pdf) > 20_000
        # back on screen, the toolbars come back
        page.emulate_media(media="screen")
        assert any(k == "toolbar" and visible for k, visible in page.evaluate(CONTROLS_JS))
        assert errors == [], errors
    finally:
        page.close()
