"""Flow runs are findable in the Prefect UI: named after what they do, tagged with their kind,
strategy and user, and each publishes a markdown artifact naming its lake run(s) and the
``backlake sql`` line to query them, whether started by the CLI or by calling the flow."""

from __future__ import annotations

import json
import uuid

import pytest
from prefect import tags as prefect_tags
from prefect.client.orchestration import get_client
from prefect.client.schemas.filters import (
    ArtifactFilter,
    ArtifactFilterFlowRunId,
    FlowRunFilter,
    FlowRunFilterTags,
)
from prefect.client.schemas.objects import FlowRun

from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.errors import ConfigError
from backlake.lake import Lake
from backlake.settings import Settings
from flows.backtest import backtest_flow
from flows.sweep import sweep_flow

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

CFG = {"strategy": "sma_crossover", "universe": ["SYN0"], "params": {"fast": 5, "slow": 20}}
GRID = {"fast": [3, 5], "slow": [20, 30, 40]}


@pytest.fixture
def lake(local_settings: Settings) -> Lake:
    lk = Lake(local_settings)
    ingest_bars(lk, synthetic_bars(("SYN0", "SYN1"), periods=300, seed=4))
    return lk


@pytest.fixture
def user(monkeypatch: pytest.MonkeyPatch) -> str:
    """A user of this test only (``BACKLAKE_USER``): its tag finds the test's flow runs."""
    name = f"tester-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("BACKLAKE_USER", name)
    return name


def flow_runs_of(user: str) -> list[FlowRun]:
    """The flow runs tagged ``user:<user>``."""
    with get_client(sync_client=True) as client:
        return client.read_flow_runs(flow_run_filter=FlowRunFilter(tags=FlowRunFilterTags(all_=[f"user:{user}"])))


def read_flow_run(flow_run_id) -> FlowRun:
    with get_client(sync_client=True) as client:
        return client.read_flow_run(flow_run_id)


def markdown_of(flow_run_id) -> list[tuple[str, str]]:
    """(key, markdown) of the flow run's markdown artifacts."""
    with get_client(sync_client=True) as client:
        arts = client.read_artifacts(artifact_filter=ArtifactFilter(
            flow_run_id=ArtifactFilterFlowRunId(any_=[flow_run_id])))
    return [(a.key or "", str(a.data)) for a in arts if a.type == "markdown"]


def lake_runs(lake: Lake, kind: str) -> list[dict]:
    return lake.read("runs").filter(kind=kind).to_dicts()


def assert_labelled(run: FlowRun, name: str, kind: str, user: str) -> None:
    assert run.name == name
    assert {f"kind:{kind}", "strategy:sma_crossover", f"user:{user}"} <= set(run.tags)


def assert_artifact(run: FlowRun, key_prefix: str, run_id: str, sql: str) -> str:
    (key, md), *more = markdown_of(run.id)
    assert not more and key.startswith(key_prefix) and run_id in key
    assert f"`{run_id}`" in md and f'backlake sql "{sql}"' in md
    return md


def test_backtest_from_the_cli_and_the_flow_is_named_tagged_and_published(prefect_harness, lake: Lake, user: str,
                                                                           tmp_path, capsys):
    from flows.cli import main as cli

    (tmp_path / "cfg.json").write_text(json.dumps(CFG))
    assert cli(["backtest", str(tmp_path / "cfg.json")]) == 0
    capsys.readouterr()
    (run,) = flow_runs_of(user)
    assert_labelled(run, "backtest sma_crossover SYN0 fast=5 slow=20", "backtest", user)
    (row,) = lake_runs(lake, "backtest")
    assert row["created_by"] == user and row["status"] == "completed"
    md = assert_artifact(run, "backtest-", row["run_id"], f"SELECT * FROM metrics WHERE run_id = '{row['run_id']}'")
    assert f"{row['total_return']:.2%}" in md and f"| Sharpe | {row['sharpe']:.2f} |" in md
    assert f"| trades | {row['n_trades']} |" in md

    # the flow called directly, inside a tag context (as a deployment's tags): those are kept
    second = {**CFG, "universe": ["SYN1"], "params": {}}  # defaults appear in the name
    with prefect_tags("nightly"):
        state = backtest_flow([CFG, second], return_state=True)
    assert state.is_completed()
    run = read_flow_run(state.state_details.flow_run_id)
    assert_labelled(run, "backtest 2 configs: sma_crossover on SYN0, SYN1", "backtest", user)
    assert "nightly" in run.tags
    ids = sorted(r["run_id"] for r in lake_runs(lake, "backtest"))
    assert len(ids) == 2
    (key, md), = markdown_of(run.id)
    assert key.startswith("backtest-2-runs-") and all(f"`{r}`" in md for r in ids)
    assert "backlake sql \"SELECT * FROM runs WHERE run_id IN (" in md and "2 lake runs" in md
    assert "fast=10 slow=30" in md  # the second config's stored (default) params


