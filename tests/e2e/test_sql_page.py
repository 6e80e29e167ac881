"""The SQL page (and the report page) in a real browser: a typed query gives the rows
`backlake sql` gives, the CSV download is byte for byte `backlake sql --format csv`, a refused
write and a query over the time limit are one inline error line, the row limit cuts and says
so, examples fill the editor; /report?run=<id> renders a run (or its stored report).

One lake (GOOG daily sample bars, two SMA runs), one `panel serve dashboards/sql.py
dashboards/report.py` subprocess, one headless Chromium.
"""

from __future__ import annotations

import csv
import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from backlake.data.ingest import ingest_bars
from backlake.lake import Lake
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
BACKLAKE = Path(sys.executable).parent / "backlake"


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> DemoLake:
    from backlake.settings import Settings

    settings = Settings(lake_uri=str(tmp_path_factory.mktemp("sqlpage") / "lake"))
    lake = Lake(settings)
    ingest_bars(lake, goog_bars())
    return DemoLake(settings, run_configs(lake, [sma_config(10, 30), sma_config(20, 100)]))


def lake_env(demo_lake: DemoLake) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("BACKLAKE_")}
    env["BACKLAKE_LAKE_URI"] = demo_lake.settings.lake_uri
    return env


def cli_sql(demo_lake: DemoLake, query: str, fmt: str = "csv") -> subprocess.CompletedProcess:
    """`backlake sql` itself, in its own process."""
    return subprocess.run([str(BACKLAKE), "sql", query, "--format", fmt], env=lake_env(demo_lake),
                          capture_output=True, text=True, timeout=120, cwd=REPO)


