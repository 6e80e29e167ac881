"""Live P&L in a real lake: `backlake live ingest / link / list / overlay` (validation with
counts, idempotency, revisions, link errors), and the live_monitor flow on a real Prefect server
recording alerts once and posting new YELLOW / RED alerts to a real local HTTP server."""

from __future__ import annotations

import datetime as dt
import json
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import polars as pl
import pytest

from backlake.analytics.live import compute_overlay, live_returns, load_overlay, seed_live_feed, worse_fills_feed
from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.data.samples import load_samples
from backlake.lake import Lake, connect
from backlake.runs.backtest import commit_outcomes, execute_run, plan_runs
from backlake.settings import Settings
from flows.demo import LIVE_CONFIG

STRATEGY = "sma-live"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    from flows.cli import main

    capsys.readouterr()
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def backtest(lake: Lake, config: dict) -> str:
    planned = plan_runs(lake, [BacktestConfig.model_validate(config)])
    outcomes = [execute_run(lake, p) for p in planned]
    assert not [o.error for o in outcomes if o.error]
    commit_outcomes(lake, outcomes, created_by="test")
    return planned[0].run_id


@pytest.fixture
def lake_with_run(lake_settings: Settings) -> tuple[Lake, str]:
    """SP500 bars and the demo's live reference backtest (SMA 5/20 over 2018)."""
    lake = Lake(lake_settings)
    ingest_bars(lake, load_samples(["SP500"]))
    return lake, backtest(lake, LIVE_CONFIG)


@pytest.fixture
def local_lake_with_run(local_settings: Settings) -> tuple[Lake, str]:
    lake = Lake(local_settings)
    ingest_bars(lake, load_samples(["SP500"]))
    return lake, backtest(lake, LIVE_CONFIG)


def feed(lake: Lake) -> pl.DataFrame:
    bars = lake.read("bars", where={"symbol": "SP500"}).drop("ingested_at")
    return worse_fills_feed(LIVE_CONFIG, bars)


def stored(lake: Lake, strategy: str = STRATEGY) -> pl.DataFrame:
    return lake.read("live_pnl", where={"strategy": strategy}).sort("date")


# -- ingest -----------------------------------------------------------------------------------------
def test_ingest_validates_with_counts_and_is_idempotent(lake_with_run, tmp_path: Path, capsys) -> None:
    lake, _ = lake_with_run
    good = feed(lake).select("date", "nav")
    bad = pl.DataFrame({"date": ["2018-13-01", "2018-03-01", "2018-03-02", "2999-01-01"],
                        "nav": [1.0, None, -3.0, 1.0]}, schema={"date": pl.String, "nav": pl.Float64})
    dup = good.head(2).with_columns(pl.col("date").cast(pl.String))
    path = tmp_path / "live.csv"
    pl.concat([good.with_columns(pl.col("date").cast(pl.String)), bad, dup]).write_csv(path)

    code, out, err = run_cli(capsys, "live", "ingest", str(path), "--strategy", STRATEGY)
    assert code == 0, err
    n = good.height
    assert f"{n} new day(s), 0 revised, 0 already in the lake" in out
    assert (f"validated {n + 6} row(s): {n} valid, 6 skipped (bad_date=1, missing_value=1, non_positive_nav=1, "
            "return_below_minus_100pct=0, future_date=1, duplicate=2)") in out
    rows = stored(lake)
    assert rows.height == n and rows["nav"].to_list() == good["nav"].to_list()
    assert rows["ret"][0] is None  # the base day
    assert rows["ret"][1:].to_list() == pytest.approx((good["nav"][1:] / good["nav"][:-1] - 1).to_list())
    assert set(rows["source"].to_list()) == {"live.csv"}
    version = lake.version("live_pnl")

    code, out, _ = run_cli(capsys, "live", "ingest", str(path), "--strategy", STRATEGY)  # again: nothing added
    assert code == 0 and f"0 new day(s), 0 revised, {n} already in the lake" in out
    assert lake.version("live_pnl") == version and stored(lake).height == n

    # a changed value is refused (nothing written) unless --revise
    changed = tmp_path / "changed.parquet"
    good.head(3).with_columns(pl.when(pl.int_range(pl.len()) == 2).then(pl.col("nav") + 1).otherwise(pl.col("nav"))
                              .alias("nav")).write_parquet(changed)
    code, _, err = run_cli(capsys, "live", "ingest", str(changed), "--strategy", STRATEGY)
    day = good["date"][2]
    assert code == 2 and "1 date(s) of live strategy 'sma-live' already in the lake have different values" in err
    assert f"{day} nav" in err and "--revise" in err and "Traceback" not in err
    assert lake.version("live_pnl") == version
    code, out, err = run_cli(capsys, "live", "ingest", str(changed), "--strategy", STRATEGY, "--revise")
    assert code == 0 and "0 new day(s), 1 revised, 2 already in the lake" in out, err
    rows = stored(lake)
    assert rows.height == n and rows.filter(pl.col("date") == day)["nav"][0] == good["nav"][2] + 1


