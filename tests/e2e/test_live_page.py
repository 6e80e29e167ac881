"""The live vs backtest page (/live) in a real browser, on a lake built like the demo: SP500
sample bars, the demo's live reference backtest, its worse-fills feed ingested and linked, and
the alert the live monitor records. Its figures are checked against SQL on the same lake."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import polars as pl
import pytest

from backlake.analytics.live import alert_row, ingest_live, load_overlay, record_alert, seed_live_feed
from backlake.data.ingest import ingest_bars
from backlake.data.samples import load_samples
from backlake.lake import Lake, connect
from backlake.settings import Settings
from flows.demo import LIVE_CONFIG, LIVE_STRATEGY
from tests.conftest import stop_process
from tests.e2e.test_dashboard import (
    DRAWN_FIGURES_JS,
    UI_TIMEOUT_MS,
    _free_port,
    _wait_for_page,
    run_configs,
)

REPO = Path(__file__).resolve().parents[2]
PAGE = REPO / "dashboards" / "live.py"
SCREENSHOT = Path("/tmp/live_page.png")
CUM_TITLE = "Cumulative return: live vs backtest (shaded: divergence)"

#: the tracking error straight from the lake's tables: live returns minus the backtest's (0 on a
#: live date without a bar), on the live dates within the backtest's period
TE_SQL = """
WITH bt AS (SELECT CAST(ts AS DATE) AS date, ret FROM equity WHERE run_id = ?),
     lv AS (SELECT date, ret FROM live_pnl WHERE strategy = ? AND ret IS NOT NULL
            AND date BETWEEN (SELECT min(date) FROM bt) AND (SELECT max(date) FROM bt))
SELECT stddev_samp(lv.ret - coalesce(bt.ret, 0)) * sqrt(252), count(*),
       abs(exp(sum(ln(1 + lv.ret))) - exp(sum(ln(1 + coalesce(bt.ret, 0)))))
