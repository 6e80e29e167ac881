"""Reliability of the lake's write protocol on a moto S3 server over HTTP: many concurrent
writer processes, a task that fails after its commit landed and is retried, a flow process
killed with SIGKILL in the middle of a sweep, and replaying a run against the data versions
it recorded (Delta time travel), and a running sweep cancelled through Prefect."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import math
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import polars as pl
import pytest
from prefect import flow, task
from prefect.cache_policies import NO_CACHE

from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.lake import Lake, connect
from backlake.research.sweep import sweep
from backlake.runs.backtest import PlannedRun, commit_outcomes, execute_run, plan_runs
from backlake.runs.data import fingerprint, load_bars
from backlake.runs.events import Attempt, claim
from backlake.runs.sweep import batches, commit_trial_batch, finish_sweep, plan_sweep, run_chunk
from backlake.settings import Settings
from tests.conftest import REPO, make_bucket, wait_until

pytestmark = [pytest.mark.s3, pytest.mark.slow]

SYMBOLS = ("SYN0", "SYN1", "SYN2", "SYN3")
N_BARS = 300


# -- helpers ---------------------------------------------------------------------------------
def ingest_synthetic(lake: Lake, symbols=SYMBOLS, periods: int = N_BARS, seed: int = 1, **kw) -> int:
    """Synthetic daily bars into the lake; returns the new ``bars`` version."""
    report = ingest_bars(lake, synthetic_bars(symbols, periods=periods, seed=seed, **kw))
    assert report.rows_new == len(symbols) * periods
    return report.bars_version


def sma(symbol: str, fast: int, slow: int) -> dict:
    return {"strategy": "sma_crossover", "params": {"fast": fast, "slow": slow}, "universe": [symbol]}


def child_env(**extra: str) -> dict[str, str]:
    """This process's environment (BACKLAKE_* and AWS_* included) for a child process, minus
    any Prefect API of this process (a child flow starts its own temporary server)."""
    env = {k: v for k, v in os.environ.items() if k not in ("PREFECT_API_URL", "PREFECT_API_KEY")}
    env.update({"PYTHONUNBUFFERED": "1", **extra})
    return env


def kill_group(proc: subprocess.Popen, timeout: float = 15.0) -> None:
    """SIGKILL the child's whole process group (it was started in its own session), then reap it."""
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=timeout)


def group_members(pgid: int) -> list[int]:
    """Live (non-zombie) processes still in process group ``pgid``."""
    import psutil

    out = []
    for p in psutil.process_iter(["pid", "status"]):
        with contextlib.suppress(psutil.Error, ProcessLookupError, OSError):
            if p.info["status"] != psutil.STATUS_ZOMBIE and os.getpgid(p.info["pid"]) == pgid:
                out.append(p.info["pid"])
    return out


@contextlib.contextmanager
def spawned(args: list[str], log: Path, env: dict[str, str]) -> Iterator[subprocess.Popen]:
    """A child process in its own session (output to ``log``); always killed and reaped on exit."""
    with open(log, "wb") as out:
        proc = subprocess.Popen(
            args, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
            start_new_session=True,
        )
    try:
        yield proc
    finally:
        kill_group(proc)


def same_value(a, b) -> bool:
    """Exact equality, where None == None and NaN == NaN."""
    if a is None or b is None:
        return a is None and b is None
    if isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b):
        return True
    return a == b


def metric_map(result) -> dict[tuple[str, str], float | None]:
    """A result's metrics as commit_outcomes stores them: (segment, name) -> float or None."""
    segments = result.segments or {"full": result.metrics}
    return {(seg, name): None if v is None else float(v) for seg, vals in segments.items() for name, v in vals.items()}


def assert_unique(df: pl.DataFrame, keys: list[str], table: str) -> None:
    dup = df.group_by(keys).len().filter(pl.col("len") > 1)
    assert dup.is_empty(), f"{table}: duplicated {keys}:\n{dup.head()}"