def test_ingest_of_pnl_and_returns_and_its_one_line_errors(local_lake_with_run, tmp_path: Path, capsys) -> None:
    lake, _ = local_lake_with_run
    pnl = tmp_path / "pnl.csv"
    pl.DataFrame({"Date": ["2018-01-02", "2018-01-03"], "PnL": [1000.0, -550.0]}).write_csv(pnl)
    code, _, err = run_cli(capsys, "live", "ingest", str(pnl), "--strategy", "p")
    assert code == 2 and "daily_pnl without nav needs the starting NAV: give --capital" in err
    assert run_cli(capsys, "live", "ingest", str(pnl), "--strategy", "p", "--capital", "100000")[0] == 0
    rows = stored(lake, "p")
    assert rows["nav"].to_list() == [101_000.0, 100_450.0]
    assert rows["ret"].to_list() == pytest.approx([0.01, -550 / 101_000])

    rets = tmp_path / "ret.csv"
    pl.DataFrame({"date": ["2018-01-02"], "return": [0.002]}).write_csv(rets)
    code, out, _ = run_cli(capsys, "live", "ingest", str(rets), "--strategy", "r", "--format", "json")
    assert code == 0 and json.loads(out)["rows_new"] == 1

    for args, message in [
        ((str(tmp_path / "missing.csv"),), "does not exist"),
        ((str(tmp_path),), "is a directory"),
    ]:
        code, _, err = run_cli(capsys, "live", "ingest", *args, "--strategy", "x")
        assert code == 2 and message in err, err
    nodate = tmp_path / "nodate.csv"
    pl.DataFrame({"when": ["2018-01-02"], "nav": [1.0]}).write_csv(nodate)
    code, _, err = run_cli(capsys, "live", "ingest", str(nodate), "--strategy", "x")
    assert code == 2 and "has no date column (columns: when, nav)" in err
    novalue = tmp_path / "novalue.csv"
    pl.DataFrame({"date": ["2018-01-02"], "pnl_usd": [1.0]}).write_csv(novalue)
    code, _, err = run_cli(capsys, "live", "ingest", str(novalue), "--strategy", "x")
    assert code == 2 and "has no value column" in err
    allbad = tmp_path / "allbad.csv"
    pl.DataFrame({"date": ["x", "y"], "nav": [1.0, 2.0]}).write_csv(allbad)
    code, _, err = run_cli(capsys, "live", "ingest", str(allbad), "--strategy", "x")
    assert code == 2 and "no valid rows" in err and "bad_date=2" in err
    code, _, err = run_cli(capsys, "live", "ingest", str(rets), "--strategy", "it's")
    assert code == 2 and "strategy name" in err
    assert not lake.read("live_pnl").filter(pl.col("strategy") == "x").height