FROM lv LEFT JOIN bt USING (date)
"""


@dataclass
class LiveLake:
    settings: Settings
    run_id: str


@pytest.fixture(scope="module")
def live_lake(tmp_path_factory: pytest.TempPathFactory) -> LiveLake:
    from backlake.config import BacktestConfig

    settings = Settings(lake_uri=str(tmp_path_factory.mktemp("live") / "lake"))
    lake = Lake(settings)
    ingest_bars(lake, load_samples(["SP500"]))
    (run_id,) = run_configs(lake, [BacktestConfig.model_validate(LIVE_CONFIG)])
    seed_live_feed(lake, LIVE_CONFIG, run_id, LIVE_STRATEGY, user="e2e")
    with connect(lake=lake) as con:
        record_alert(lake, alert_row(load_overlay(con, LIVE_STRATEGY)))
    # an unlinked strategy, for the link form: it traded exactly like the backtest
    same = (lake.read("equity", where={"run_id": run_id}).sort("ts")
            .select(pl.col("ts").dt.date().alias("date"), pl.col("equity").alias("nav")))
    ingest_live(lake, same, "shadow")
    return LiveLake(settings, run_id)


@pytest.fixture(scope="module")
def live_url(live_lake: LiveLake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKLAKE_")}
    env.update(BACKLAKE_LAKE_URI=live_lake.settings.lake_uri, BACKLAKE_DASHBOARD_AUTH="none", BACKLAKE_USER="e2e")
    log = tmp_path_factory.mktemp("panel") / "panel.log"
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "panel", "serve", str(PAGE), "--port", str(port), "--address", "127.0.0.1",
             "--allow-websocket-origin", f"127.0.0.1:{port}"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}/live"
        _wait_for_page(url, proc, log)
        yield url
    finally:
        stop_process(proc)


@dataclass
class Page:
    page: object
    errors: list[str] = field(default_factory=list)


@pytest.fixture
def live(browser, live_url: str) -> Iterator[Page]:
    page = browser.new_page(viewport={"width": 1400, "height": 1900})
    page.set_default_timeout(UI_TIMEOUT_MS)
    out = Page(page)
    page.on("console", lambda m: out.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: out.errors.append(f"page error: {e}"))
    page.goto(live_url)
    page.locator(".alert-level").first.wait_for()
    try:
        yield out
    finally:
        page.close()


def figure(page, key: str) -> str:
    return page.locator(f".bl-card[data-figure='{key}']").first.get_attribute("data-value")


def wait_level(page, pattern: str) -> None:
    """Wait until the badge (in Panel's shadow DOM, which locators pierce) shows a level matching."""
    page.locator(".alert-level", has_text=re.compile(f"^({pattern})$")).first.wait_for()


def set_number(page, css: str, value: str) -> None:
    box = page.locator(f".{css} input").first
    box.fill(value)
    box.press("Enter")


@pytest.mark.browser
def test_live_page_shows_the_demo_feed_alert_and_figures(live: Page, live_lake: LiveLake) -> None:
    page = live.page
    level = page.locator(".alert-level").first
    assert level.inner_text() in ("YELLOW", "RED")
    assert "tracking error above 5.00%" in page.locator(".bl-alert .why").first.inner_text()
    page.wait_for_function(f"() => ({DRAWN_FIGURES_JS})('{CUM_TITLE}') === 1")
    assert page.evaluate(DRAWN_FIGURES_JS, "Rolling tracking error (dashed: threshold 5.00%)") == 1

    with connect(live_lake.settings) as con:
        te, n, div = con.execute(TE_SQL, [live_lake.run_id, LIVE_STRATEGY]).fetchone()
    assert n == 250
    assert math.isclose(float(figure(page, "tracking_error")), te, rel_tol=1e-9)
    assert math.isclose(float(figure(page, "divergence")), div, rel_tol=1e-6)
    assert figure(page, "n_aligned") == "250"
    assert f"backtest {live_lake.run_id} (net of costs)" in page.locator(".overlay-subtitle").first.inner_text()

    rows = page.locator(".alerts-table .tabulator-row")
    rows.first.wait_for()
    text = rows.first.inner_text()
    assert rows.count() == 1 and "2018-12-31" in text and level.inner_text() in text
    page.screenshot(path=str(SCREENSHOT), full_page=True)
    assert SCREENSHOT.stat().st_size > 50_000
    assert not live.errors, live.errors


@pytest.mark.browser
def test_thresholds_are_overridable_from_the_page(live: Page) -> None:
    page = live.page
    level = page.locator(".alert-level").first
    set_number(page, "te-threshold", "0.5")
    wait_level(page, "NONE")
    assert "within thresholds" in page.locator(".bl-alert .why").first.inner_text()
    set_number(page, "divergence-threshold", "0.01")
    wait_level(page, "RED")
    assert "cumulative divergence" in page.locator(".bl-alert .why").first.inner_text()
    set_number(page, "rolling-window", "10")
    page.locator(".bl-card[data-figure='rolling_te']", has_text="Rolling TE (10d)").first.wait_for()
    page.locator(".reset-thresholds button").first.click()
    wait_level(page, "YELLOW|RED")
    assert level.inner_text() in ("YELLOW", "RED")
    assert not live.errors, live.errors


@pytest.mark.browser
def test_linking_a_strategy_from_the_page(live: Page, live_lake: LiveLake) -> None:
    page = live.page
    page.locator(".link-strategy select").first.select_option("shadow")
    label = page.locator(".link-run select option", has_text=live_lake.run_id).first.text_content()
    assert label.startswith(f"{live_lake.run_id} · backtest · sma_crossover · SP500")
    page.locator(".link-run select").first.select_option(label=label)
    page.locator(".link-button button").first.click()
    page.locator(".link-note").get_by_text("linked").first.wait_for()
    links = Lake(live_lake.settings).read("live_links").filter(pl.col("strategy") == "shadow")
    assert links["run_id"].to_list() == [live_lake.run_id] and links["linked_by"].to_list() == ["e2e"]
    page.locator(".strategy-picker select").first.select_option(label=f"shadow  →  {live_lake.run_id}")
    wait_level(page, "NONE")
    assert float(figure(page, "tracking_error")) == pytest.approx(0.0, abs=1e-12)
    assert not live.errors, live.errors


def test_viewers_cannot_link(live_lake: LiveLake) -> None:
    """The gate, without a browser: a viewer's link button is disabled with the reason, and the
    action itself refuses too."""
    from backlake import auth
    from dashboards.identity import Identity
    from dashboards.live import LivePage, LiveStore

    store = LiveStore(live_lake.settings)
    try:
        viewer = Identity(auth.User("vera", "viewer"), "none")  # mode none: .current() keeps the role given
        page = LivePage(store, viewer)
        assert page.link_button.disabled and "researcher or admin" in page.link_note.object
        page.link_strategy.value = "shadow"
        page._link(None)
        assert "Not allowed" in page.link_note.object
    finally:
        store.close()


def test_page_on_an_empty_lake_and_an_unlinked_strategy(tmp_path: Path) -> None:
    """What the page says before any live P&L, and for a strategy not linked yet (no browser)."""
    from backlake import auth
    from dashboards.identity import Identity
    from dashboards.live import LivePage, LiveStore

    settings = Settings(lake_uri=str(tmp_path / "lake"))
    admin = Identity(auth.User("ada", "admin"), "none")
    store = LiveStore(settings)
    try:
        page = LivePage(store, admin)
        (view,) = page.body.objects
        assert "live-empty" in view.css_classes and "backlake live ingest" in view.object
        ingest_live(Lake(settings), pl.DataFrame({"date": ["2024-01-02", "2024-01-03"], "nav": [1.0, 1.01]}), "new")
        page.reload()
        assert page.strategy.value == "new"
        view = page.body.objects[0]
        assert "not linked" in view.objects[0].object and not page.link_button.disabled
    finally:
        store.close()
