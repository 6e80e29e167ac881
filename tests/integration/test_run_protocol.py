"""The run protocol (backlake.runs) on real lakes: run ids follow the data a run read, not the
lake's version; concurrent attempts of the same runs record one set of events; a killed sweep's
debris is reaped by maintenance and the sweep reruns cleanly; an expired failed run is recorded
again. Object-store cases run on the moto S3 server in its own process."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import signal
import sys
import time
from pathlib import Path

import polars as pl
import pytest

from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.lake import Lake
from backlake.lake.maintenance import maintain
from backlake.runs.backtest import commit_outcomes, execute_run, plan_runs
from backlake.runs.events import Attempt, claim
from backlake.runs.sweep import batches, commit_trial_batch, finish_sweep, plan_sweep, run_chunk
from backlake.settings import Settings
from tests.conftest import wait_until
from tests.integration.test_reliability import assert_unique, child_env, spawned


def cfg_for(symbol: str, fast: int = 5, slow: int = 20, **extra) -> BacktestConfig:
    return BacktestConfig.model_validate({"strategy": "sma_crossover", "params": {"fast": fast, "slow": slow},
                                          "universe": [symbol], **extra})


def test_run_id_follows_the_rows_read_not_the_lake_version(local_settings: Settings):
    lake = Lake(local_settings)
    ingest_bars(lake, synthetic_bars(("SYN0",), periods=400, seed=1))
    bounded = cfg_for("SYN0", start="2015-03-01", end="2015-10-30")
    open_ended = cfg_for("SYN0")
    first = {p.config.id: p for p in plan_runs(lake, [bounded, open_ended])}

    # another symbol, and SYN0 bars after `end`: the bounded run is the same run, the open-ended one is not
    ingest_bars(lake, synthetic_bars(("SYN1",), periods=400, seed=2))
    last = lake.read("bars", where={"symbol": "SYN0"})["ts"].max()
    ingest_bars(lake, synthetic_bars(("SYN0",), start=last + dt.timedelta(days=1), periods=30, seed=3))
    again = {p.config.id: p for p in plan_runs(lake, [bounded, open_ended])}
    assert again[bounded.id].run_id == first[bounded.id].run_id
    assert again[bounded.id].fingerprint == first[bounded.id].fingerprint
    assert again[bounded.id].data_versions != first[bounded.id].data_versions  # still pinned for replay
    assert again[open_ended.id].run_id != first[open_ended.id].run_id

    # storing the bounded run twice (before and after the unrelated ingest) keeps one run
    commit_outcomes(lake, [execute_run(lake, first[bounded.id])])
    (p,) = plan_runs(lake, [bounded])
    assert p.done and p.run_id == first[bounded.id].run_id
    assert commit_outcomes(lake, [execute_run(lake, p)]) == []
    assert lake.read("runs").height == 1
    assert lake.read("runs")["data_fingerprint"].to_list() == [p.fingerprint]

    # revising one bar the run used gives a new run
    bars = lake.read("bars", where={"symbol": "SYN0"}).sort("ts")
    inside = bars.filter(pl.col("ts") == dt.datetime(2015, 6, 1, tzinfo=dt.UTC))
    assert inside.height == 1
    changed = inside.drop("ingested_at").with_columns(pl.col("volume") + 1.0)
    ingest_bars(lake, changed, revise=True)
    (revised,) = plan_runs(lake, [bounded])
    assert revised.run_id != p.run_id and not revised.done


# -- concurrent attempts of the same runs ---------------------------------------------------------
ATTEMPT_CHILD = r"""
import json, sys, time
from pathlib import Path
from backlake.config import BacktestConfig
from backlake.lake import Lake
from backlake.runs.backtest import commit_outcomes, execute_run, plan_runs
from backlake.runs.events import Attempt, claim

configs = [BacktestConfig.model_validate(c) for c in json.loads(sys.argv[1])]
sync = Path(sys.argv[2])
lake = Lake()
planned = plan_runs(lake, configs)
(sync / f"ready-{time.time_ns()}").touch()
while not (sync / "go").exists():
    time.sleep(0.01)
attempt = Attempt.new()
started = claim(lake, [p.run_id for p in planned if not p.done], attempt)
outcomes = [execute_run(lake, p) for p in planned if p.run_id in started.claimed]
done = commit_outcomes(lake, outcomes, attempt=attempt)
print("RESULT " + json.dumps({"claimed": sorted(started.claimed), "busy": sorted(started.busy),
                              "done": sorted(started.done), "committed": sorted(done)}), flush=True)
