"""Durable progress (``run_progress``): the throttled lake listener on a real lake, a real sweep
flow run writing its chunks' progress, the dashboard store's latest-per-run read, and
maintenance deleting the rows of runs that ended before the retention cut-off."""

from __future__ import annotations

import datetime as dt
import time

import polars as pl
import pytest

from backlake import progress
from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.lake import Lake
from backlake.lake.maintenance import maintain
from backlake.runs.events import Attempt, End, claim, finish
from backlake.runs.progress import DEFAULT_INTERVAL, LakeProgress, latest, prune, recording
from backlake.settings import Settings
from dashboards.store import LakeStore

CFG = {"strategy": "sma_crossover", "universe": ["SYN0"], "costs": {"commission_bps": 5}}
GRID = {"fast": [3, 5, 8, 13], "slow": [10, 20, 30, 40, 60]}


class Clock:
    """A clock the test moves by hand (the throttle's time source)."""

    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def lake(local_settings: Settings) -> Lake:
    return Lake(local_settings)


def rows(lake: Lake, run_id: str) -> list[tuple[int, int, str]]:
    df = lake.read("run_progress", where={"run_id": run_id}).sort("ts")
    return list(zip(df["done"].to_list(), df["total"].to_list(), df["unit"].to_list()))


def test_writes_are_throttled_first_and_final_at_once(lake: Lake):
    clock = Clock()
    w = LakeProgress(lake, "r1", "att-1", job="sweep r1", min_interval=60.0, clock=clock)
    with progress.listening(w):
        progress.report("sweep r1", 0, 8, "chunks")      # first: written
        for k in (1, 2, 3):
            progress.report("sweep r1", k, 8, "chunks")  # within the interval: held back
        progress.report("other job", 5, 9, "trials")     # another job's report: not this run's
        assert rows(lake, "r1") == [(0, 8, "chunks")]
        clock.t += 61                                    # the interval is over: the next is written
        progress.report("sweep r1", 4, 8, "chunks")
        progress.report("sweep r1", 5, 8, "chunks")      # held back again...
        progress.report("sweep r1", 8, 8, "chunks")      # ...but the final one always goes
    w.close()
    assert rows(lake, "r1") == [(0, 8, "chunks"), (4, 8, "chunks"), (8, 8, "chunks")]
    assert w.writes == 3 and w.failures == 0
    assert lake.read("run_progress")["attempt"].unique().to_list() == ["att-1"]


def test_a_held_back_report_is_written_by_the_timer_and_on_close(lake: Lake):
    with recording(lake, "r2", "att-2", job="optimize r2", min_interval=0.5) as w:
        progress.report("optimize r2", 0, 50, "trials")
        progress.report("optimize r2", 7, 50, "trials")   # held back, the timer writes it
        deadline = time.monotonic() + 10
        while len(rows(lake, "r2")) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert rows(lake, "r2") == [(0, 50, "trials"), (7, 50, "trials")]
        progress.report("optimize r2", 9, 50, "trials")   # held back: written when the block ends
    assert rows(lake, "r2")[-1] == (9, 50, "trials") and w.writes == 3
    progress.report("optimize r2", 10, 50, "trials")      # after the block: nobody listens
    assert len(rows(lake, "r2")) == 3


def test_a_failing_write_never_fails_the_reporter(tmp_path):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the lake's directory should be")
    broken = Lake(Settings(lake_uri=str(blocker / "lake")), check=False)
    w = LakeProgress(broken, "r3", "att-3", min_interval=0.0)
    with progress.listening(w):
        progress.report("anything", 1, 2, "seeds")  # must not raise
        progress.report("anything", 2, 2, "seeds")
    w.close()
    assert w.writes == 0 and w.failures == 2


def test_a_retried_write_adds_nothing(lake: Lake):
    w = LakeProgress(lake, "r4", "att-4", min_interval=0.0)
    w(progress.Progress("x", 1, 4, "windows"))
    # the same sequence number again (a retry after the commit landed): the mark says it is in
    again = LakeProgress(lake, "r4", "att-4", min_interval=0.0)
    again(progress.Progress("x", 1, 4, "windows"))
    assert rows(lake, "r4") == [(1, 4, "windows")]
    w(progress.Progress("x", 2, 4, "windows"))
    assert rows(lake, "r4") == [(1, 4, "windows"), (2, 4, "windows")]
    assert latest(lake, ["r4", "nope"]).select("run_id", "done", "total").rows() == [("r4", 2, 4)]


def test_store_reads_the_latest_report_of_the_attempt_running_it(lake: Lake, local_settings: Settings):
    old, new = Attempt.new(tag="old"), Attempt.new(tag="new")
    got = claim(lake, ["run-a"], old)
    LakeProgress(lake, "run-a", old.id, min_interval=0.0)(progress.Progress("j", 5, 8, "chunks"))
    finish(lake, [End("run-a", got.claimed["run-a"], "crashed", "gone")], old)
    claim(lake, ["run-a"], new)  # a new attempt: the old one's 5/8 is not its progress
    store = LakeStore(local_settings)
    assert store.progress(["run-a"]).empty
    LakeProgress(lake, "run-a", new.id, min_interval=0.0)(progress.Progress("j", 1, 8, "chunks"))
    store.refresh()
    df = store.progress(["run-a", "run-b"])
    assert df[["run_id", "done", "total", "unit"]].values.tolist() == [["run-a", 1, 8, "chunks"]]


def test_prune_deletes_the_rows_of_runs_ended_before_the_cutoff(lake: Lake):
    a = Attempt.new()
    got = claim(lake, ["ended", "going"], a)
    for rid in ("ended", "going"):
        LakeProgress(lake, rid, a.id, min_interval=0.0)(progress.Progress("j", 3, 3, "seeds"))
    finish(lake, [End("ended", got.claimed["ended"], "completed")], a)
    now = dt.datetime.now(dt.UTC)
    assert prune(lake, now - dt.timedelta(days=1)) == 0  # ended after the cut-off: kept
    assert prune(lake, now + dt.timedelta(seconds=5), dry_run=True) == 1
    assert lake.read("run_progress").height == 2
    report = maintain(lake, failed_retention_days=-1.0, vacuum_retention_hours=None)  # cut-off: tomorrow
    assert report.progress_rows == 1
    assert lake.read("run_progress")["run_id"].to_list() == ["going"]  # still running: kept


@pytest.mark.prefect
@pytest.mark.slow
def test_a_sweep_flow_records_its_chunks_ending_at_total(prefect_harness, lake: Lake):
    from flows.sweep import sweep_flow

    ingest_bars(lake, synthetic_bars(("SYN0",), periods=500, seed=2))
    t0 = time.monotonic()
    state = sweep_flow(CFG, GRID, chunk_size=3, return_state=True)
    elapsed = time.monotonic() - t0
    out = state.result()
    df = lake.read("run_progress", where={"run_id": out["run_id"]}).sort("ts")
    assert df["unit"].unique().to_list() == ["chunks"] and df["total"].unique().to_list() == [7]
    assert df["done"][0] == 0 and df["done"][-1] == 7  # the first report and the final one
    assert df["done"].is_sorted()
    # throttled: the first, the final, and at most one per interval in between
    assert 2 <= df.height <= 2 + int(elapsed / DEFAULT_INTERVAL) + 1
    # written as the flow run's attempt: the one its running event names
    running = lake.read("run_events", where={"run_id": out["run_id"]}).filter(pl.col("status") == "running")
    assert df["attempt"].unique().to_list() == [str(state.state_details.flow_run_id)]
    assert running["attempt"].to_list() == [str(state.state_details.flow_run_id)]
