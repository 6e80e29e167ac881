"""A running run's progress on the runs page, in a real browser.

The lake: GOOG daily sample bars and one completed SMA backtest; then, through the run
protocol, a sweep claimed by an attempt that reported 3 of 8 chunks (``run_progress`` rows written
by the lake listener, as the flows write them) and a run claimed with no report yet. A live
flow is hard to freeze mid-run, so the running state is made here the way a flow makes it.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backlake import progress
from backlake.data.ingest import ingest_bars
from backlake.lake import Lake, connect
from backlake.runs.events import Attempt, claim
from backlake.runs.progress import LakeProgress
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

SHOTS = Path("/tmp/run_progress")
RUNNING = "a1b2c3d4e5f60718"
QUIET = "0f1e2d3c4b5a6978"


@dataclass
class ProgressLake:
    settings: Settings
    completed: str
    attempt: str


@pytest.fixture(scope="module")
def progress_lake(tmp_path_factory: pytest.TempPathFactory) -> ProgressLake:
    settings = Settings(lake_uri=str(tmp_path_factory.mktemp("progress") / "lake"))
    lake = Lake(settings)
    ingest_bars(lake, goog_bars())
    (done,) = run_configs_as(lake, [sma_config(10, 30)], "e2e")
    attempt = Attempt.new(tag="prefect flow run e2e-progress")
    claim(lake, [RUNNING, QUIET], attempt)
    writer = LakeProgress(lake, RUNNING, attempt.id, job=f"sweep {RUNNING[:12]}", min_interval=0.0)
    with progress.listening(writer):
        for k in range(4):  # 0/8 .. 3/8, as a sweep flow reports its chunks
            progress.report(f"sweep {RUNNING[:12]}", k, 8, "chunks")
    writer.close()
    return ProgressLake(settings, done, attempt.id)


@pytest.fixture(scope="module")
def server(progress_lake: ProgressLake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    with serve_app(APP, progress_lake.settings.lake_uri, tmp_path_factory.mktemp("panel"), index="app") as url:
        yield url


def test_running_run_shows_its_progress_in_the_list_and_its_header(browser, server: str,
                                                                     progress_lake: ProgressLake) -> None:
    # what the page must agree with: the latest run_progress row of the run, by SQL
    with connect(progress_lake.settings) as con:
        done, total, unit, attempt = con.execute(
            "SELECT arg_max(done, ts), arg_max(total, ts), arg_max(unit, ts), arg_max(attempt, ts) "
            "FROM run_progress WHERE run_id = ?", [RUNNING]).fetchone()
    assert (done, total, unit, attempt) == (3, 8, "chunks", progress_lake.attempt)

    page = browser.new_page(viewport={"width": 1500, "height": 1300})
    page.set_default_timeout(UI_TIMEOUT_MS)
    out = Page(page)
    page.on("console", lambda m: out.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: out.errors.append(f"page error: {e}"))
    try:
        page.goto(server)
        table = page.locator(".runs-table")
        row = table.locator(".tabulator-row", has_text=RUNNING)
        row.wait_for()
        row.locator(".bl-progress-text", has_text="3/8 chunks (38 %)").wait_for()
        assert "ago" in row.locator(".bl-progress-text").inner_text()
        bar = row.locator(".bl-progress[role=progressbar]")
        assert bar.get_attribute("aria-valuenow") == "3" and bar.get_attribute("aria-valuemax") == "8"
        fill = row.locator(".bl-progress-bar").evaluate("e => e.getBoundingClientRect().width / "
                                                        "e.parentElement.getBoundingClientRect().width")
        assert abs(fill - 3 / 8) < 0.03
        assert row.locator(".bl-status-running").count() == 1
        # a running run with no report yet: no bar, its event's message instead
        quiet = table.locator(".tabulator-row", has_text=QUIET)
        assert quiet.locator(".bl-progress").count() == 0
        assert "prefect flow run e2e-progress" in quiet.locator(".bl-status-note").inner_text()
        # a completed run: no bar
        assert table.locator(".tabulator-row", has_text=progress_lake.completed).locator(".bl-progress").count() == 0
        SHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SHOTS / "runs_list.png"))

        row.click()
        header = page.locator(".run-header")
        header.get_by_text("3/8 chunks (38 %)").wait_for()
        assert header.locator(".bl-progress[role=progressbar]").get_attribute("aria-valuenow") == "3"
        page.locator(".run-running").get_by_text("3/8 chunks (38 %)").wait_for()
        page.screenshot(path=str(SHOTS / "run_detail.png"))
        assert out.errors == [], out.errors
    finally:
        page.close()
