"""IS/OOS shading on the backtest detail view, in a real browser.

The lake: GOOG daily sample bars and one backtest run with in-sample / out-of-sample segments:
``run_backtest(cfg, bars, oos_start=2011-01-01)`` committed through the run protocol (claim +
commit) with ``oos_start`` in its request (so its stored config says where the split is). The
detail view (``dashboards.details.render`` in a test-only Panel app) must shade the equity chart
blue before the first out-of-sample bar and orange from it to the last bar, on both the linear
and the log-scale tab, say so in the caption, and show the IS / OOS metric columns as SQL has them.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import pytest

from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.engine import run_backtest
from backlake.lake import Lake, connect
from backlake.runs.commit import RunRecord, commit
from backlake.runs.data import pin
from backlake.runs.events import Attempt, claim
from backlake.runs.ids import run_id as make_run_id
from backlake.settings import Settings
from dashboards.fmt import metric_text
from tests.e2e.test_backtest_detail import APP_SOURCE, LOAD_TIMEOUT_MS
from tests.e2e.test_dashboard import goog_bars, serve_app

SHOTS = Path("/tmp/is_oos")
OOS_START = "2011-01-01"
#: the shaded spans (BoxAnnotations: left / right in ms, colour) of the drawn figure titled ``title``
SPANS_JS = """(title) => {
    const f = [...Bokeh.index.query(v => v.model.type === 'Figure')]
        .find(v => v.model.title != null && v.model.title.text === title);
    if (!f || !f.has_finished()) return null;
    return [...f.model.center, ...f.model.renderers].filter(m => m.type === 'BoxAnnotation')
        .map(m => ({left: Number(m.left), right: Number(m.right), color: String(m.fill_color),
                    alpha: m.fill_alpha, visible: getComputedStyle(f.el).visibility === 'visible'}));
}"""


@dataclass
class SplitLake:
    settings: Settings
    run_id: str


@pytest.fixture(scope="module")
def split_lake(tmp_path_factory: pytest.TempPathFactory) -> SplitLake:
    settings = Settings(lake_uri=str(tmp_path_factory.mktemp("is-oos") / "lake"))
    lake = Lake(settings)
    ingest_bars(lake, goog_bars())
    cfg = BacktestConfig.model_validate({
        "strategy": "sma_crossover", "params": {"fast": 10, "slow": 30}, "universe": ["GOOG"], "timeframe": "1d",
        "initial_cash": 10_000, "costs": {"commission_bps": 10}})
    pinned = pin(lake, cfg)
    request = {"oos_start": OOS_START}
    rid = make_run_id("backtest", {"config": cfg.model_dump(mode="json"), **request}, pinned.fingerprint)
    res = run_backtest(cfg, pinned.bars, oos_start=dt.date.fromisoformat(OOS_START))
    assert set(res.segments) == {"full", "is", "oos"}
    attempt = Attempt.new(tag="e2e is/oos")
    gen = claim(lake, [rid], attempt).claimed[rid]
    commit(lake, [RunRecord(run_id=rid, kind="backtest", config=cfg, data_versions=pinned.versions,
                            fingerprint=pinned.fingerprint, started_at=dt.datetime.now(dt.UTC), generation=gen,
                            request=request, params=cfg.params, segments=res.segments, headline=res.metrics,
                            equity=res.equity, trades=res.trades)], attempt, created_by="e2e")
    return SplitLake(settings, rid)


@pytest.fixture(scope="module")
def detail_url(split_lake: SplitLake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    folder = tmp_path_factory.mktemp("is-oos-app")
    app = folder / "detail.py"
    app.write_text(APP_SOURCE)
    with serve_app(app, split_lake.settings.lake_uri, folder, no_traceback=True) as url:
        yield url


def _ms(ts: object) -> float:
    return pd.Timestamp(ts).tz_localize(None).value / 1e6 if pd.Timestamp(ts).tzinfo else pd.Timestamp(ts).value / 1e6


def test_equity_chart_shades_the_out_of_sample_span(browser, detail_url: str, split_lake: SplitLake) -> None:
    with connect(split_lake.settings) as con:
        first, split, last = con.execute(
            "SELECT min(ts), min(ts) FILTER (WHERE ts >= ?::TIMESTAMPTZ), max(ts) FROM equity WHERE run_id = ?",
            [f"{OOS_START} 00:00:00+00", split_lake.run_id]).fetchone()
        seg = dict(((s, n), v) for s, n, v in con.execute(
            "SELECT segment, name, value FROM metrics WHERE run_id = ?", [split_lake.run_id]).fetchall())
    page = browser.new_page(viewport={"width": 1400, "height": 1800})
    page.set_default_timeout(LOAD_TIMEOUT_MS)
    errors: list[str] = []
    page.on("console", lambda m: errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(f"page error: {e}"))
    try:
        page.goto(f"{detail_url}?run={split_lake.run_id}")
        title = "Equity vs benchmark — sma_crossover on GOOG"
        page.wait_for_function(f"({SPANS_JS})({json.dumps(title)}) !== null")
        spans = page.evaluate(f"({SPANS_JS})({json.dumps(title)})")
        assert len(spans) == 2, spans
        is_span, oos_span = sorted(spans, key=lambda s: s["left"])
        # in-sample: first bar .. the first out-of-sample bar; out-of-sample: from it to the last bar
        assert is_span["left"] == pytest.approx(_ms(first)) and is_span["right"] == pytest.approx(_ms(split))
        assert oos_span["left"] == pytest.approx(_ms(split)) and oos_span["right"] == pytest.approx(_ms(last))
        assert is_span["color"] != oos_span["color"] and oos_span["alpha"] > 0
        assert oos_span["visible"]  # on the tab shown
        caption = page.locator(".equity-caption")
        caption.get_by_text(f"in-sample (blue) before {pd.Timestamp(split):%Y-%m-%d}, out-of-sample (orange) "
                            "from it on").wait_for()
        assert pd.Timestamp(split).strftime("%Y-%m-%d") >= OOS_START
        # the log-scale tab shades the same spans
        page.locator(".equity-scale").get_by_text("Log scale", exact=True).click()
        log_title = title + " (log scale)"
        page.wait_for_function(f"(() => {{ const s = ({SPANS_JS})({json.dumps(log_title)}); "
                               "return s !== null && s.length === 2 && s.every(x => x.visible); })()")
        log_spans = sorted(page.evaluate(f"({SPANS_JS})({json.dumps(log_title)})"), key=lambda s: s["left"])
        assert [(s["left"], s["right"]) for s in log_spans] == [(s["left"], s["right"]) for s in (is_span, oos_span)]
        # the metric table's IS and OOS columns are the stored segments
        for segment in ("is", "oos"):
            cell = page.locator(f".metric-groups td[data-metric='total_return'][data-segment='{segment}']")
            assert cell.inner_text().strip() == metric_text("total_return", seg[(segment, "total_return")])
        assert seg[("is", "total_return")] != seg[("oos", "total_return")]
        page.locator(".equity-scale").get_by_text("Linear", exact=True).click()
        page.wait_for_timeout(500)
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "backtest_is_oos.png"), full_page=False)
        assert errors == [], errors
    finally:
        page.close()