# -- 1. concurrent writer processes ----------------------------------------------------------
N_WRITERS = 8
RUNS_PER_WRITER = 20
#: runs per commit_outcomes call: writes are batched as in the flows (DESIGN: fan-out writes
#: are batched), so 8 writers make 32 concurrent batch commits on every table
RUNS_PER_COMMIT = 5
#: how long the writers may take in all; and how long a stopped writer may take to finish its run
WRITERS_DEADLINE = 300
STOP_GRACE = 120

WRITER = r"""
import json, os, sys, time
from pathlib import Path
from backlake.config import BacktestConfig
from backlake.errors import LakeError
from backlake.lake import Lake
from backlake.runs.backtest import commit_outcomes, execute_run, plan_runs
from backlake.runs.events import Attempt, claim

configs = [BacktestConfig.model_validate(c) for c in json.loads(sys.argv[1])]
sync = Path(sys.argv[2])
lake = Lake()
(sync / f"ready-{os.getpid()}").touch()
deadline = time.monotonic() + 120
while not (sync / "go").exists():  # all writers start committing together
    if time.monotonic() > deadline:
        raise SystemExit("no go signal")
    time.sleep(0.02)
BATCH = int(sys.argv[3])
for start in range(0, len(configs), BATCH):  # the backtest flow's protocol, a batch per commit
    if (sync / "stop").exists():
        print("STOPPED", flush=True)
        break
    planned = plan_runs(lake, configs[start:start + BATCH])
    assert not any(p.done for p in planned), planned
    ids = [p.run_id for p in planned]
    attempt = Attempt.new()
    claim(lake, ids, attempt)
    outcomes = [execute_run(lake, p) for p in planned]
    errors = [o.error for o in outcomes if o.error]
    if errors:
        raise SystemExit(errors[0])
    try:
        commit_outcomes(lake, outcomes, attempt=attempt)
    except LakeError as e:  # the commit is lost: report it, and stop like a crashed task would
        for rid in ids:
            print("LOST " + json.dumps({"run_id": rid, "error": str(e).splitlines()[0]}), flush=True)
        break
    for rid in ids:
        print("DONE " + rid, flush=True)
"""


class LostCommitRace(Exception):
    """A writer's commit_outcomes gave up: a lake write kept losing commit races to the other
    writers (more attempts than ``backlake.lake.store`` allows)."""


def writer_reports(log: Path) -> tuple[list[str], list[dict]]:
    done, lost = [], []
    for line in log.read_text().splitlines():
        if line.startswith("DONE "):
            done.append(line.removeprefix("DONE "))
        elif line.startswith("LOST "):
            lost.append(json.loads(line.removeprefix("LOST ")))
    return done, lost


