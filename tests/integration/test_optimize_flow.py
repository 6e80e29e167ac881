"""The optimize flow fans the study's trials out as Prefect tasks, a batch at a time, and
stores the same study the library computes; the Dask runner gives the same study."""

from __future__ import annotations

import asyncio
import json

import pytest

import backlake as bl
from backlake import progress
from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.errors import ConfigError
from backlake.lake import Lake
from backlake.research.optimize import optimize
from backlake.runs.data import load_bars
from backlake.settings import Settings

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

CFG = {"strategy": "sma_crossover", "universe": ["SYN0"], "costs": {"commission_bps": 5}}
SPACE = {"fast": {"low": 3, "high": 15}, "slow": {"low": 20, "high": 60, "step": 10}}


@pytest.fixture
def lake(local_settings: Settings) -> Lake:
    lk = Lake(local_settings)
    ingest_bars(lk, synthetic_bars(("SYN0",), periods=500, seed=2))
    return lk


async def task_run_names(flow_run_id) -> list[str]:
    from prefect.client.orchestration import get_client
    from prefect.client.schemas.filters import FlowRunFilter, FlowRunFilterId

    async with get_client() as client:
        runs = await client.read_task_runs(flow_run_filter=FlowRunFilter(id=FlowRunFilterId(any_=[flow_run_id])))
    return sorted(r.name for r in runs)


def test_trials_run_as_parallel_tasks_and_match_the_library_study(prefect_harness, lake: Lake):
    from flows.research import optimize_flow

    seen: list[progress.Progress] = []
    with progress.listening(seen.append):
        state = optimize_flow(CFG, SPACE, n_trials=10, seed=3, parallel=4, return_state=True)
    out = state.result()
    # one task per trial (the best parameters' final backtest runs in the flow itself)
    names = asyncio.run(task_run_names(state.state_details.flow_run_id))
    assert names == sorted(f"trial-{n}" for n in range(10))
    # the stored study is the library's study with the same seed and batch size
    cfg = bl.BacktestConfig.model_validate(CFG)
    ref = optimize(cfg, SPACE, load_bars(lake, cfg, lake.version("bars")), n_trials=10, seed=3, batch_size=4)
    trials = lake.read("trials", where={"parent_id": out["run_id"]}).drop("parent_id").sort("trial")
    ref_rows = ref.trials_frame()
    assert trials.select(ref_rows.columns).equals(ref_rows)
    assert out["best_params"] == ref.best_params and out["pbo"] == ref.pbo
    run = lake.read("runs", where={"run_id": out["run_id"]}).row(0, named=True)
    assert run["kind"] == "optimize" and json.loads(run["params"]) == {**cfg.params, **ref.best_params}
    # the running event names the Prefect flow run (the stop hooks find the run by it)
    events = lake.read("run_events", where={"run_id": out["run_id"]}).sort("ts")
    assert events["status"].to_list() == ["pending", "running", "completed"]
    assert events["message"][1] == f"prefect flow run {state.state_details.flow_run_id}"
    # progress: one report per told trial, in order, ending at 10 / 10
    mine = [(p.done, p.total) for p in seen if p.unit == "trials"]
    assert mine == [(n, 10) for n in range(11)]
    # the batch size is part of the study's identity: another one is another run
    assert optimize_flow(CFG, SPACE, n_trials=10, seed=3, parallel=4)["status"] == "existing"
    seen.clear()
    with progress.listening(seen.append):
        state = optimize_flow(CFG, SPACE, n_trials=10, seed=3, parallel=1, return_state=True)
    one = state.result()
    assert one["run_id"] != out["run_id"]
    # parallel=1: the sequential study in a single task, reporting each trial all the same
    names = asyncio.run(task_run_names(state.state_details.flow_run_id))
    assert len(names) == 1 and names[0].startswith("study_task")
    assert [(p.done, p.total) for p in seen if p.unit == "trials"] == [(n, 10) for n in range(11)]
    seq = optimize(cfg, SPACE, load_bars(lake, cfg, lake.version("bars")), n_trials=10, seed=3)
    rows = lake.read("trials", where={"parent_id": one["run_id"]}).drop("parent_id").sort("trial")
    assert rows.select(seq.trials_frame().columns).equals(seq.trials_frame())


def test_optimize_on_dask_gives_the_same_study(prefect_harness, lake: Lake):
    from flows._common import task_runner
    from flows.research import optimize_flow

    a = optimize_flow(CFG, SPACE, n_trials=6, seed=5, parallel=3)
    rows_a = lake.read("trials", where={"parent_id": a["run_id"]}).sort("trial")
    # the same request again lands on the stored run: use a fresh lake for the Dask run
    uri = str(lake.settings.lake_uri) + "-dask"
    lk = Lake(Settings(lake_uri=uri))
    ingest_bars(lk, synthetic_bars(("SYN0",), periods=500, seed=2))
    b = optimize_flow.with_options(task_runner=task_runner("dask", n_workers=2))(
        CFG, SPACE, n_trials=6, seed=5, parallel=3, lake_uri=uri)
    rows_b = lk.read("trials", where={"parent_id": b["run_id"]}).sort("trial")
    assert a == b
    assert rows_a.equals(rows_b)


def test_bad_parallel_fails_before_any_task(prefect_harness, lake: Lake):
    from flows.research import optimize_flow

    with pytest.raises(ConfigError, match="parallel=0"):
        optimize_flow(CFG, SPACE, n_trials=4, parallel=0)
    with pytest.raises(ConfigError, match="sampler='grid' needs a list"):
        optimize_flow(CFG, SPACE, n_trials=4, sampler="grid")
    assert lake.read("run_events").height == 0
