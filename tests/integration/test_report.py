"""Tear-sheet reports: `backlake report RUN --format html` writes one self-contained file that
renders in Chromium from file:// with every http(s) request refused (no console errors, the
charts drawn); the `report` flow stores the day's runs once (re-running adds nothing) in
``_reports/`` beside a local lake and under the S3 prefix of a moto lake."""

from __future__ import annotations

from pathlib import Path

import pytest

from backlake.data.ingest import ingest_bars
from backlake.lake import Lake, connect
from backlake.settings import Settings
from flows.cli.entry import main
from tests.e2e.test_dashboard import goog_bars, run_configs, sma_config

SHOTS = Path("/tmp")


def make_runs(settings: Settings, *pairs: tuple[int, int]) -> list[str]:
    lake = Lake(settings)
    if not lake.exists("bars"):
        ingest_bars(lake, goog_bars())
    return run_configs(lake, [sma_config(f, s) for f, s in pairs])


def open_offline(browser, path: Path):
    """The file in a page whose every http(s) request is aborted; (page, errors, requests)."""
    page = browser.new_page(viewport={"width": 1400, "height": 1000})
    errors: list[str] = []
    requests: list[str] = []
    page.on("console", lambda m: errors.append(m.text) if m.type == "error" else None)
    page.on("pageerror", lambda e: errors.append(str(e)))
    page.route("http://**/*", lambda r: (requests.append(r.request.url), r.abort()))
    page.route("https://**/*", lambda r: (requests.append(r.request.url), r.abort()))
    page.goto(path.as_uri())
    return page, errors, requests


@pytest.mark.browser
def test_cli_report_opens_offline_with_its_charts(local_settings: Settings, tmp_path: Path, browser, capsys) -> None:
    (run_id,) = make_runs(local_settings, (10, 30))
    out = tmp_path / "tear-sheet.html"
    assert main(["report", run_id, "--format", "html", "--output", str(out)]) == 0
    assert f"wrote {out}" in capsys.readouterr().out
    text = out.read_text(encoding="utf-8")
    assert "cdn.holoviz.org/panel" not in text  # every Panel stylesheet inlined
    assert "<script src=" not in text.replace("<script src=\"data:", "")
    page, errors, requests = open_offline(browser, out)
    head = page.locator(".bl-report-head")
    head.get_by_text("sma_crossover on GOOG — backtest").wait_for(timeout=30_000)
    assert run_id in head.inner_text()
    # the detail view's charts are drawn onto canvases (bokeh), not just present in the JSON
    page.wait_for_function(
        "() => [...Bokeh.index.query(v => v.model.type === 'Figure')]"
        ".filter(v => v.has_finished() && v.canvas_view.primary.canvas.width > 0).length >= 2",
        timeout=30_000)
    titles = page.evaluate("() => [...Bokeh.index.query(v => v.model.type === 'Figure')]"
                           ".map(v => v.model.title ? v.model.title.text : '')")
    assert any("sma_crossover on GOOG" in t for t in titles), titles
    assert not any(run_id in t for t in titles), titles  # charts name strategy and symbols, not hashes
    # the numbers are the lake's: total return as `backlake sql` gives it
    with connect(local_settings) as con:
        (total,) = con.sql(f"SELECT total_return FROM runs WHERE run_id = '{run_id}'").fetchone()
    from dashboards.fmt import metric_text

    page.get_by_text(metric_text("total_return", total), exact=True).first.wait_for()  # pierces shadow roots
    page.screenshot(path=str(SHOTS / "report_offline.png"), full_page=True)
    # print to PDF (the browser's print path) works and gives pages
    pdf = page.pdf(landscape=True, print_background=True)
    assert pdf[:4] == b"%PDF" and len(pdf) > 20_000
    assert errors == [], errors
    assert requests == [], requests  # nothing fetched from the network
    page.close()


def test_cli_report_bad_input_is_one_line(local_settings: Settings, tmp_path: Path, capsys) -> None:
    (run_id,) = make_runs(local_settings, (10, 30))
    assert main(["report", "0000000000000000", "--output", str(tmp_path / "x.html")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: run '0000000000000000' is not in the lake") and "\n" not in err
    assert main(["report", "../../etc/passwd", "--output", str(tmp_path / "x.html")]) == 2
    assert "is not a run id" in capsys.readouterr().err
    assert main(["report", run_id, "--output", str(tmp_path / "nodir" / "x.html")]) == 2
    assert "does not exist; create it first" in capsys.readouterr().err
    assert main(["report", run_id, "--output", str(tmp_path / "x.pdf")]) == 2
    assert "ending in .html" in capsys.readouterr().err
    assert not (tmp_path / "x.html").exists()
    (tmp_path / "a-file").write_text("")
    assert main(["report", run_id, "--output", str(tmp_path / "a-file" / "x.html")]) == 2
    assert "is a file, not a directory" in capsys.readouterr().err
    assert main(["report", run_id, "--output", "/proc/backlake-report.html"]) == 2  # a place that takes no file
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: --output '/proc/backlake-report.html' cannot be written") and "\n" not in err


def _stored(settings: Settings) -> set[str]:
    from dashboards.report import ReportStore

    return ReportStore(settings).names()


@pytest.mark.parametrize("where", ["local", pytest.param("s3", marks=pytest.mark.s3)])
def test_report_flow_renders_the_days_runs_once(where: str, request: pytest.FixtureRequest, prefect_harness) -> None:
    settings: Settings = request.getfixturevalue("local_settings" if where == "local" else "s3_settings")
    from dashboards.report import ReportStore
    from flows.report import report_flow

    first = make_runs(settings, (10, 30), (20, 100))
    out = report_flow()
    assert sorted(out["written"]) == sorted(first) and out["failed"] == {} and out["skipped"] == 0
    assert _stored(settings) == set(first)
    if where == "local":
        assert (Path(settings.root) / "_reports" / f"{first[0]}.html").is_file()
    else:
        import boto3

        keys = [o["Key"] for o in boto3.client("s3", endpoint_url=settings.s3_endpoint_url, region_name="us-east-1")
                .list_objects_v2(Bucket=settings.bucket, Prefix="research/_reports/")["Contents"]]
        want = [f"research/_reports/{r}.html" for r in first] + ["research/_reports/_state.json"]
        assert sorted(keys) == sorted(want)
    html = ReportStore(settings).read(first[0])
    assert html is not None and b"sma_crossover on GOOG" in html and first[0].encode() in html
    # again: nothing new
    again = report_flow()
    assert again["written"] == [] and again["failed"] == {}
    # a new run: only it is rendered
    (new,) = make_runs(settings, (5, 50))
    third = report_flow()
    assert third["written"] == [new], third
    assert _stored(settings) == {*first, new}
    assert "last_run_at" in ReportStore(settings).state()