@pytest.mark.timeout(600)
def test_concurrent_writer_processes_lose_and_duplicate_nothing(s3_settings: Settings, tmp_path: Path):
    lake = Lake(s3_settings)
    ingest_synthetic(lake)
    lake.ensure_all()
    # 160 distinct configs: 4 symbols x 5 fast x 8 slow, dealt round-robin to the writers
    configs = [sma(s, f, sl) for s in SYMBOLS for f in (3, 5, 7, 9, 11) for sl in range(15, 55, 5)]
    planned = plan_runs(lake, [BacktestConfig.model_validate(c) for c in configs])
    by_id = {p.run_id: p.config for p in planned}
    assert len(by_id) == N_WRITERS * RUNS_PER_WRITER
    # compile (and cache on disk) the engine here, so the writers start warm; nothing committed
    warm = execute_run(lake, planned[0])
    assert warm.error is None and warm.result.equity.height == N_BARS
    n_metrics = len(metric_map(warm.result))

    sync = tmp_path / "sync"
    sync.mkdir()
    logs = [tmp_path / f"writer-{i}.log" for i in range(N_WRITERS)]
    with contextlib.ExitStack() as stack:
        procs = [
            stack.enter_context(spawned(
                [sys.executable, "-c", WRITER, json.dumps(configs[i::N_WRITERS]), str(sync), str(RUNS_PER_COMMIT)],
                log, child_env()))
            for i, log in enumerate(logs)
        ]
        wait_until(lambda: len(list(sync.glob("ready-*"))) == N_WRITERS
                   or any(p.poll() is not None for p in procs), 90, "writers ready")
        (sync / "go").touch()
        started = time.monotonic()

        def finished_or_lost() -> bool:
            return all(p.poll() is not None for p in procs) or any(writer_reports(log)[1] for log in logs)

        with contextlib.suppress(TimeoutError):
            wait_until(finished_or_lost, WRITERS_DEADLINE, "writers done", interval=0.5)
        # a lost commit (or the deadline): the others finish the run they are in, then stop
        (sync / "stop").touch()
        for p, log in zip(procs, logs):
            try:
                rc = p.wait(timeout=max(1.0, started + WRITERS_DEADLINE + STOP_GRACE - time.monotonic()))
            except subprocess.TimeoutExpired:
                pytest.fail(f"writer {p.pid} did not stop:\n{log.read_text()[-3000:]}")
            assert rc == 0, f"writer {p.pid} exited {rc}:\n{log.read_text()[-5000:]}"
    elapsed = time.monotonic() - started
    done: list[str] = []
    lost: list[dict] = []
    for log in logs:
        d, lo = writer_reports(log)
        done += d
        lost += lo
    lost_ids = [x["run_id"] for x in lost]
    print(f"\n{len(done)} runs committed by {N_WRITERS} processes in {elapsed:.1f}s, {len(lost)} lost; versions: "
          f"runs={lake.version('runs')} run_events={lake.version('run_events')} equity={lake.version('equity')}")
    assert len(set(done)) == len(done) and set(done) <= set(by_id) and not set(done) & set(lost_ids)

    # what landed: every committed run exactly once, complete; a lost run invisible
    runs = lake.read("runs")
    assert_unique(runs, ["run_id"], "runs")
    assert sorted(runs["run_id"]) == sorted(done), "runs holds exactly the runs whose commit returned"
    assert runs.is_empty() or runs["status"].unique().to_list() == ["completed"]

    equity = lake.read("equity", columns=["run_id", "ts"])
    assert_unique(equity, ["run_id", "ts"], "equity")
    per_run = equity.group_by("run_id").len()
    assert set(per_run["run_id"]) >= set(done)
    assert per_run["len"].unique().to_list() == [N_BARS]

    trades = lake.read("trades", columns=["run_id", "trade_id"])
    assert_unique(trades, ["run_id", "trade_id"], "trades")
    n_trades = (runs.select("run_id", "n_trades")
                .join(trades.group_by("run_id").len(), on="run_id", how="left")
                .with_columns(pl.col("len").fill_null(0)))
    assert (n_trades["n_trades"] == n_trades["len"]).all(), n_trades.filter(pl.col("n_trades") != pl.col("len"))

    metrics = lake.read("metrics", columns=["run_id", "segment", "name"])
    assert_unique(metrics, ["run_id", "segment", "name"], "metrics")
    per_run = metrics.group_by("run_id").len()
    assert set(per_run["run_id"]) >= set(done) and per_run["len"].unique().to_list() == [n_metrics]

    events = lake.read("run_events")
    assert_unique(events, ["run_id", "status"], "run_events")
    statuses = dict(events.sort("ts").group_by("run_id", maintain_order=True).agg(pl.col("status")).iter_rows())
    assert all(statuses[r] == ["pending", "running", "completed"] for r in done)
    assert all(statuses[r] == ["pending", "running"] for r in lost_ids)  # a lost run never completed

    if len(done) < len(by_id) and not lost:
        pytest.fail(f"only {len(done)} of {len(by_id)} runs committed in {WRITERS_DEADLINE}s and none was lost: "
                    f"too slow")
    if lost:
        # the retry the backtest flow's commit task would make: the lost run lands once, nothing doubles
        for r in lost_ids:
            (again,) = plan_runs(lake, [by_id[r]])
            assert again.run_id == r and not again.done
            commit_outcomes(lake, [execute_run(lake, again)])
        runs = lake.read("runs")
        assert_unique(runs, ["run_id"], "runs")
        assert set(runs["run_id"]) == set(done) | set(lost_ids)
        for table, keys in (("equity", ["run_id", "ts"]), ("trades", ["run_id", "trade_id"]),
                            ("metrics", ["run_id", "segment", "name"]), ("run_events", ["run_id", "status"])):
            assert_unique(lake.read(table, where={"run_id": lost_ids}), keys, table)
        assert lake.read("equity", where={"run_id": lost_ids}).height == N_BARS * len(lost_ids)
        raise LostCommitRace(f"{len(lost)} of {len(done) + len(lost)} commits lost after {elapsed:.0f}s: {lost[0]}")

    assert len(done) == len(by_id)


