"""Lake health on real lakes (a local directory and the moto S3 server): the sources of a lake,
statuses against thresholds, the TTL cache, version changes, bar coverage, ``backlake health``
exit codes and the ``freshness`` flow (records, alerts, webhook)."""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import polars as pl
import pytest

from backlake.analytics.health import VersionWatcher, bar_coverage, lake_monitor, overall_status
from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.lake import Lake
from backlake.settings import HealthThresholds, Settings


def live_rows(strategy: str, days: int = 3) -> pl.DataFrame:
    return pl.DataFrame({
        "strategy": [strategy] * days,
        "date": [dt.date(2026, 1, 5) + dt.timedelta(days=i) for i in range(days)],
        "daily_pnl": [10.0 * (i + 1) for i in range(days)],
        "ingested_at": [dt.datetime.now(dt.UTC)] * days,
    }).with_columns(pl.col("ingested_at").dt.cast_time_unit("us"))


@pytest.fixture
def lake(lake_settings: Settings) -> Lake:
    lake = Lake(lake_settings)
    ingest_bars(lake, synthetic_bars(("AAA", "BBB"), periods=60, seed=1))
    lake.append("live_pnl", live_rows("alpha_one"))
    lake.append("live_pnl", live_rows("beta_two"))
    return lake


def later(seconds: float):
    return lambda: dt.datetime.now(dt.UTC) + dt.timedelta(seconds=seconds)


def test_sources_of_a_lake(lake: Lake) -> None:
    results = lake_monitor(lake).results()
    by = {r.source: r for r in results}
    assert {"bars", "live_pnl", "bars/synthetic:seed=1/AAA", "bars/synthetic:seed=1/BBB",
            "live_pnl/alpha_one", "live_pnl/beta_two"} <= set(by), sorted(by)
    assert "runs" not in by  # a table not created yet is no source
    assert all(r.status == "OK" for r in results), [(r.source, r.status, r.message) for r in results]
    assert by["bars/synthetic:seed=1/AAA"].category == "price" and by["bars"].threshold_seconds == 900
    assert by["live_pnl/alpha_one"].threshold_seconds == 86400
    assert all(r.age_seconds is not None and 0 <= r.age_seconds < 120 for r in results)
    assert overall_status(results) == "OK"


def test_thresholds_make_sources_stale(lake: Lake) -> None:
    t = HealthThresholds(overrides={"bars/*/AAA": 30, "live_pnl": 3600})
    by = {r.source: r for r in lake_monitor(lake, t, clock=later(600)).results()}
    assert by["bars/synthetic:seed=1/AAA"].status == "STALE"
    assert by["bars/synthetic:seed=1/BBB"].status == "OK"  # 900 s by default
    assert by["live_pnl/alpha_one"].status == "OK"
    by = {r.source: r for r in lake_monitor(lake, t, clock=later(4000)).results()}
    assert by["live_pnl/alpha_one"].status == "STALE" and by["bars/synthetic:seed=1/BBB"].status == "STALE"


def test_cache_costs_one_read_per_ttl_and_sees_new_sources_after_it(lake: Lake) -> None:
    now = {"t": dt.datetime.now(dt.UTC)}
    monitor = lake_monitor(lake, clock=lambda: now["t"])
    first = monitor.results()
    for _ in range(50):
        monitor.results()
    assert set(monitor.reads().values()) == {1}
    lake.append("live_pnl", live_rows("gamma_three"))
    assert "live_pnl/gamma_three" not in {r.source for r in monitor.results()}
    now["t"] += dt.timedelta(seconds=61)
    names = {r.source for r in monitor.results()}
    assert "live_pnl/gamma_three" in names and len(names) == len(first) + 1
    assert set(monitor.reads().values()) == {2}


def test_version_changes(lake: Lake) -> None:
    watcher = VersionWatcher(lake, ttl=0)
    shown = watcher.latest(["live_pnl", "bars", "runs"], fresh=True)
    assert shown["runs"] is None and shown["live_pnl"] == lake.version("live_pnl")
    assert watcher.changes(shown) == []
    lake.append("live_pnl", live_rows("gamma_three"))
    lake.append("live_pnl", live_rows("delta_four"))
    (change,) = watcher.changes(shown)
    v = shown["live_pnl"]
    assert (change.table, change.shown, change.latest, change.commits) == ("live_pnl", v, v + 2, 2)
    assert change.message == f"live_pnl v{v} shown, v{v + 2} in the lake: 2 commits (2 WRITE)"


def test_version_watcher_reads_once_per_ttl(lake: Lake) -> None:
    now = {"t": dt.datetime.now(dt.UTC)}
    watcher = VersionWatcher(lake, ttl=5, clock=lambda: now["t"])
    shown = watcher.latest(["live_pnl"])
    for _ in range(20):
        watcher.changes(shown)
    assert watcher.reads == 1
    lake.append("live_pnl", live_rows("gamma_three"))
    assert watcher.changes(shown) == []  # cached for 5 s
    now["t"] += dt.timedelta(seconds=5)
    assert len(watcher.changes(shown)) == 1 and watcher.reads == 2