"""


@pytest.mark.s3
@pytest.mark.timeout(300)
def test_concurrent_attempts_of_the_same_runs_record_one_set_of_events(s3_settings: Settings, tmp_path: Path):
    lake = Lake(s3_settings)
    ingest_bars(lake, synthetic_bars(("SYN0", "SYN1"), periods=300, seed=1))
    lake.ensure_all()
    configs = [cfg_for(s, f, 30).model_dump(mode="json") for s in ("SYN0", "SYN1") for f in (3, 5, 8)][:5]
    sync = tmp_path / "sync"
    sync.mkdir()
    logs = [tmp_path / f"attempt-{i}.log" for i in range(4)]
    with contextlib.ExitStack() as stack:
        procs = [stack.enter_context(spawned([sys.executable, "-c", ATTEMPT_CHILD, json.dumps(configs), str(sync)],
                                             log, child_env())) for log in logs]
        wait_until(lambda: len(list(sync.glob("ready-*"))) == 4 or any(p.poll() is not None for p in procs),
                   120, "attempts ready")
        (sync / "go").touch()
        for p, log in zip(procs, logs):
            assert p.wait(timeout=240) == 0, log.read_text()[-4000:]
    results = [json.loads(line.removeprefix("RESULT ")) for log in logs
               for line in log.read_text().splitlines() if line.startswith("RESULT ")]
    assert len(results) == 4
    committed = [r for res in results for r in res["committed"]]
    assert len(committed) == len(set(committed)) == 5  # each run committed by exactly one attempt

    runs = lake.read("runs")
    assert runs.height == 5 and set(runs["status"]) == {"completed"}
    events = lake.read("run_events")
    assert_unique(events, ["run_id", "status"], "run_events")
    per_run = events.group_by("run_id").agg(pl.col("status").sort(), pl.col("attempt").n_unique().alias("n"))
    assert per_run.height == 5
    assert all(s == ["completed", "pending", "running"] for s in per_run["status"].to_list())
    assert per_run["n"].to_list() == [1] * 5
    for table, keys in (("equity", ["run_id", "ts"]), ("trades", ["run_id", "trade_id"]),
                        ("metrics", ["run_id", "segment", "name"])):
        assert_unique(lake.read(table), keys, table)


# -- a killed sweep: reaped, its debris removed, rerun cleanly ---------------------------------
SWEEP_KILL_CHILD = r"""
import json, sys, time
from backlake.config import BacktestConfig
from backlake.lake import Lake
from backlake.runs.events import Attempt, claim
from backlake.runs.sweep import batches, commit_trial_batch, plan_sweep, run_chunk