# -- 2. a commit that lands, then its task fails and is retried --------------------------------
def _bump(counter: Path) -> int:
    n = int(counter.read_text()) if counter.exists() else 0
    counter.write_text(str(n + 1))
    return n + 1


@task(cache_policy=NO_CACHE)
def run_task(planned: PlannedRun, lake_uri: str):
    return execute_run(Lake(Settings(lake_uri=lake_uri)), planned)


@task(cache_policy=NO_CACHE, retries=1, retry_delay_seconds=0)
def flaky_commit_task(outcomes: list, lake_uri: str, counter: str | None, attempt: Attempt) -> None:
    commit_outcomes(Lake(Settings(lake_uri=lake_uri)), outcomes, attempt=attempt)
    if counter is not None and _bump(Path(counter)) == 1:
        raise ConnectionError("lost the connection after the commit landed")


@flow(name="reliability-backtest")
def flaky_backtest_flow(configs: list[dict], lake_uri: str, counter: str | None = None) -> list[str]:
    lake = Lake(Settings(lake_uri=lake_uri))
    planned = plan_runs(lake, [BacktestConfig.model_validate(c) for c in configs])
    ids = [p.run_id for p in planned]
    attempt = Attempt.new()
    claim(lake, ids, attempt)
    outcomes = [run_task(p, lake_uri) for p in planned]
    flaky_commit_task(outcomes, lake_uri, counter, attempt)
    return ids


def lake_contents(lake: Lake) -> dict[str, pl.DataFrame]:
    """Every run table, sorted, without the columns that differ between two attempts (times)."""
    runs = lake.read("runs").drop("created_at", "finished_at").sort("run_id")
    events = lake.read("run_events").drop("ts", "attempt", "host", "pid").sort("run_id", "status")
    return {
        "runs": runs,
        "run_events": events,
        "equity": lake.read("equity").sort("run_id", "ts"),
        "trades": lake.read("trades").sort("run_id", "trade_id"),
        "metrics": lake.read("metrics").sort("run_id", "segment", "name"),
    }