@pytest.fixture(scope="module")
def base_url(demo_lake: DemoLake, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    port = _free_port()
    env = lake_env(demo_lake)
    env["BACKLAKE_DASHBOARD_AUTH"] = "none"
    log = tmp_path_factory.mktemp("panel") / "panel.log"
    apps = [str(REPO / "dashboards" / f"{name}.py") for name in ("sql", "report")]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "panel", "serve", *apps, "--port", str(port), "--address", "127.0.0.1",
             "--allow-websocket-origin", f"127.0.0.1:{port}"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_page(f"{base}/sql", proc, log)
        yield base
    finally:
        stop_process(proc)


def open_page(browser, url: str) -> Page:
    page = browser.new_page(viewport={"width": 1400, "height": 1100}, accept_downloads=True)
    page.set_default_timeout(UI_TIMEOUT_MS)
    out = Page(page)
    page.on("console", lambda m: out.errors.append(f"console: {m.text}") if m.type == "error" else None)
    page.on("pageerror", lambda e: out.errors.append(f"page error: {e}"))
    page.goto(url)
    return out


def type_query(page, query: str) -> None:
    """Replace the editor's text by ``query``, typed as a user would."""
    editor = page.locator(".sql-editor .ace_content")
    editor.click()
    page.keyboard.press("Control+A")
    page.keyboard.press("Delete")
    page.keyboard.insert_text(query)
    page.locator(".sql-editor .ace_text-input").blur()  # the editor sends its text on blur too


def run_query(page) -> None:
    page.locator(".sql-run button").click()
    page.wait_for_function("() => true")  # let the click reach the server


def result_rows(page) -> list[list[str]]:
    rows = page.locator(".sql-results .tabulator-row")
    rows.first.wait_for()
    # the cells of the result's columns (Tabulator adds a hidden index cell and a filler)
    return [r.evaluate("r => [...r.querySelectorAll('.tabulator-cell')]"
                       ".filter(c => !['_index', 'null', null].includes(c.getAttribute('tabulator-field')))"
                       ".map(c => c.innerText)") for r in rows.all()]


@pytest.mark.browser
def test_query_matches_backlake_sql_and_downloads_its_csv(browser, base_url: str, demo_lake: DemoLake) -> None:
    query = ("SELECT run_id, strategy, n_trades, total_return, created_at FROM runs "
             "WHERE status = 'completed' ORDER BY run_id")
    cli = cli_sql(demo_lake, query)
    assert cli.returncode == 0, cli.stderr
    expected = list(csv.reader(io.StringIO(cli.stdout)))
    assert len(expected) == 1 + len(demo_lake.run_ids)

    dash = open_page(browser, f"{base_url}/sql")
    page = dash.page
    page.locator(".sql-tables details[data-table='runs']").wait_for()
    type_query(page, query)
    run_query(page)
    page.locator(".sql-status", has_text=f"{len(demo_lake.run_ids)} rows · 5 columns").wait_for()
    shown = result_rows(page)
    assert [r[:3] for r in shown] == [r[:3] for r in expected[1:]], shown
    titles = [t.strip() for t in page.locator(".sql-results .tabulator-col-title").all_inner_texts()]
    assert [t for t in titles if t] == expected[0], titles
    assert not page.locator(".sql-error").is_visible()
    page.screenshot(path=str(SHOTS / "sql_page.png"), full_page=True)

    with page.expect_download() as info:
        page.locator(".sql-download button").click()
    download = info.value
    assert download.suggested_filename == "query.csv"
    text = Path(download.path()).read_text()
    assert text == cli.stdout, (text, cli.stdout)  # byte for byte what `backlake sql --format csv` writes
    assert dash.errors == []
    page.close()


@pytest.mark.browser
def test_refused_write_is_one_inline_error(browser, base_url: str, demo_lake: DemoLake) -> None:
    target = Path(demo_lake.settings.lake_uri) / "stolen.csv"
    dash = open_page(browser, f"{base_url}/sql")
    page = dash.page
    page.locator(".sql-tables details[data-table='runs']").wait_for()
    type_query(page, f"COPY runs TO '{target}'")
    run_query(page)
    error = page.locator(".sql-error")
    error.wait_for()
    text = error.inner_text()
    assert text.startswith("SQL error: COPY statements are not allowed") and "\n" not in text, text
    box = error.bounding_box()
    assert box is not None and box["height"] < 45, box  # one line
    assert not page.locator(".sql-results").is_visible()
    assert not target.exists()
    # the CLI refuses the same query with the same message
    cli = cli_sql(demo_lake, f"COPY runs TO '{target}'")
    assert cli.returncode == 2 and text.removeprefix("SQL error: ") in cli.stderr, cli.stderr
    page.screenshot(path=str(SHOTS / "sql_page_refused.png"))
    # a good query afterwards clears the error
    type_query(page, "SELECT count(*) AS n FROM bars")
    run_query(page)
    page.locator(".sql-status", has_text="1 row · 1 column").wait_for()
    assert not error.is_visible()
    assert dash.errors == []
    page.close()


@pytest.mark.browser
def test_row_limit_time_limit_and_examples(browser, base_url: str, demo_lake: DemoLake) -> None:
    dash = open_page(browser, f"{base_url}/sql")
    page = dash.page
    page.locator(".sql-tables details[data-table='runs']").wait_for()
    # row limit: 1,000 of 5,000 rows, said in the status line; paged 20 a page
    type_query(page, "SELECT range AS n FROM range(5000)")
    run_query(page)
    page.locator(".sql-status", has_text="showing the first 1,000 rows (the row limit)").wait_for()
    assert page.locator(".sql-results .tabulator-row").count() == 20
    assert page.locator(".sql-results .tabulator-page[data-page='last']").count() == 1
    # time limit: a query of minutes stops at 5 s with one error line
    page.locator(".sql-timeout select").select_option("5")
    type_query(page, "SELECT sum(a.range * b.range) FROM range(300000) a, range(300000) b")
    run_query(page)
    error = page.locator(".sql-error")
    error.wait_for(timeout=30_000)
    assert "stopped after 5 s (the time limit)" in error.inner_text()
    # an example: a run's trades, with a run of the lake filled in; as many rows as the CLI gives
    page.locator(".sql-examples select").select_option("A run's trades")
    page.wait_for_function("() => true")
    page.locator(".sql-editor .ace_content", has_text="FROM trades").wait_for()
    editor_text = page.locator(".sql-editor .ace_content").inner_text()
    run_id = next(r for r in demo_lake.run_ids if r in editor_text)
    run_query(page)
    n = int(cli_sql(demo_lake, f"SELECT count(*) FROM trades WHERE run_id = '{run_id}'").stdout.splitlines()[1])
    page.locator(".sql-status", has_text=f"{n} rows").wait_for()
    assert not error.is_visible()
    # the table list: every column of runs, and the time-travel macro
    runs = page.locator(".sql-tables details[data-table='runs']")
    runs.locator("summary").click()
    assert runs.get_by_text("runs_at(N)").is_visible()
    assert runs.locator("tr").count() == len(Lake(demo_lake.settings).read("runs").columns)
    page.screenshot(path=str(SHOTS / "sql_page_examples.png"), full_page=True)
    assert dash.errors == []
    page.close()


@pytest.mark.browser
def test_report_page_renders_a_run_and_then_its_stored_report(browser, base_url: str, demo_lake: DemoLake) -> None:
    from dashboards.report import ReportStore, report_html
    from dashboards.store import LakeStore

    run_id = demo_lake.run_ids[0]
    dash = open_page(browser, f"{base_url}/report?run={run_id}")
    page = dash.page
    page.get_by_text("Rendered now (no stored report yet").wait_for()
    page.locator(".bl-report-head").get_by_text("sma_crossover on GOOG — backtest").wait_for()
    page.screenshot(path=str(SHOTS / "report_page_live.png"))
    page.close()
    store = LakeStore(demo_lake.settings)
    try:
        ReportStore(demo_lake.settings).write(run_id, report_html(store, run_id))
    finally:
        store.close()
    dash2 = open_page(browser, f"{base_url}/report?run={run_id}")
    page = dash2.page
    page.get_by_text(f"Stored report {demo_lake.settings.root}/_reports/{run_id}.html").wait_for()
    frame = page.frame_locator("iframe.report-frame")
    frame.locator(".bl-report-head").get_by_text("sma_crossover on GOOG — backtest").wait_for()
    with page.expect_download() as info:
        page.locator(".report-download button").click()
    assert info.value.suggested_filename == f"report-{run_id}.html"
    assert b"sma_crossover on GOOG" in Path(info.value.path()).read_bytes()
    page.screenshot(path=str(SHOTS / "report_page_stored.png"))
    # an unknown run: one warning, no traceback
    missing = open_page(browser, f"{base_url}/report?run=0000000000000000")
    missing.page.locator(".report-missing").get_by_text("is not in the lake").wait_for()
    missing.page.close()
    assert dash.errors == [] and dash2.errors == [] and missing.errors == []
    page.close()


@pytest.mark.browser
def test_sql_and_report_pages_show_nothing_without_a_sign_in(browser, demo_lake: DemoLake,
                                                              tmp_path: Path) -> None:
    """Served with sign-in on (BACKLAKE_DASHBOARD_AUTH=password) but reached without a login:
    the pages say so and show no query box and no report, stored or not."""
    from dashboards.report import ReportStore

    run_id = demo_lake.run_ids[0]
    assert ReportStore(demo_lake.settings).read(run_id) is not None  # stored by the test above
    port = _free_port()
    env = lake_env(demo_lake)
    env["BACKLAKE_DASHBOARD_AUTH"] = "password"
    env["HOME"] = str(tmp_path)  # no users file of the machine's
    log = tmp_path / "panel.log"
    apps = [str(REPO / "dashboards" / f"{name}.py") for name in ("sql", "report")]
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            [sys.executable, "-m", "panel", "serve", *apps, "--port", str(port), "--address", "127.0.0.1",
             "--allow-websocket-origin", f"127.0.0.1:{port}"],
            cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT,
        )
    try:
        base = f"http://127.0.0.1:{port}"
        _wait_for_page(f"{base}/sql", proc, log)
        for path in (f"/report?run={run_id}", "/sql"):
            dash = open_page(browser, base + path)
            page = dash.page
            page.locator(".access-denied").wait_for()
            assert page.locator(".bl-report-head, iframe.report-frame, .sql-editor, .report-download").count() == 0
            assert run_id not in page.content()
            page.close()
    finally:
        stop_process(proc)