def test_bar_coverage_counts_gaps_on_the_calendar(lake_settings: Settings) -> None:
    lake = Lake(lake_settings)
    bars = synthetic_bars(("GAP",), periods=40, seed=2)  # weekdays
    cut = bars["ts"][10], bars["ts"][16]
    ingest_bars(lake, bars.filter((pl.col("ts") <= cut[0]) | (pl.col("ts") >= cut[1])))
    ingest_bars(lake, synthetic_bars(("FULL",), periods=40, seed=3))
    cov = {r["symbol"]: r for r in bar_coverage(lake).iter_rows(named=True)}
    assert cov["FULL"]["gaps"] == 0 and cov["FULL"]["bars"] == 40
    gap = cov["GAP"]
    assert gap["bars"] == 40 - 5 and gap["gaps"] == 1
    assert (gap["largest_gap_from"], gap["largest_gap_to"]) == cut
    assert gap["first_bar"] == bars["ts"][0] and gap["last_bar"] == bars["ts"][-1]
    assert gap["largest_gap_days"] == pytest.approx((cut[1] - cut[0]).total_seconds() / 86400)


def test_empty_lake_has_no_sources(lake_settings: Settings) -> None:
    lake = Lake(lake_settings)
    assert lake_monitor(lake).results() == []
    assert bar_coverage(lake).is_empty()


# -- the CLI ---------------------------------------------------------------------------------------
def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from flows.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_cli_exit_codes(lake: Lake, capsys, monkeypatch) -> None:
    code, out, _ = run_cli(capsys, "health")
    assert code == 0, out
    assert "bars/synthetic:seed=1/AAA" in out and "overall: OK" in out
    code, out, _ = run_cli(capsys, "health", "--format", "json")
    doc = json.loads(out)
    assert code == 0 and doc["status"] == "OK" and {s["status"] for s in doc["sources"]} == {"OK"}
    monkeypatch.setenv("BACKLAKE_HEALTH_THRESHOLDS", '{"overrides": {"live_pnl/alpha_one": 1}}')
    time.sleep(1.2)  # alpha_one is now older than its 1 s threshold, the rest within theirs
    code, out, _ = run_cli(capsys, "health", "--format", "json")
    stale = [s["source"] for s in json.loads(out)["sources"] if s["status"] == "STALE"]
    assert code == 1 and stale == ["live_pnl/alpha_one"], out


def test_cli_exit_code_2_on_an_unreadable_table(local_settings: Settings, capsys) -> None:
    lake = Lake(local_settings)
    ingest_bars(lake, synthetic_bars(("AAA",), periods=20, seed=1))
    lake.append("live_pnl", live_rows("alpha_one"))
    log = Path(local_settings.root) / "live_pnl" / "_delta_log"
    latest = sorted(log.glob("*.json"))[-1]
    latest.write_text("{ not json")  # a corrupt commit: that table's check raises
    code, out, _ = run_cli(capsys, "health", "--format", "json")
    doc = json.loads(out)
    by = {s["source"]: s for s in doc["sources"]}
    assert code == 2 and doc["status"] == "ERROR"
    errors = [s for s in doc["sources"] if s["status"] == "ERROR"]
    assert errors and all(s["message"] for s in errors)
    assert by["bars"]["status"] == "OK"  # the other sources are still checked


def test_cli_bad_thresholds_is_one_line(lake: Lake, capsys, monkeypatch) -> None:
    monkeypatch.setenv("BACKLAKE_HEALTH_THRESHOLDS", '{"price": 0}')
    code, out, err = run_cli(capsys, "health")
    assert code == 2 and out == ""
    assert err.strip().splitlines() == [
        "error: BACKLAKE_HEALTH_THRESHOLDS: price=0 must be a positive number of seconds, e.g. 900 (15 minutes)"]


# -- the freshness flow ----------------------------------------------------------------------------
@pytest.fixture
def webhook() -> Iterator[tuple[str, list[dict]]]:
    received: list[dict] = []

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            received.append(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(204)
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/hook", received
    finally:
        server.shutdown()
        server.server_close()


def test_freshness_flow_records_and_alerts(prefect_harness, local_settings: Settings, monkeypatch, webhook) -> None:
    from flows.freshness import freshness_flow

    url, received = webhook
    lake = Lake(local_settings)
    ingest_bars(lake, synthetic_bars(("AAA", "BBB"), periods=20, seed=1))
    monkeypatch.setenv("BACKLAKE_ALERT_WEBHOOK_URL", url)
    monkeypatch.setenv("BACKLAKE_HEALTH_THRESHOLDS", '{"overrides": {"bars/*/AAA": 1}}')
    time.sleep(1.2)
    out = freshness_flow()
    assert out["status"] == "STALE" and out["new"] == ["bars/synthetic:seed=1/AAA"] and out["posted"] == 1
    checks = lake.read("health_checks")
    assert checks["check_id"].n_unique() == 1
    assert dict(checks.select("source", "status").iter_rows())["bars/synthetic:seed=1/AAA"] == "STALE"
    alerts = lake.read("alerts")
    assert alerts.select("source", "kind", "level").rows() == [("bars/synthetic:seed=1/AAA", "health", "STALE")]
    assert json.loads(alerts["figures"].item())["threshold_seconds"] == 1
    posted = [(p["source"], p["status"], p["kind"]) for p in received]
    assert posted == [("bars/synthetic:seed=1/AAA", "STALE", "health")]

    again = freshness_flow()  # still stale: recorded and alerted in the lake, not posted again
    assert again["status"] == "STALE" and again["new"] == [] and again["posted"] == 0 and len(received) == 1
    assert lake.read("health_checks")["check_id"].n_unique() == 2
    assert lake.read("alerts").height == 2