@pytest.mark.prefect
@pytest.mark.timeout(300)
def test_task_failing_after_its_commit_is_retried_without_duplicates(
    prefect_harness, s3_settings: Settings, moto_endpoint: str, tmp_path: Path
):
    configs = [sma("SYN0", 5, 20), sma("SYN1", 10, 40), sma("SYN2", 3, 15),
               sma("NOPE", 5, 20)]  # not ingested: a failed run, recorded as such
    flaky = Lake(s3_settings)
    bucket = f"clean-{os.urandom(5).hex()}"
    make_bucket(moto_endpoint, bucket)
    clean = Lake(Settings(lake_uri=f"s3://{bucket}/research"))
    for lake in (flaky, clean):
        ingest_synthetic(lake, SYMBOLS[:3])

    counter = tmp_path / "attempts"
    ids = flaky_backtest_flow(configs, flaky.settings.lake_uri, str(counter))
    assert int(counter.read_text()) == 2, "the commit task should have run twice (failed once, then retried)"
    assert flaky_backtest_flow(configs, clean.settings.lake_uri) == ids  # same data versions -> same run ids

    got, want = lake_contents(flaky), lake_contents(clean)
    assert want["runs"]["status"].to_list().count("failed") == 1
    assert want["equity"].height == 3 * N_BARS
    for table in got:
        assert got[table].height == want[table].height, (
            f"{table}: {got[table].height} rows, a single clean commit wrote {want[table].height}")
        assert got[table].equals(want[table]), f"{table} differs from a single clean commit"
    assert_unique(got["runs"], ["run_id"], "runs")
    assert_unique(got["run_events"], ["run_id", "status"], "run_events")
    assert_unique(got["trades"], ["run_id", "trade_id"], "trades")
    assert_unique(got["metrics"], ["run_id", "segment", "name"], "metrics")

    # the sweep case: a trial batch written twice lands once
    cfg = BacktestConfig.model_validate(sma("SYN0", 5, 20))
    plan = plan_sweep(flaky, cfg, {"fast": [3, 5, 8, 13], "slow": [15, 20, 30, 40]}, chunk_size=3)
    frames = [run_chunk(flaky, plan, k) for k in range(len(plan.chunks))]
    groups = batches(len(plan.chunks), max_batches=3)
    assert len(groups) > 1
    first = [frames[k] for k in groups[0]]
    assert commit_trial_batch(flaky, plan, 0, first) is True
    v = flaky.version("trials")
    assert commit_trial_batch(flaky, plan, 0, first) is False
    assert flaky.version("trials") == v  # no empty commit either
    for b, group in enumerate(groups):
        commit_trial_batch(flaky, plan, b, [frames[k] for k in group])
    assert all(commit_trial_batch(flaky, plan, b, [frames[k] for k in g]) is False for b, g in enumerate(groups))
    attempt = Attempt.new()
    gen = claim(flaky, [plan.run_id], attempt).claimed[plan.run_id]
    finish_sweep(flaky, plan, frames, dt.datetime.now(dt.UTC), attempt=attempt, generation=gen)
    # a retried finish
    finish_sweep(flaky, plan, frames, dt.datetime.now(dt.UTC), attempt=attempt, generation=gen)
    trials = flaky.read("trials", where={"parent_id": plan.run_id})
    assert trials.height == plan.report.n_valid
    assert sorted(trials["trial"].to_list()) == list(range(plan.report.n_valid))
    assert flaky.read("runs", where={"run_id": plan.run_id}).height == 1
    assert sorted(flaky.read("run_events", where={"run_id": plan.run_id})["status"].to_list()) == [
        "completed", "pending", "running"]


# -- 3. a flow process killed with SIGKILL mid-sweep --------------------------------------------
SWEEP_CHILD = r"""
import json, sys
from flows.sweep import sweep_flow
print("SUMMARY " + json.dumps(sweep_flow(**json.loads(sys.argv[1])), default=str))
"""

SWEEP_CFG = {"strategy": "sma_crossover", "params": {"fast": 10, "slow": 30}, "universe": ["SYN0"]}
SWEEP_GRID = {"fast": list(range(2, 26)), "slow": list(range(10, 210, 10))}
SWEEP_CHUNK = 15


def sweep_best(cfg: BacktestConfig, grid: dict, bars: pl.DataFrame, objective: str = "sharpe") -> dict:
    """The best combination of a compute-only sweep (ties: the first in grid order)."""
    df = sweep(cfg, grid, bars).with_row_index("trial")
    best = df.filter(pl.col(objective).is_not_null()).sort(
        [objective, "trial"], descending=[True, False]).row(0, named=True)
    return {k: best[k] for k in grid}