# -- link, list, overlay ----------------------------------------------------------------------------
def test_link_errors_list_and_overlay(local_lake_with_run, tmp_path: Path, capsys) -> None:
    lake, run_id = local_lake_with_run
    path = tmp_path / "live.csv"
    feed(lake).select("date", "nav").write_csv(path)
    assert run_cli(capsys, "live", "ingest", str(path), "--strategy", STRATEGY)[0] == 0

    code, _, err = run_cli(capsys, "live", "link", "sma-lvie", run_id)
    assert code == 2 and "did you mean 'sma-live'" in err and "backlake live ingest" in err
    code, _, err = run_cli(capsys, "live", "link", STRATEGY, run_id[:8])
    assert code == 2 and f"run {run_id[:8]!r} is not in the lake; runs starting {run_id[:4]!r}: {run_id}" in err
    now = dt.datetime.now(dt.UTC)
    lake.upsert_runs(pl.DataFrame({"run_id": ["f" * 16, "e" * 16], "kind": ["backtest", "sweep"],
                                   "status": ["failed", "completed"], "created_at": [now, now]}))
    code, _, err = run_cli(capsys, "live", "link", STRATEGY, "f" * 16)
    assert code == 2 and "is failed, not completed" in err
    code, _, err = run_cli(capsys, "live", "link", STRATEGY, "e" * 16)
    assert code == 2 and "has no equity rows" in err
    code, _, err = run_cli(capsys, "live", "overlay", STRATEGY)
    assert code == 2 and "is not linked to a run" in err
    assert not lake.exists("live_links") or lake.read("live_links").is_empty()

    code, out, _ = run_cli(capsys, "live", "link", STRATEGY, run_id)
    assert code == 0 and f"linked: live strategy {STRATEGY} -> run {run_id}" in out
    code, out, _ = run_cli(capsys, "live", "link", STRATEGY, run_id)
    assert code == 0 and out.startswith("unchanged")
    assert lake.read("live_links").height == 1

    code, out, _ = run_cli(capsys, "live", "list", "--format", "json")
    (row,) = json.loads(out)
    assert row["strategy"] == STRATEGY and row["run_id"] == run_id and row["days"] == 251

    code, out, _ = run_cli(capsys, "live", "overlay", STRATEGY, "--format", "json")
    assert code == 0
    got = json.loads(out)
    with connect(lake=lake) as con:
        expected = load_overlay(con, STRATEGY)
        live = live_returns(con, STRATEGY)
    bt = (lake.read("equity", where={"run_id": run_id}).select(pl.col("ts").dt.date().alias("date"), "ret"))
    assert compute_overlay(live, bt).tracking_error == pytest.approx(got["tracking_error"])
    assert got["level"] == expected.level == "YELLOW" and got["basis"] == "net"
    assert got["n_aligned"] == 250 and len(got["series"]) == 250
    assert got["tracking_error"] == pytest.approx(expected.tracking_error)

    code, out, _ = run_cli(capsys, "live", "overlay", STRATEGY, "--te-threshold", "0.5")
    assert code == 0 and "within thresholds" in out and "NONE" in out
    code, out, _ = run_cli(capsys, "live", "overlay", STRATEGY, "--divergence-threshold", "0.01")
    assert code == 0 and "RED: cumulative divergence" in out
    code, _, err = run_cli(capsys, "live", "overlay", STRATEGY, "--window", "1")
    assert code == 2 and "rolling_window_days=1" in err and ">= 2" in err
    code, out, _ = run_cli(capsys, "live", "overlay", STRATEGY, "--format", "csv")
    assert code == 0 and out.splitlines()[0] == "date,live,backtest,bt_bar,cum_live,cum_bt,gap,rolling_te,streak,level"


def test_a_backtest_without_cost_data_is_compared_gross_with_alerts_off(local_lake_with_run, tmp_path, capsys):
    from deltalake import DeltaTable

    lake, run_id = local_lake_with_run
    seed_live_feed(lake, LIVE_CONFIG, run_id, STRATEGY, user="test")
    DeltaTable(lake.uri("equity")).update(updates={"costs": "NULL"}, predicate=f"run_id = '{run_id}'")
    code, out, _ = run_cli(capsys, "live", "overlay", STRATEGY, "--format", "json")
    got = json.loads(out)
    assert code == 0 and got["basis"] == "gross" and not got["alerts_enabled"] and got["level"] == "NONE"
    assert any(w.startswith("basis mismatch") for w in got["warnings"])


# -- the live_monitor flow ---------------------------------------------------------------------------
class Hook:
    """A real HTTP server on a free local port recording the JSON bodies POSTed to it; answers
    ``status`` (200 by default)."""

    def __init__(self) -> None:
        self.posts: list[dict] = []
        self.status = 200
        hook = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                hook.posts.append({"body": json.loads(body), "content_type": self.headers["Content-Type"]})
                self.send_response(hook.status)
                self.end_headers()

            def log_message(self, *args) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/alerts"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def hook() -> Iterator[Hook]:
    h = Hook()
    try:
        yield h
    finally:
        h.close()


def artifact_markdown(flow_run_id) -> str:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import ArtifactFilter, ArtifactFilterFlowRunId, ArtifactFilterKey

    filt = ArtifactFilter(key=ArtifactFilterKey(any_=["live-monitor"]),
                          flow_run_id=ArtifactFilterFlowRunId(any_=[uuid.UUID(str(flow_run_id))]))
    with get_client(sync_client=True) as client:
        found = client.read_artifacts(artifact_filter=filt, limit=1)
    assert found and found[0].type == "markdown"
    return str(found[0].data)


