"""The lake-health widget, the version banner and the Health page in a real browser.

One lake (GOOG daily sample bars and two SMA runs), one `panel serve dashboards/app.py
dashboards/health.py` in a subprocess with ``BACKLAKE_HEALTH_THRESHOLDS`` giving bars of the
symbol FRESH a 12 s threshold, one headless Chromium.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest

from backlake.analytics.health import bar_coverage
from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.lake import Lake, connect
from tests.conftest import stop_process
from tests.e2e.test_dashboard import (
    REPO,
    UI_TIMEOUT_MS,
    DemoLake,
    Page,
    _free_port,
    _wait_for_page,
    goog_bars,
    run_configs,
    sma_config,
)

SHOTS = Path("/tmp")
FRESH_THRESHOLD = 12  # seconds: the served app's threshold of bars/*/FRESH


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> DemoLake:
    from backlake.settings import Settings

    settings = Settings(lake_uri=str(tmp_path_factory.mktemp("health") / "lake"))
    lake = Lake(settings)
    ingest_bars(lake, goog_bars())
    return DemoLake(settings, run_configs(lake, [sma_config(10, 30), sma_config(20, 100)]))


@pytest.fixture(scope="module")
def base_url(demo_lake: DemoLake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKLAKE_")}
    env["BACKLAKE_LAKE_URI"] = demo_lake.settings.lake_uri
    env["BACKLAKE_DASHBOARD_AUTH"] = "none"
    env["BACKLAKE_HEALTH_THRESHOLDS"] = f'{{"overrides": {{"bars/*/FRESH": {FRESH_THRESHOLD}}}}}'
    log = tmp_path_factory.mktemp("panel") / "panel.log"
    apps = [str(REPO / "dashboards" / f"{name}.py") for name in ("app", "health")]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "panel", "serve", *apps, "--port", str(port), "--address", "127.0.0.1",
             "--allow-websocket-origin", f"127.0.0.1:{port}", "--index", "app"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_page(f"{base}/app", proc, log)
        yield base
    finally:
        stop_process(proc)


def open_page(browser, url: str) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1100})
    page.set_default_timeout(UI_TIMEOUT_MS)
    out = Page(page)
    page.on("console", lambda m: out.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: out.errors.append(f"page error: {e}"))
    page.goto(url)
    return out


@pytest.mark.browser
def test_badge_lists_every_source_all_ok(browser, base_url: str, demo_lake: DemoLake) -> None:
    dash = open_page(browser, f"{base_url}/app")
    page = dash.page
    page.locator(".runs-table .tabulator-row").first.wait_for()
    badge = page.locator(".health-badge button")
    badge.get_by_text("All OK").wait_for()
    assert not page.locator(".health-panel").is_visible()
    badge.click()
    panel = page.locator(".health-panel")
    panel.get_by_text("Lake health: OK").wait_for()
    sources = panel.locator("tr").evaluate_all("rows => rows.map(r => r.dataset.source)")
    assert {"runs", "bars", "equity", "trades", "metrics"} <= set(sources), sources
    goog = [s for s in sources if s.endswith("/GOOG")]
    assert len(goog) == 1 and goog[0].startswith("bars/"), sources
    assert panel.locator("tr.ok").count() == len(sources) and panel.locator("tr.stale, tr.error").count() == 0
    assert panel.locator("td.age").first.inner_text().endswith("ago")
    page.screenshot(path=str(SHOTS / "health_badge.png"))
    badge.click()
    page.wait_for_function("() => !document.querySelector('.health-panel') || "
                           "document.querySelector('.health-panel').offsetParent === null")
    assert dash.errors == []
    page.close()


@pytest.mark.browser
def test_badge_turns_stale_past_a_low_threshold(browser, base_url: str, demo_lake: DemoLake) -> None:
    """FRESH's bars have a 12 s threshold in the served app: OK just after their ingest, STALE
    (amber, the badge saying Issues) once they are older, without reloading the page."""
    ingest_bars(Lake(demo_lake.settings), synthetic_bars(("FRESH",), periods=30, seed=4))
    dash = open_page(browser, f"{base_url}/app")
    page = dash.page
    badge = page.locator(".health-badge button")
    badge.click()
    row = page.locator(".health-panel tr[data-source$='/FRESH']")
    row.wait_for()
    assert row.get_attribute("class") == "ok", row.inner_text()  # just ingested
    badge.get_by_text("All OK").wait_for()
    # the badge auto-refreshes every 10 s and the shared check re-reads every 10 s
    page.locator(".health-panel tr.stale[data-source$='/FRESH']").wait_for(timeout=(FRESH_THRESHOLD + 30) * 1000)
    badge.get_by_text("Issues: 1 stale").wait_for()
    assert "btn-warning" in (badge.get_attribute("class") or "")
    colour = page.locator(".health-panel tr.stale td.ico").evaluate("e => getComputedStyle(e).color")
    assert colour == "rgb(183, 121, 31)", colour  # amber
    assert "threshold 12s" in row.inner_text()
    page.screenshot(path=str(SHOTS / "health_badge_stale.png"))
    assert dash.errors == []
    page.close()


@pytest.mark.browser
def test_banner_when_the_runs_table_moves_on(browser, base_url: str, demo_lake: DemoLake) -> None:
    dash = open_page(browser, f"{base_url}/app")
    page = dash.page
    page.locator(".runs-table .tabulator-row").first.wait_for()
    lake = Lake(demo_lake.settings)
    shown = lake.version("runs")
    assert not page.locator(".version-banner").is_visible()
    (new_run,) = run_configs(lake, [sma_config(7, 40)])
    latest = lake.version("runs")
    banner = page.locator(".version-banner")
    banner.get_by_text(f"runs v{shown} shown, v{latest} in the lake: {latest - shown} commit").wait_for(timeout=25_000)
    assert page.locator(".runs-table .tabulator-row", has_text=new_run).count() == 0
    page.screenshot(path=str(SHOTS / "health_banner.png"))
    page.get_by_role("button", name="Load latest").click()
    page.locator(".runs-table .tabulator-row", has_text=new_run).wait_for()
    page.wait_for_function("() => document.querySelector('.version-banner') === null || "
                           "document.querySelector('.version-banner').offsetParent === null")
    assert dash.errors == []
    page.close()


@pytest.mark.browser
def test_health_page_shows_sources_coverage_and_thresholds(browser, base_url: str, demo_lake: DemoLake) -> None:
    dash = open_page(browser, f"{base_url}/health")
    page = dash.page
    page.locator(".health-sources .tabulator-row").first.wait_for()
    page.locator(".health-coverage .tabulator-row", has_text="GOOG").wait_for()
    cov = {r["symbol"]: r for r in bar_coverage(Lake(demo_lake.settings)).iter_rows(named=True)}
    with connect(demo_lake.settings) as con:  # the numbers `backlake sql` gives
        n, first, last = con.sql("SELECT count(*), min(ts), max(ts) FROM bars WHERE symbol = 'GOOG'").fetchone()
    assert cov["GOOG"]["bars"] == n
    row = page.locator(".health-coverage .tabulator-row", has_text="GOOG").inner_text()
    assert f"{n:,}" in row, row
    assert first.strftime("%Y-%m-%d") in row and last.strftime("%Y-%m-%d") in row, row
    assert str(cov["GOOG"]["gaps"]) in row.split()
    titles = page.locator(".health-coverage .tabulator-col-title").all_inner_texts()
    for title in ("Symbol", "Bars", "First bar", "Last bar", "Gaps"):
        assert title in titles, titles
    sources = page.locator(".health-sources .tabulator-row").all_inner_texts()
    assert any("runs" in s for s in sources) and any("/GOOG" in s for s in sources), sources
    thresholds = page.locator(".health-thresholds")
    thresholds.get_by_text("15m (900 s)").first.wait_for()
    thresholds.get_by_text("bars/*/FRESH").wait_for()
    page.locator(".health-badge button").wait_for()  # the header widget is on this page too
    assert page.locator(".bl-nav-health.active").count() == 1
    page.screenshot(path=str(SHOTS / "health_page.png"), full_page=True)
    thresholds.scroll_into_view_if_needed()
    page.screenshot(path=str(SHOTS / "health_page_thresholds.png"))
    cards = page.locator(".health-cards .bl-cards").inner_text()
    parts = cards.split()
    counts = {parts[i + 1].upper(): int(parts[i]) for i in range(0, len(parts) - 1, 2)}
    assert counts["SOURCES"] == len(sources) == counts["OK"] + counts["STALE"] + counts["ERROR"], counts
    assert dash.errors == []
    page.close()


def test_coverage_frame_matches_sql(demo_lake: DemoLake) -> None:
    """No browser: the page's coverage numbers are the lake's."""
    cov = bar_coverage(Lake(demo_lake.settings)).filter(pl.col("symbol") == "GOOG").row(0, named=True)
    with connect(demo_lake.settings) as con:
        n = con.sql("SELECT count(*) FROM bars WHERE symbol = 'GOOG'").fetchone()[0]
    assert cov["bars"] == n and cov["timeframe"] == "1d"