@pytest.mark.prefect
@pytest.mark.timeout(400)
def test_sweep_killed_mid_flight_leaves_nothing_visible_and_reruns_cleanly(
    prefect_harness, s3_settings: Settings, tmp_path: Path
):
    lake = Lake(s3_settings)
    ingest_synthetic(lake, ("SYN0",), periods=1500, seed=3)
    lake.ensure_all()
    cfg = BacktestConfig.model_validate(SWEEP_CFG)
    plan = plan_sweep(lake, cfg, SWEEP_GRID, chunk_size=SWEEP_CHUNK)
    n_batches = len(batches(len(plan.chunks)))
    assert n_batches == 8 and plan.report.n_valid > 400
    args = {"config": SWEEP_CFG, "grid": SWEEP_GRID, "chunk_size": SWEEP_CHUNK}

    prefect_home = tmp_path / "prefect-home"
    prefect_home.mkdir()
    env = child_env(PREFECT_HOME=str(prefect_home), PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS="120",
                    PREFECT_LOGGING_LEVEL="INFO")
    log = tmp_path / "sweep-flow.log"
    t0 = time.monotonic()
    with spawned([sys.executable, "-c", SWEEP_CHILD, json.dumps(args)], log, env) as proc:
        def committed() -> bool:
            if proc.poll() is not None:
                pytest.fail(f"the sweep flow ended (rc={proc.returncode}) before it was killed:\n"
                            f"{log.read_text()[-5000:]}")
            return lake.version("trials") >= 1

        try:
            wait_until(committed, 180, "first trial batch committed", interval=0.05)
        except TimeoutError:
            pytest.fail(f"no trial batch committed within 180s:\n{log.read_text()[-5000:]}")
        pgid = proc.pid
        os.killpg(pgid, signal.SIGKILL)
        print(f"\nkilled after {time.monotonic() - t0:.1f}s at trials version {lake.version('trials')}")
        proc.wait(timeout=15)
        assert proc.returncode == -signal.SIGKILL
        # the temporary Prefect server it started went down with it
        wait_until(lambda: not group_members(pgid), 15, "killed process group gone")

    trials = lake.read("trials", where={"parent_id": plan.run_id})
    assert 0 < trials.height < plan.report.n_valid, (
        f"the kill should land mid-sweep: {trials.height} of {plan.report.n_valid} trials committed")
    sizes = [sum(len(plan.chunks[k]) for k in group) for group in batches(len(plan.chunks))]
    assert trials.height in {sum(sizes[:b]) for b in range(1, n_batches)}  # whole batches only
    assert lake.read("runs", where={"run_id": plan.run_id}).is_empty(), "a killed sweep is visible in runs"
    visible = (lake.read("runs").filter(pl.col("status") == "completed")
               .join(lake.read("trials"), left_on="run_id", right_on="parent_id"))
    assert visible.filter(pl.col("run_id") == plan.run_id).is_empty()
    events = lake.read("run_events", where={"run_id": plan.run_id})["status"].to_list()
    assert sorted(events) == ["pending", "running"]  # SIGKILL: no hook ran
    killed_trials = trials
    killed_version = lake.version("trials")
    committed_batches = [sum(sizes[:b]) for b in range(n_batches + 1)].index(trials.height)

    # rerun the same sweep (same data -> same run id): it completes, and the batch committed
    # before the kill is not written again
    from flows.sweep import sweep_flow

    t1 = time.monotonic()
    summary = sweep_flow(**args)
    print(f"rerun took {time.monotonic() - t1:.1f}s; {killed_trials.height} trials were committed before the kill")
    assert summary["run_id"] == plan.run_id
    runs = lake.read("runs", where={"run_id": plan.run_id})
    assert runs.height == 1 and runs["status"][0] == "completed" and runs["kind"][0] == "sweep"
    trials = lake.read("trials", where={"parent_id": plan.run_id})
    assert trials.height == plan.report.n_valid
    assert_unique(trials, ["trial"], "trials")
    assert sorted(trials["trial"].to_list()) == list(range(plan.report.n_valid))
    by_trial = {t: json.loads(p) for t, p in trials.select("trial", "params").iter_rows()}
    assert by_trial == {t: {k: c[k] for k in by_trial[t]} for t, c in enumerate(plan.combos)}
    assert all(set(p) >= set(SWEEP_GRID) for p in by_trial.values())
    # the trials written before the kill are still exactly the ones the rerun would write
    before = killed_trials.sort("trial")
    after = trials.filter(pl.col("trial").is_in(before["trial"].to_list())).sort("trial")
    assert before.equals(after)
    # one commit per batch still missing: the rerun skipped the landed ones without empty commits
    assert lake.version("trials") == killed_version + n_batches - committed_batches

    bars = load_bars(lake, cfg, plan.data_versions["bars"])
    best = sweep_best(cfg, SWEEP_GRID, bars)
    assert summary["best_params"] == best
    assert json.loads(runs["params"][0]) == {**cfg.params, **best}
    events = lake.read("run_events", where={"run_id": plan.run_id})
    # the rerun found the killed attempt gone (its process no longer exists), ended it
    # crashed and took the run over: one set of events per attempt
    assert sorted(events["status"].to_list()) == ["completed", "crashed", "pending", "pending", "running", "running"]
    assert events["attempt"].n_unique() == 2