@pytest.mark.prefect
def test_live_monitor_records_alerts_once_and_posts_new_ones(prefect_harness, local_lake_with_run, hook: Hook,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    from flows.live_monitor import live_monitor_flow

    lake, run_id = local_lake_with_run
    seed_live_feed(lake, LIVE_CONFIG, run_id, STRATEGY, user="test")
    # a second strategy, linked, whose level is NONE: recorded, never posted
    calm = (lake.read("equity", where={"run_id": run_id}).sort("ts")  # trades exactly like the backtest
            .select(pl.col("ts").dt.date().alias("date"), pl.col("equity").alias("nav")))
    from backlake.analytics.live import ingest_live, link_strategy

    ingest_live(lake, calm, "calm")
    with connect(lake=lake) as con:
        link_strategy(lake, con, "calm", run_id, "test")

    # the webhook fails: the flow fails naming it, and the YELLOW alert stays unrecorded (to be posted later)
    hook.status = 500
    state = live_monitor_flow(webhook_url=hook.url, return_state=True)
    assert state.is_failed() and "answered HTTP 500" in str(state.message) + str(state.result(raise_on_failure=False))
    alerts = lake.read("alerts")
    assert alerts["source"].to_list() == ["calm"] and alerts["level"].to_list() == ["NONE"]
    assert len(hook.posts) == 1

    # the webhook from settings (BACKLAKE_ALERT_WEBHOOK_URL), working now
    hook.status, hook.posts = 200, []
    monkeypatch.setenv("BACKLAKE_ALERT_WEBHOOK_URL", hook.url)
    state = live_monitor_flow(return_state=True)
    assert state.is_completed()
    out = state.result()
    assert out["posted"] == 1 and out["new"] == 1
    (post,) = hook.posts
    body = post["body"]
    assert post["content_type"] == "application/json"
    assert body["type"] == "backlake.live_alert" and body["strategy"] == STRATEGY and body["run_id"] == run_id
    assert body["level"] == "YELLOW" and body["date"] == "2018-12-31" and body["basis"] == "net"
    with connect(lake=lake) as con:
        ov = load_overlay(con, STRATEGY)
    assert body["tracking_error"] == pytest.approx(ov.tracking_error)
    assert body["divergence"] == pytest.approx(ov.divergence) and body["reasons"] == ov.reasons

    alerts = lake.read("alerts").sort("source")
    assert alerts["source"].to_list() == ["calm", STRATEGY]
    row = alerts.row(1, named=True)
    assert row["kind"] == "live" and row["run_id"] == run_id and row["level"] == "YELLOW"
    assert row["date"] == dt.date(2018, 12, 31) and row["tracking_error"] == pytest.approx(ov.tracking_error)
    assert row["divergence"] == pytest.approx(ov.divergence) and row["message"] == ov.message
    md = artifact_markdown(state.state_details.flow_run_id)
    assert f"| {STRATEGY} | {run_id} | 2018-12-31 | 🟡 YELLOW |" in md and "| calm |" in md

    # again: nothing new recorded, nothing posted
    version = lake.version("alerts")
    out = live_monitor_flow(webhook_url=hook.url)
    assert out["posted"] == 0 and out["new"] == 0 and len(hook.posts) == 1
    assert lake.version("alerts") == version and lake.read("alerts").height == 2


@pytest.mark.prefect
def test_live_monitor_command(prefect_harness, local_lake_with_run, hook: Hook, capsys) -> None:
    lake, run_id = local_lake_with_run
    code, out, _ = run_cli(capsys, "live", "monitor", "--webhook-url", hook.url)
    assert code == 0 and "no live strategy is linked" in out
    seed_live_feed(lake, LIVE_CONFIG, run_id, STRATEGY, user="test")
    code, _, err = run_cli(capsys, "live", "monitor", "--window", "1")
    assert code == 2 and "rolling_window_days=1" in err
    code, out, _ = run_cli(capsys, "live", "monitor", "--webhook-url", hook.url, "--divergence-threshold", "0.01")
    assert code == 0 and f"{STRATEGY}  {run_id}  2018-12-31  RED" in out
    assert [p["body"]["level"] for p in hook.posts] == ["RED"]
    assert lake.read("alerts")["level"].to_list() == ["RED"]