def test_sweep_is_named_tagged_and_publishes_its_parent_run(prefect_harness, lake: Lake, user: str, tmp_path, capsys):
    from flows.cli import main as cli

    (tmp_path / "cfg.json").write_text(json.dumps(CFG))
    (tmp_path / "grid.json").write_text(json.dumps(GRID))
    assert cli(["sweep", str(tmp_path / "cfg.json"), "--grid", str(tmp_path / "grid.json"), "--progress", "never"]) == 0
    capsys.readouterr()
    (run,) = flow_runs_of(user)
    assert_labelled(run, "sweep sma_crossover SYN0 6 combos", "sweep", user)
    (row,) = lake_runs(lake, "sweep")
    md = assert_artifact(run, "sweep-", row["run_id"], f"SELECT * FROM trials WHERE parent_id = '{row['run_id']}' "
                         "ORDER BY objective DESC LIMIT 10")
    assert f"{row['sharpe']:.2f}" in md and "| best by | sharpe |" in md and "6 valid, 0 skipped" in md

    state = sweep_flow(CFG, GRID, objective="calmar", return_state=True)
    run = read_flow_run(state.state_details.flow_run_id)
    assert_labelled(run, "sweep sma_crossover SYN0 6 combos by calmar", "sweep", user)


def test_invalid_config_fails_with_its_config_error_under_the_plain_name(prefect_harness, lake: Lake, user: str):
    state = backtest_flow({"strategy": "sma_crossover", "params": {"fast": 5}}, return_state=True)  # no universe
    assert state.is_failed()
    with pytest.raises(ConfigError, match="universe"):
        state.result()
    run = read_flow_run(state.state_details.flow_run_id)
    assert run.name == "backtest" and {"kind:backtest", "strategy:sma_crossover", f"user:{user}"} <= set(run.tags)
    assert markdown_of(run.id) == []

    state = sweep_flow({"strategy": "sma_crosover", "universe": ["SYN0"]}, GRID, return_state=True)
    with pytest.raises(ConfigError, match="did you mean 'sma_crossover'"):
        state.result()
    run = read_flow_run(state.state_details.flow_run_id)
    assert run.name == "sweep sma_crosover SYN0 6 combos"
    assert not any(t.startswith("strategy:") for t in run.tags)  # a misspelt strategy tags nothing
    assert lake.read("runs").is_empty()


def test_a_dashboard_job_is_a_flow_run_of_its_submitter_and_a_cancelled_one_writes_nothing(prefect_harness,
                                                                                           lake: Lake, user: str):
    """The dashboard's job runner (dashboards.jobs.run_backtest_job) runs the backtest flow as the
    signed-in user who submitted it, not the dashboard's own user; cancelled before its commit,
    the flow run completes with nothing in the lake."""
    from backlake.config import BacktestConfig
    from dashboards.jobs import Job, run_backtest_job

    owner = f"{user}-signed-in"
    cfg = BacktestConfig.model_validate({**CFG, "params": {"fast": 6, "slow": 25}})
    status, run_id, message = run_backtest_job(Job(1, owner, cfg), lake.settings, lambda: True)
    assert (status, run_id) == ("cancelled", None) and "nothing was written" in message
    assert lake_runs(lake, "backtest") == []

    status, run_id, message = run_backtest_job(Job(2, owner, cfg), lake.settings, lambda: False)
    assert status == "completed" and message == ""
    (row,) = lake_runs(lake, "backtest")
    assert row["run_id"] == run_id and row["created_by"] == owner
    assert flow_runs_of(user) == []  # tagged with the submitter, not the dashboard's BACKLAKE_USER
    cancelled, done = sorted(flow_runs_of(owner), key=lambda r: r.start_time)
    for run in (cancelled, done):
        assert_labelled(run, "backtest sma_crossover SYN0 fast=6 slow=25", "backtest", owner)
        assert run.state_type.value == "COMPLETED"
    assert markdown_of(cancelled.id) == []
    assert_artifact(done, "backtest-", run_id, f"SELECT * FROM metrics WHERE run_id = '{run_id}'")