# -- 4. a running sweep cancelled through Prefect ---------------------------------------------
SERVE_CHILD = r"""
from flows.sweep import sweep_flow
sweep_flow.serve(name="cancel-test")
"""

# long enough that after its first batch commit the sweep still has most of its work ahead of
# it (a minute or more here), far longer than a cancellation takes to reach it
CANCEL_CFG = {"strategy": "bollinger_bands", "params": {"window": 20, "num_std": 2.0}, "universe": ["SYN0"]}
CANCEL_GRID = {"window": list(range(5, 125)), "num_std": [round(1.0 + 0.05 * i, 2) for i in range(60)]}
CANCEL_CHUNK = 50


async def flow_run_state(flow_run_id):
    from prefect.client.orchestration import get_client

    async with get_client() as client:
        return (await client.read_flow_run(flow_run_id)).state


async def request_cancellation(flow_run_id):
    """What ``prefect flow-run cancel`` and the UI's Cancel button do: propose CANCELLING."""
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.objects import StateType
    from prefect.states import State

    async with get_client() as client:
        return await client.set_flow_run_state(flow_run_id, State(type=StateType.CANCELLING))


@pytest.mark.prefect
@pytest.mark.timeout(420)
def test_sweep_cancelled_through_prefect_ends_cancelled_with_nothing_visible(
    prefect_harness, s3_settings: Settings, tmp_path: Path
):
    import asyncio

    from prefect.client.schemas.objects import StateType
    from prefect.deployments import run_deployment
    from prefect.settings import get_current_settings

    lake = Lake(s3_settings)
    ingest_synthetic(lake, ("SYN0",), periods=50_000, seed=4)
    lake.ensure_all()
    plan = plan_sweep(lake, BacktestConfig.model_validate(CANCEL_CFG), CANCEL_GRID, chunk_size=CANCEL_CHUNK)
    sizes = [sum(len(plan.chunks[k]) for k in group) for group in batches(len(plan.chunks))]
    assert len(sizes) == 8 and plan.report.n_valid == 7200

    # a served deployment of the sweep flow (a Prefect runner in its own process, talking to
    # this session's Prefect server): cancellation reaches a flow run through its runner
    prefect_home = tmp_path / "prefect-home"
    prefect_home.mkdir()
    env = child_env(PREFECT_API_URL=str(get_current_settings().api.url), PREFECT_HOME=str(prefect_home),
                    PREFECT_LOGGING_LEVEL="INFO")
    log = tmp_path / "runner.log"
    t0 = time.monotonic()
    with spawned([sys.executable, "-c", SERVE_CHILD], log, env) as runner:
        def submitted():
            if runner.poll() is not None:
                pytest.fail(f"the runner exited (rc={runner.returncode}):\n{log.read_text()[-5000:]}")
            try:  # the deployment exists once the runner has registered it
                return run_deployment("sweep/cancel-test", timeout=0, parameters={
                    "config": CANCEL_CFG, "grid": CANCEL_GRID, "chunk_size": CANCEL_CHUNK})
            except Exception:
                return None

        flow_run = wait_until(submitted, 90, "deployment sweep/cancel-test served", interval=0.5)

        def first_batch_committed() -> bool:
            state = asyncio.run(flow_run_state(flow_run.id))
            if state is not None and state.is_final():
                pytest.fail(f"the sweep ended ({state.type.value}) before it was cancelled:\n{log.read_text()[-5000:]}")
            return lake.version("trials") >= 1

        wait_until(first_batch_committed, 240, "first trial batch committed", interval=0.2)
        committed_at_cancel = lake.read("trials", where={"parent_id": plan.run_id}).height
        assert asyncio.run(request_cancellation(flow_run.id)).status.value == "ACCEPT"
        t_cancel = time.monotonic()
        state = wait_until(lambda: (st := asyncio.run(flow_run_state(flow_run.id))).is_final() and st, 150,
                           "flow run reached a final state", interval=0.5)
        print(f"\ncancel requested {t_cancel - t0:.1f}s in with {committed_at_cancel} trials committed; "
              f"{state.type.value} {time.monotonic() - t_cancel:.1f}s later")
        assert state.type == StateType.CANCELLED, f"{state.type}: {state.message}\n{log.read_text()[-5000:]}"

        # nothing visible: no runs row, and the flow process is gone, so nothing more lands
        versions = {t: lake.version(t) for t in ("trials", "runs", "run_events")}
        time.sleep(3)
        assert {t: lake.version(t) for t in versions} == versions, "the cancelled sweep kept writing"
        assert runner.poll() is None, "cancelling a flow run must not take its runner down"

    assert lake.read("runs", where={"run_id": plan.run_id}).is_empty(), "a cancelled sweep is visible in runs"
    trials = lake.read("trials", where={"parent_id": plan.run_id})
    assert 0 < trials.height < plan.report.n_valid, "the cancellation should land mid-sweep"
    assert trials.height in {sum(sizes[:b]) for b in range(1, len(sizes))}  # whole batches only
    assert_unique(trials, ["trial"], "trials")
    with connect(s3_settings) as con:  # readers join completed runs only: the sweep's trials stay hidden
        n = con.sql("SELECT count(*) FROM runs r JOIN trials t ON t.parent_id = r.run_id "
                    "WHERE r.status = 'completed'").fetchone()[0]
    assert n == 0
    events = lake.read("run_events", where={"run_id": plan.run_id}).sort("ts")
    assert events["status"].to_list() == ["pending", "running", "cancelled"]
    assert events["message"][-1]  # the cancellation's message is kept


