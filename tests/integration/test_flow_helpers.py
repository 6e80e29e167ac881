"""Flow helpers: the cancellation / crash hook records the stop for exactly the lake runs its
flow run started and did not finish (found through their ``running`` events); pinned bars
travel to Dask workers as a reference and are read there at their pinned version."""

from __future__ import annotations

import datetime as dt
import pickle
import uuid

import pytest
from prefect.client.schemas.objects import FlowRun, StateType
from prefect.states import State

from backlake.config import BacktestConfig
from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.lake import Lake
from backlake.runs.data import load_bars
from backlake.runs.events import Attempt, End, claim, finish
from backlake.settings import Settings
from flows._common import PinnedBars, flow_run_tag, mark_stopped


def flow_attempt(flow_run_id, root=None) -> Attempt:
    """An attempt as a flow run makes it (its id and tag)."""
    return Attempt.new(str(flow_run_id), flow_run_tag(flow_run_id, root))


def test_hook_marks_only_the_unfinished_runs_of_its_flow_run(local_settings: Settings):
    lake = Lake(local_settings)
    mine, other = uuid.uuid4(), uuid.uuid4()
    a = flow_attempt(mine)
    started = claim(lake, ["a", "b"], a)
    claim(lake, ["c"], flow_attempt(other))
    finish(lake, [End("a", started.claimed["a"], "completed")], a)
    # new bars after the start do not matter: the runs are found by their events, not re-derived
    ingest_bars(lake, synthetic_bars(("SYN0",), periods=50, seed=1))

    run = FlowRun(id=mine, flow_id=uuid.uuid4(), parameters={"config": {}, "lake_uri": None})
    mark_stopped("cancelled")(None, run, State(type=StateType.CANCELLING, message="cancelled from the UI"))
    events = lake.read("run_events").sort("ts", "run_id")
    events = events.filter(events["status"] != "pending")
    last = {r: s for r, s in events.select("run_id", "status").iter_rows()}
    assert last == {"a": "completed", "b": "cancelled", "c": "running"}
    cancelled = events.filter(events["status"] == "cancelled")
    assert cancelled["run_id"].to_list() == ["b"] and cancelled["message"].to_list() == ["cancelled from the UI"]

    # a second delivery (runner and engine both reacting) adds nothing
    version = lake.version("run_events")
    mark_stopped("cancelled")(None, run, State(type=StateType.CANCELLING))
    assert lake.version("run_events") == version



def test_hook_sees_a_rerun_after_an_earlier_cancellation_and_subflows_of_its_root(local_settings: Settings):
    lake = Lake(local_settings)
    first, second, root = uuid.uuid4(), uuid.uuid4(), uuid.uuid4()
    cancel = State(type=StateType.CANCELLING, message="cancelled")
    # attempt 1 of run "s" is cancelled
    claim(lake, ["s"], flow_attempt(first))
    mark_stopped("cancelled")(None, FlowRun(id=first, flow_id=uuid.uuid4(), parameters={}), cancel)
    # attempt 2 (a rerun, as a subflow of a demo-like parent) is cancelled through its root
    assert claim(lake, ["s"], flow_attempt(second, root)).claimed == {"s": 2}
    assert flow_run_tag(second, root) == f"prefect flow run {second} (in {root})"
    mark_stopped("cancelled")(None, FlowRun(id=root, flow_id=uuid.uuid4(), parameters={}), cancel)
    events = lake.read("run_events").sort("ts")
    statuses = events.filter(events["status"] != "pending")["status"].to_list()
    assert statuses == ["running", "cancelled", "running", "cancelled"]
    assert events["attempt"].to_list() == [str(first)] * 3 + [str(second)] * 3

def test_hook_never_raises(tmp_path, caplog: pytest.LogCaptureFixture):
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("a file where the lake directory should be")
    run = FlowRun(id=uuid.uuid4(), flow_id=uuid.uuid4(), parameters={"lake_uri": str(blocker / "lake")})
    mark_stopped("failed")(None, run, State(type=StateType.CRASHED, message="process died"))
    assert "could not record failed" in caplog.text


def test_pinned_bars_pickle_as_a_reference_and_load_their_version(local_settings: Settings):
    lake = Lake(local_settings)
    ingest_bars(lake, synthetic_bars(("SYN0", "SYN1"), periods=2000, seed=1))
    cfg = BacktestConfig.model_validate({"strategy": "sma_crossover", "universe": ["SYN0"]})
    version = lake.version("bars")
    frame = load_bars(lake, cfg, version)
    pinned = PinnedBars(frame, None, cfg, version)
    assert pinned.value is frame  # on this process: the frame itself
    blob = pickle.dumps(pinned)
    assert len(blob) < 20_000 < frame.estimated_size()  # the reference, not the rows
    # more bars land after the flow pinned its version: the worker still reads the pinned ones
    last = frame.filter(frame["symbol"] == "SYN0")["ts"].max()
    ingest_bars(lake, synthetic_bars(("SYN0",), start=last + dt.timedelta(days=1), periods=100, seed=1))
    assert lake.version("bars") > version
    on_worker = pickle.loads(blob)
    assert on_worker.value.equals(frame)
    assert pickle.loads(blob).value is on_worker.value  # read once per process, then shared
