"""The whole slice through real Prefect runs: ingest -> backtest flow -> lake -> `backlake sql`,
on a local directory and on a moto S3 server over HTTP."""

from __future__ import annotations

import json

import pytest

from backlake.errors import ConfigError
from backlake.lake import Lake
from backlake.settings import Settings
from flows.backtest import backtest_flow
from flows.cli import main as cli
from flows.ingest import ingest_flow

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

GOOG = {
    "strategy": "sma_crossover", "params": {"fast": 10, "slow": 30}, "universe": ["GOOG"],
    "start": "2004-08-19", "end": "2013-03-01", "timeframe": "1d", "initial_cash": 10000,
    "costs": {"commission_bps": 10},
}
SP500 = {"strategy": "sma_crossover", "params": {"fast": 50, "slow": 200}, "universe": ["SP500"]}


def sql_json(capsys: pytest.CaptureFixture, query: str) -> list[dict]:
    capsys.readouterr()
    assert cli(["sql", query, "--format", "json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_slice_end_to_end(prefect_harness, lake_settings: Settings, capsys: pytest.CaptureFixture):
    report = ingest_flow(source="samples", symbols=["GOOG", "SP500"])
    assert report["rows_new"] == 2148 + 5031
    assert report["validation"]["rows_skipped"] == 0
    lake = Lake(lake_settings)
    bars_version = lake.version("bars")

    out = backtest_flow([GOOG, SP500])
    assert [r["status"] for r in out] == ["completed", "completed"]

    runs = sql_json(capsys, "SELECT run_id, symbols, status, n_trades, data_versions FROM runs ORDER BY symbols")
    assert [r["symbols"] for r in runs] == ["GOOG", "SP500"]
    assert runs[0]["n_trades"] == 33
    assert json.loads(runs[0]["data_versions"]) == {"bars": bars_version}
    goog_id = runs[0]["run_id"]
    eq = sql_json(capsys,
                  f"SELECT round(equity, 2) AS e FROM equity WHERE run_id = '{goog_id}' ORDER BY ts DESC LIMIT 1")
    assert eq[0]["e"] == pytest.approx(54101.37, abs=0.01)
    events = sql_json(capsys, f"SELECT status FROM run_events WHERE run_id = '{goog_id}' ORDER BY ts")
    assert [e["status"] for e in events] == ["pending", "running", "completed"]

    # a second ingest and backtest of the same data: nothing new anywhere
    versions = {t: lake.version(t) for t in ("bars", "runs", "equity", "trades", "metrics")}
    assert ingest_flow(source="samples", symbols=["GOOG", "SP500"])["rows_new"] == 0
    assert [r["status"] for r in backtest_flow([GOOG, SP500])] == ["existing", "existing"]
    assert {t: lake.version(t) for t in versions} == versions
    counts = sql_json(capsys, "SELECT (SELECT count(*) FROM runs) AS runs, (SELECT count(*) FROM trades) AS trades")
    assert counts == [{"runs": 2, "trades": lake.read("trades").height}]
    assert lake.read("trades").group_by("run_id", "trade_id").len()["len"].max() == 1


def test_data_errors_are_refused_before_any_run_then_the_run_works(prefect_harness, local_settings: Settings):
    ingest_flow(source="samples", symbols=["GOOG"])
    bad = {**GOOG, "universe": ["SP500"]}  # not ingested in this lake
    lake = Lake(local_settings)
    versions = {t: lake.version(t) for t in ("bars", "runs", "run_events")}
    with pytest.raises(ConfigError, match="universe symbol 'SP500' is not in the lake"):
        backtest_flow([bad])
    assert {t: lake.version(t) for t in versions} == versions  # nothing written, not even events
    assert lake.read("runs").is_empty() and lake.read("equity").is_empty()
    ingest_flow(source="samples", symbols=["SP500"])
    assert backtest_flow([bad])[0]["status"] == "completed"
    assert lake.read("runs")["status"].to_list() == ["completed"]


def test_config_error_before_any_task(prefect_harness, local_settings: Settings):
    with pytest.raises(Exception, match="did you mean 'fast'"):
        backtest_flow([{**GOOG, "params": {"fats": 3}}])
    assert Lake(local_settings).read("run_events").height == 0


def test_cli_lake_status_json(local_settings: Settings, capsys: pytest.CaptureFixture):
    Lake(local_settings).ensure_all()
    capsys.readouterr()
    assert cli(["lake", "status", "--format", "json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert {r["table"] for r in rows} >= {"bars", "runs", "equity", "trades", "metrics"}
    assert all(r["version"] == 0 and r["rows"] == 0 for r in rows)


def test_cli_sql_formats_and_errors(local_settings: Settings, capsys: pytest.CaptureFixture):
    Lake(local_settings).ensure_all()
    capsys.readouterr()
    assert cli(["sql", "SELECT 1 AS a, 'x' AS b"]) == 0
    out = capsys.readouterr().out
    assert "a  b" in out and "(1 row)" in out
    assert cli(["sql", "SELECT 1 AS a, 'x' AS b", "--format", "csv"]) == 0
    assert capsys.readouterr().out.strip() == "a,b\n1,x"
    assert cli(["sql", "SELECT * FROM no_such_table"]) == 2
    assert "SQL error" in capsys.readouterr().err


def test_cli_unreachable_s3_is_a_clear_error(monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture):
    from tests.conftest import free_port

    monkeypatch.setenv("BACKLAKE_LAKE_URI", "s3://b/p")
    monkeypatch.setenv("BACKLAKE_S3_ENDPOINT_URL", f"http://127.0.0.1:{free_port()}")
    assert cli(["lake", "status"]) == 3
    err = capsys.readouterr().err
    assert "cannot reach the S3 endpoint" in err and "Traceback" not in err


def test_cli_schema_and_strategies(capsys: pytest.CaptureFixture):
    assert cli(["schema"]) == 0
    schema = json.loads(capsys.readouterr().out)
    assert "strategy" in schema["properties"] and "sma_crossover" in schema["$defs"]["strategy_params"]
    assert cli(["strategies", "--format", "json"]) == 0
    names = {r["strategy"] for r in json.loads(capsys.readouterr().out)}
    assert {"sma_crossover", "dual_momentum", "opening_range_breakout"} <= names