# -- 5. replay against the recorded data versions ---------------------------------------------
@pytest.mark.prefect
@pytest.mark.timeout(300)
def test_replay_pinned_to_recorded_versions_reproduces_metrics(prefect_harness, s3_settings: Settings):
    from flows.backtest import backtest_flow

    lake = Lake(s3_settings)
    ingest_synthetic(lake, ("SYN0", "SYN1"), seed=5)
    raw = {**sma("SYN0", 5, 20), "costs": {"commission_bps": 5}}
    (out,) = backtest_flow(raw)
    assert out["status"] == "completed"
    rid = out["run_id"]
    (stored,) = lake.read("runs", where={"run_id": rid}).to_dicts()
    versions = json.loads(stored["data_versions"])
    stored_metrics = lake.read("metrics", where={"run_id": rid})
    stored_equity = lake.read("equity", where={"run_id": rid}).drop("run_id").sort("ts")
    assert stored_equity.height == N_BARS and stored_metrics.height > 10

    # new bars: SYN0 continues after its last bar, and one more symbol arrives
    last = lake.read("bars", where={"symbol": "SYN0"}).sort("ts").row(-1, named=True)
    more = synthetic_bars(("SYN0",), start=last["ts"] + dt.timedelta(days=1), periods=60, seed=6,
                          start_price=last["close"])
    assert ingest_bars(lake, more).rows_new == 60
    ingest_synthetic(lake, ("SYN9",), seed=7)
    assert lake.version("bars") > versions["bars"]

    # replay: the stored config on the stored versions
    cfg = BacktestConfig.model_validate(json.loads(stored["config"]))
    assert cfg.id == stored["config_id"]
    fp = fingerprint(cfg, load_bars(lake, cfg, versions["bars"]))
    assert fp == stored["data_fingerprint"]
    replay = execute_run(lake, PlannedRun(rid, cfg, versions, fp))
    assert replay.error is None
    got = metric_map(replay.result)
    want = {(r["segment"], r["name"]): r["value"] for r in stored_metrics.iter_rows(named=True)}
    assert got.keys() == want.keys()
    diff = {k: (want[k], got[k]) for k in want if not same_value(want[k], got[k])}
    assert not diff, f"replayed metrics differ (stored, replayed): {diff}"
    for name in ("total_return", "cagr", "sharpe", "sortino", "max_drawdown"):
        assert same_value(stored[name], replay.result.metrics.get(name)), name
    assert replay.result.equity.select(stored_equity.columns).sort("ts").equals(stored_equity)

    # the same config on the new data is a different run, and sees the new bars
    (fresh,) = plan_runs(lake, [cfg])
    assert fresh.run_id != rid and not fresh.done
    assert fresh.data_versions == {"bars": lake.version("bars")}
    assert execute_run(lake, fresh).result.equity.height == N_BARS + 60
