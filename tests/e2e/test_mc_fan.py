"""The Monte Carlo fan chart of a ``random_entry`` run, in a real browser.

The lake: GOOG daily sample bars (with low / high) and a ``random_entry`` Monte Carlo job made
and committed as the flow does it (``backlake.runs.jobs``: plan, base backtest, paths per seed,
record, commit through the run protocol). The fan regenerates the stored paths from the run's
equity, its trades and their entry bars at the bars version the run pinned: first checked
path by path against the stored trials (the same total return and max drawdown), then drawn
on the run's page (the runs page opened on ``?run=<id>``) with its 5/25/50/75/95 % bands.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import polars as pl
import pytest

from backlake.analytics import research_views as rv
from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.engine import run_backtest
from backlake.lake import Lake, connect
from backlake.research import monte_carlo as mc
from backlake.runs import jobs
from backlake.runs.commit import commit
from backlake.runs.events import Attempt, claim
from backlake.settings import Settings
from dashboards.details.research import _entries
from dashboards.store import LakeStore
from tests.e2e.test_dashboard import APP, UI_TIMEOUT_MS, Page, goog_bars, serve_app

SHOTS = Path("/tmp/mc_fan")
CFG = {"strategy": "sma_crossover", "params": {"fast": 10, "slow": 50}, "universe": ["GOOG"], "timeframe": "1d",
       "initial_cash": 100_000, "costs": {"commission_bps": 2}}
N_PATHS, SEEDS = 300, [0, 1]
#: the fan figure's bands as drawn: [[5 %, 95 %], [25 %, 75 %]] areas and the median / original lines
FAN_JS = """(title) => {
    const f = [...Bokeh.index.query(v => v.model.type === 'Figure')].find(v => v.model.title.text === title);
    if (!f || !f.has_finished() || f.canvas_view.primary.canvas.width === 0) return null;
    const areas = f.model.renderers.filter(r => r.glyph.type === 'VArea').map(r => r.data_source.data);
    const lines = f.model.renderers.filter(r => r.glyph.type === 'Line').map(r => r.data_source.data);
    return {n_areas: areas.length, n_lines: lines.length, n: areas.length ? areas[0].y1.length : 0,
            last: areas.map(a => [a.y1[a.y1.length - 1], a.y2[a.y2.length - 1]]),
            median_last: lines.length ? lines[0].y[lines[0].y.length - 1] : null,
            legend: f.model.center.filter(m => m.type === 'Legend')
                .flatMap(l => l.items.map(i => i.label.value))};
}"""


@dataclass
class McLake:
    settings: Settings
    run_id: str


@pytest.fixture(scope="module")
def mc_lake(tmp_path_factory: pytest.TempPathFactory) -> McLake:
    settings = Settings(lake_uri=str(tmp_path_factory.mktemp("mc-fan") / "lake"))
    lake = Lake(settings)
    ingest_bars(lake, goog_bars())
    cfg = BacktestConfig.model_validate(CFG)
    job = jobs.plan_monte_carlo(lake, cfg, method="random_entry", n_paths=N_PATHS, seeds=SEEDS)
    attempt = Attempt.new(tag="e2e random_entry")
    gen = claim(lake, [job.run_id], attempt).claimed[job.run_id]
    base = run_backtest(cfg, job.bars)
    paths = pl.concat([mc.simulate_paths(base, job.bars, method="random_entry", n_paths=N_PATHS, seed=s)
                       .with_columns(pl.lit(s).alias("seed")) for s in SEEDS])
    record, _ = jobs.monte_carlo_record(job, base, paths, dt.datetime.now(dt.UTC), gen)
    commit(lake, [record], attempt, created_by="e2e")
    return McLake(settings, job.run_id)


def test_random_entry_paths_regenerate_the_stored_ones(mc_lake: McLake) -> None:
    store = LakeStore(mc_lake.settings)
    run = store.run(mc_lake.run_id)
    assert run is not None and run["status"] == "completed"
    cfg = json.loads(run["config"])
    eq = store.equity(mc_lake.run_id)
    entries = _entries(store, run, cfg, eq)
    with connect(mc_lake.settings) as con:
        stored = con.execute("SELECT params, total_return, max_drawdown FROM trials WHERE parent_id = ? ORDER BY trial",
                             [mc_lake.run_id]).pl()
    assert stored.height == N_PATHS * len(SEEDS)
    for k, seed in enumerate(SEEDS):
        paths = rv.mc_equity_paths(method="random_entry", n_paths=N_PATHS, seed=seed,
                                   equity=eq["equity"].to_numpy(dtype=float), entries=entries)
        assert paths.shape == (N_PATHS, len(eq))
        mine = stored.slice(k * N_PATHS, N_PATHS)
        assert json.loads(mine["params"][0]) == {"seed": seed, "path": 0}
        np.testing.assert_allclose(paths[:, -1] / cfg["initial_cash"] - 1.0, mine["total_return"].to_numpy(),
                                   rtol=1e-9, atol=1e-12)
        mdd = (paths / np.maximum.accumulate(paths, axis=1) - 1.0).min(axis=1)
        np.testing.assert_allclose(mdd, mine["max_drawdown"].to_numpy(), rtol=1e-9, atol=1e-12)
    # the paths do differ (entries re-priced), so the fan has a width
    assert float(np.ptp(stored["total_return"].to_numpy())) > 0


@pytest.fixture(scope="module")
def server(mc_lake: McLake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_app(APP, mc_lake.settings.lake_uri, tmp_path_factory.mktemp("panel"), index="app",
                   no_traceback=True) as url:
        yield url


def test_random_entry_run_page_draws_the_fan(browser, server: str, mc_lake: McLake) -> None:
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.set_default_timeout(UI_TIMEOUT_MS)
    out = Page(page)
    page.on("console", lambda m: out.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: out.errors.append(f"page error: {e}"))
    try:
        page.goto(f"{server}?run={mc_lake.run_id}")
        title = f"Monte Carlo fan ({N_PATHS * len(SEEDS)} paths, random_entry) · sma_crossover GOOG"
        page.wait_for_function(f"({FAN_JS})({json.dumps(title)}) !== null", timeout=UI_TIMEOUT_MS)
        fan = page.evaluate(f"({FAN_JS})({json.dumps(title)})")
        assert page.locator(".mc-fan-missing").count() == 0
        assert fan["n_areas"] == 2 and fan["n_lines"] == 2
        assert fan["legend"] == ["5–95 %", "25–75 %", "median", "original"]
        # the bands' last points are the 5/95 and 25/75 % of the stored paths' final equity
        with connect(mc_lake.settings) as con:
            finals = con.execute("SELECT (1 + total_return) * 100000 FROM trials WHERE parent_id = ?",
                                 [mc_lake.run_id]).pl().to_series().to_numpy()
        p5, p25, p50, p75, p95 = np.percentile(finals, [5, 25, 50, 75, 95])
        (lo, hi), (q1, q3) = fan["last"]
        assert (lo, hi, q1, q3) == pytest.approx((p5, p95, p25, p75), rel=1e-6)
        assert fan["median_last"] == pytest.approx(p50, rel=1e-6)
        assert lo < q1 < q3 < hi  # a real spread
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.wait_for_timeout(300)
        page.screenshot(path=str(SHOTS / "random_entry.png"), full_page=True)
        assert out.errors == [], out.errors
    finally:
        page.close()
