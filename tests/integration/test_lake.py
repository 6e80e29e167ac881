"""The lake layer on a local directory and on a moto S3 server over HTTP."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from backlake.errors import LakeConnectionError, LakeError
from backlake.lake import TABLES, Lake, connect
from backlake.settings import Settings


def metrics_rows(run_ids: list[str]) -> pl.DataFrame:
    return pl.DataFrame({
        "run_id": [r for r in run_ids for _ in range(2)],
        "segment": ["full"] * (2 * len(run_ids)),
        "name": ["sharpe", "total_return"] * len(run_ids),
        "value": [float(i) for i in range(2 * len(run_ids))],
    })


def test_tables_created_on_first_use_with_schema(lake_settings: Settings):
    lake = Lake(lake_settings)
    status = lake.status()
    assert status.filter(pl.col("version").is_not_null()).height == 0
    lake.ensure_all()
    status = lake.status()
    assert set(status["table"]) == set(TABLES)
    assert status["version"].to_list() == [0] * len(TABLES)
    assert lake.read("runs").columns[:3] == ["run_id", "parent_id", "kind"]


def test_append_for_runs_is_idempotent(lake_settings: Settings):
    lake = Lake(lake_settings)
    rows = metrics_rows(["r1", "r2"])
    assert lake.append_for_runs("metrics", rows, ["r1", "r2"]) == ["r1", "r2"]
    v = lake.version("metrics")
    # the retry of the same write, and a batch overlapping it: nothing written twice
    assert lake.append_for_runs("metrics", rows, ["r1", "r2"]) == []
    assert lake.version("metrics") == v
    assert lake.append_for_runs("metrics", metrics_rows(["r2", "r3"]), ["r2", "r3"]) == ["r3"]
    got = lake.read("metrics")
    assert got.height == 6
    assert got.group_by("run_id").len().sort("run_id")["len"].to_list() == [2, 2, 2]


def test_read_at_version_time_travel(lake_settings: Settings):
    lake = Lake(lake_settings)
    lake.append_for_runs("metrics", metrics_rows(["a"]), ["a"])
    v1 = lake.version("metrics")
    lake.append_for_runs("metrics", metrics_rows(["b"]), ["b"])
    assert lake.read("metrics").height == 4
    assert lake.read("metrics", version=v1).height == 2
    with pytest.raises(LakeError, match="no version 99"):
        lake.read("metrics", version=99)


def test_upsert_runs_never_duplicates_completed(lake_settings: Settings):
    lake = Lake(lake_settings)
    now = dt.datetime.now(dt.UTC)
    row = {"run_id": "x", "parent_id": None, "kind": "backtest", "strategy": "sma_crossover",
           "symbols": "GOOG", "timeframe": "1d", "params": "{}", "config": "{}", "config_id": "c",
           "data_versions": "{}", "code_version": "t", "created_by": "me", "created_at": now,
           "finished_at": now, "status": "failed", "error": "boom", "total_return": None, "cagr": None,
           "sharpe": None, "sortino": None, "max_drawdown": None, "n_trades": None}
    lake.upsert_runs(pl.DataFrame([row]))
    lake.upsert_runs(pl.DataFrame([{**row, "status": "completed", "error": None, "sharpe": 1.5}]))
    lake.upsert_runs(pl.DataFrame([{**row, "status": "completed", "sharpe": 9.9}]))
    runs = lake.read("runs")
    assert runs.height == 1
    assert runs["status"][0] == "completed" and runs["sharpe"][0] == 1.5


@pytest.mark.parametrize("engine", ["delta", "pyarrow"])
def test_duckdb_views_and_time_travel(lake_settings: Settings, engine: str):
    lake = Lake(lake_settings)
    lake.append_for_runs("metrics", metrics_rows(["a"]), ["a"])
    v1 = lake.version("metrics")
    lake.append_for_runs("metrics", metrics_rows(["b"]), ["b"])
    with connect(lake=lake, engine=engine) as con:
        assert con.engine == engine
        assert con.sql("SELECT count(*) FROM metrics").fetchone()[0] == 4
        assert con.sql("SELECT count(*) FROM runs").fetchone()[0] == 0
        view = con.at_version("metrics", v1)
        assert con.sql(f"SELECT count(*) FROM {view}").fetchone()[0] == 2


def test_delta_views_follow_new_commits(lake_settings: Settings):
    lake = Lake(lake_settings)
    lake.ensure("metrics")
    with connect(lake=lake, engine="delta") as con:
        assert con.sql("SELECT count(*) FROM metrics").fetchone()[0] == 0
        lake.append_for_runs("metrics", metrics_rows(["a"]), ["a"])
        assert con.sql("SELECT count(*) FROM metrics").fetchone()[0] == 2


def test_schema_mismatch_is_a_clear_error(local_settings: Settings):
    lake = Lake(local_settings)
    with pytest.raises(LakeError, match="lack column"):
        lake.append("metrics", pl.DataFrame({"run_id": ["a"]}))


@pytest.mark.s3
def test_missing_bucket_is_a_clear_error(moto_endpoint: str, monkeypatch: pytest.MonkeyPatch):
    s = Settings(lake_uri="s3://no-such-bucket/x", s3_endpoint_url=moto_endpoint, s3_allow_http=True)
    with pytest.raises(LakeConnectionError, match=r"bucket 'no-such-bucket' does not exist.*create it"):
        Lake(s)


@pytest.mark.s3
def test_unreachable_endpoint_is_a_clear_error():
    from tests.conftest import free_port

    s = Settings(lake_uri="s3://b/x", s3_endpoint_url=f"http://127.0.0.1:{free_port()}", s3_allow_http=True)
    with pytest.raises(LakeConnectionError, match=r"cannot reach the S3 endpoint.*BACKLAKE_S3_ENDPOINT_URL"):
        Lake(s)


def test_commit_outcomes_retried_writes_nothing_twice(local_settings: Settings):
    """A commit task that is retried after (part of) its writes landed duplicates nothing."""
    from backlake.config import BacktestConfig
    from backlake.data.ingest import ingest_bars
    from backlake.data.synthetic import synthetic_bars
    from backlake.runs.backtest import commit_outcomes, execute_run, plan_runs

    lake = Lake(local_settings)
    ingest_bars(lake, synthetic_bars(("SYN0",), periods=300))
    cfgs = [BacktestConfig.model_validate({"strategy": "sma_crossover", "universe": ["SYN0"],
                                           "params": {"fast": f, "slow": 40}}) for f in (5, 10)]
    outcomes = [execute_run(lake, p) for p in plan_runs(lake, cfgs)]
    commit_outcomes(lake, outcomes)
    before = {t: lake.read(t).height for t in ("runs", "run_events", "equity", "trades", "metrics")}
    commit_outcomes(lake, outcomes)  # the retry
    assert {t: lake.read(t).height for t in before} == before
    assert before["runs"] == 2 and before["run_events"] == 6  # pending, running, completed per run


def test_connect_is_read_only_on_an_empty_lake(lake_settings: Settings):
    lake = Lake(lake_settings)
    with connect(lake=lake) as con:
        assert con.sql("SELECT count(*) FROM runs").fetchone()[0] == 0
        assert "sharpe" in con.sql("SELECT * FROM runs").columns
    assert not any(lake.exists(t) for t in TABLES)