args = json.loads(sys.argv[1])
lake = Lake()
plan = plan_sweep(lake, BacktestConfig.model_validate(args["config"]), args["grid"], chunk_size=args["chunk"])
claim(lake, [plan.run_id], Attempt.new())
groups = batches(len(plan.chunks))
frames = [run_chunk(lake, plan, k) for k in groups[0]]
commit_trial_batch(lake, plan, 0, frames)
print("COMMITTED", flush=True)
time.sleep(600)  # killed here, mid-sweep
"""


@pytest.mark.s3
@pytest.mark.timeout(300)
def test_killed_sweep_is_reaped_its_debris_deleted_and_it_reruns_cleanly(s3_settings: Settings, tmp_path: Path):
    lake = Lake(s3_settings)
    ingest_bars(lake, synthetic_bars(("SYN0",), periods=600, seed=4))
    lake.ensure_all()
    args = {"config": cfg_for("SYN0").model_dump(mode="json"),
            "grid": {"fast": [2, 3, 5, 8, 13], "slow": [20, 30, 40, 60]}, "chunk": 2}
    log = tmp_path / "sweep.log"
    with spawned([sys.executable, "-c", SWEEP_KILL_CHILD, json.dumps(args)], log, child_env()) as proc:
        wait_until(lambda: "COMMITTED" in log.read_text() or proc.poll() is not None, 180, "first batch")
        assert proc.poll() is None, log.read_text()[-4000:]
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=15)
    cfg = BacktestConfig.model_validate(args["config"])
    plan = plan_sweep(lake, cfg, args["grid"], chunk_size=args["chunk"])
    assert not lake.read("trials", where={"parent_id": plan.run_id}).is_empty()
    assert lake.read("runs").is_empty()

    # maintenance: the run's attempt is gone (no such process), so it is crashed; with zero
    # retention its trials are debris and are deleted, uncommitted files vacuumed
    report = maintain(lake, vacuum_retention_hours=0, failed_retention_days=0)
    assert report.reaped_runs == [plan.run_id] and report.debris_runs == [plan.run_id]
    events = lake.read("run_events", where={"run_id": plan.run_id}).sort("ts")
    assert events["status"].to_list() == ["pending", "running", "crashed"]
    assert "reaped by maintenance" in events["message"][-1]
    assert lake.read("trials", where={"parent_id": plan.run_id}).is_empty()
    again = maintain(lake, vacuum_retention_hours=0, failed_retention_days=0)
    assert again.reaped_runs == [] and again.debris_runs == []

    # the rerun claims a new generation and writes every trial once
    attempt = Attempt.new()
    started = claim(lake, [plan.run_id], attempt)
    assert started.claimed == {plan.run_id: 2} and not started.taken_over
    frames = [run_chunk(lake, plan, k) for k in range(len(plan.chunks))]
    for b, group in enumerate(batches(len(plan.chunks))):
        assert commit_trial_batch(lake, plan, b, [frames[k] for k in group]) is True
    finish_sweep(lake, plan, frames, dt.datetime.now(dt.UTC), attempt=attempt, generation=2)
    trials = lake.read("trials", where={"parent_id": plan.run_id})
    assert trials.height == plan.report.n_valid
    assert_unique(trials, ["trial"], "trials")
    assert lake.read("runs")["status"].to_list() == ["completed"]


# -- an expired failed run is recorded again ----------------------------------------------------
def test_expired_failed_run_is_recorded_again(local_settings: Settings):
    lake = Lake(local_settings)
    ingest_bars(lake, synthetic_bars(("SYN0",), periods=200, seed=1))
    bad = cfg_for("SYN0", 5, 20, benchmark="NOPE")  # fails in the engine: no such benchmark
    (p,) = plan_runs(lake, [bad])
    out = execute_run(lake, p)
    assert out.error and commit_outcomes(lake, [out]) == [p.run_id]
    assert lake.read("runs")["status"].to_list() == ["failed"]
    assert maintain(lake, vacuum_retention_hours=None, failed_retention_days=0).deleted_runs == 1
    assert lake.read("runs").is_empty()
    (p2,) = plan_runs(lake, [bad])
    assert p2.run_id == p.run_id and not p2.done
    assert commit_outcomes(lake, [execute_run(lake, p2)]) == [p.run_id]
    runs = lake.read("runs")
    assert runs["status"].to_list() == ["failed"] and runs["run_id"].to_list() == [p.run_id]
    # a failed run rerun after a fix of the data... here the same config: one row, replaced in place
    assert commit_outcomes(lake, [execute_run(lake, p2)]) == [p.run_id]
    assert lake.read("runs").height == 1


# -- files a writer left without committing them ------------------------------------------------
def test_vacuum_removes_files_no_commit_references_after_the_retention(local_settings: Settings):
    lake = Lake(local_settings)
    ingest_bars(lake, synthetic_bars(("SYN0",), periods=50, seed=1))
    runs_dir = Path(local_settings.root) / "runs"
    lake.ensure("runs")
    # a writer that lost its commit race (or died before committing) leaves its data file behind
    stray = runs_dir / "part-00000-lost-race-c000.snappy.parquet"
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"run_id": ["x"]}), stray)
    old = time.time() - 3 * 3600
    os.utime(stray, (old, old))
    kept = maintain(lake, vacuum_retention_hours=168, failed_retention_days=None)
    assert stray.exists(), "inside the retention window the file stays (a writer may still commit it)"
    assert next(t for t in kept.tables if t["table"] == "runs")["files_vacuumed"] == 0
    report = maintain(lake, vacuum_retention_hours=1, failed_retention_days=None)
    assert not stray.exists()
    assert next(t for t in report.tables if t["table"] == "runs")["files_vacuumed"] == 1
    assert lake.read("bars").height == 50  # committed data untouched
