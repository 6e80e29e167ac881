"""Research flows through real Prefect runs: sweep, regression, maintenance."""

from __future__ import annotations

import json
import re

import polars as pl
import pytest

import backlake as bl
from backlake import progress
from backlake.data.ingest import ingest_bars
from backlake.data.synthetic import synthetic_bars
from backlake.errors import ConfigError
from backlake.lake import Lake
from backlake.lake.maintenance import maintain
from backlake.runs.regression import RegressionError
from backlake.settings import Settings
from flows.backtest import backtest_flow
from flows.maintenance import maintenance_flow
from flows.regression import regression_flow
from flows.sweep import sweep_flow

pytestmark = [pytest.mark.prefect, pytest.mark.slow]

CFG = {"strategy": "sma_crossover", "universe": ["SYN0"], "costs": {"commission_bps": 5}}
GRID = {"fast": [3, 5, 8, 13], "slow": [10, 20, 30, 40, 60]}


@pytest.fixture
def lake(local_settings: Settings) -> Lake:
    lk = Lake(local_settings)
    ingest_bars(lk, synthetic_bars(("SYN0", "SYN1"), periods=500, seed=2))
    return lk


def test_sweep_flow_commits_trials_then_parent_and_is_idempotent(prefect_harness, lake: Lake):
    seen: list[progress.Progress] = []
    with progress.listening(seen.append):
        out = sweep_flow(CFG, GRID, chunk_size=3)
    assert [(e.done, e.total, e.unit) for e in seen] == [(k, 7, "chunks") for k in range(8)]  # 0/7 .. 7/7
    assert {e.job for e in seen} == {f"sweep {out['run_id'][:12]}"}
    bars = lake.read("bars")
    ref = bl.sweep(bl.BacktestConfig.model_validate(CFG), GRID, bars)
    best = ref.sort(["sharpe"], descending=True).row(0, named=True)
    assert out["best_params"] == {"fast": best["fast"], "slow": best["slow"]}
    assert out["n_valid"] == ref.height == 19 and out["n_skipped"] == 1
    trials = lake.read("trials")
    assert trials.height == 19 and trials["trial"].n_unique() == 19
    assert lake.version("trials") <= 8  # 7 chunks in at most 8 batch commits (+ create)
    runs = lake.read("runs")
    assert runs["kind"].to_list() == ["sweep"] and json.loads(runs["params"][0])["fast"] == best["fast"]
    versions = {t: lake.version(t) for t in ("trials", "runs")}
    seen.clear()
    with progress.listening(seen.append):
        again = sweep_flow(CFG, GRID, chunk_size=3)
    assert again["best_params"] == out["best_params"] and seen == []  # stored: no work to report
    assert {t: lake.version(t) for t in versions} == versions


def test_sweep_bad_input_fails_before_any_task(prefect_harness, lake: Lake):
    with pytest.raises(Exception, match="no valid combination"):
        sweep_flow(CFG, {"fast": [50], "slow": [10]})
    with pytest.raises(Exception, match="unknown objective 'sharp'"):
        sweep_flow(CFG, GRID, objective="sharp")
    assert lake.read("run_events").height == 0


def test_regression_flow_passes_on_goldens_and_reports_drift(prefect_harness, lake: Lake, tmp_path):
    out = backtest_flow([CFG, {**CFG, "params": {"fast": 5, "slow": 20}}])
    goldens = [{"run_id": r["run_id"], "tolerances": {"sharpe": 1e-12}} for r in out]
    rows = regression_flow(goldens)
    assert rows and all(r["ok"] for r in rows)
    # tamper with a stored metric: the flow fails with a readable diff naming it
    from deltalake import DeltaTable

    DeltaTable(lake.uri("metrics")).update(
        predicate=f"run_id = '{out[0]['run_id']}' AND name = 'sharpe' AND segment = 'full'",
        updates={"value": "value + 0.5"},
    )
    path = tmp_path / "goldens.json"
    path.write_text(json.dumps(goldens))
    with pytest.raises(RegressionError, match=f"{out[0]['run_id']}  sharpe: stored"):
        regression_flow(str(path))


def test_maintenance_keeps_pinned_versions_replayable(prefect_harness, lake: Lake):
    out = backtest_flow([CFG])
    ingest_bars(lake, synthetic_bars(("SYN2",), periods=200, seed=9))  # a newer bars version
    report = maintenance_flow(vacuum_retention_hours=0)
    assert {t["table"] for t in report["tables"]} >= {"bars", "runs", "trades"}
    bars_row = next(t for t in report["tables"] if t["table"] == "bars")
    assert bars_row["oldest_pinned_version"] == json.loads(lake.read("runs")["data_versions"][0])["bars"]
    # the stored run still replays exactly at its pinned version
    rows = regression_flow([{"run_id": out[0]["run_id"]}])
    assert all(r["ok"] for r in rows)


def test_old_failed_runs_expire(prefect_harness, lake: Lake):
    from backlake.config import BacktestConfig
    from backlake.runs.backtest import commit_outcomes, execute_run, plan_runs

    # the flow refuses a symbol the lake lacks before any run; a run that fails while it
    # executes is what gets recorded as failed (here: planned without the flow's checks)
    with pytest.raises(ConfigError, match="'NOPE' is not in the lake"):
        backtest_flow([{**CFG, "universe": ["NOPE"]}])
    assert lake.read("runs").is_empty()
    (planned,) = plan_runs(lake, [BacktestConfig.model_validate({**CFG, "universe": ["NOPE"]})])
    commit_outcomes(lake, [execute_run(lake, planned)])
    assert lake.read("runs")["status"].to_list() == ["failed"]
    report = maintain(lake, failed_retention_days=0, compact=False, checkpoint=False, vacuum_retention_hours=None)
    assert report.deleted_runs == 1
    assert lake.read("runs").height == 0 and lake.read("run_events").filter(pl.col("status") == "failed").height == 0


def test_cli_sweep_and_regress(prefect_harness, lake: Lake, tmp_path, capsys):
    from flows.cli import main as cli

    (tmp_path / "cfg.json").write_text(json.dumps(CFG))
    (tmp_path / "grid.json").write_text(json.dumps({"fast": [3, 5], "slow": [20, 40]}))
    sweep_args = ["sweep", str(tmp_path / "cfg.json"), "--grid", str(tmp_path / "grid.json")]
    assert cli([*sweep_args, "--progress", "always"]) == 0
    out, err = capsys.readouterr()
    assert "4 combination(s), 0 skipped" in out and "best by sharpe" in out and "parent_id = '" in out
    bar = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", err)  # the bar on stderr (drawn as for a terminal) only
    assert re.search(r"sweep \w{12} ━+ 1/1 chunks", bar) and "chunks" not in out
    (tmp_path / "bad.json").write_text(json.dumps({"fats": [3]}))
    assert cli(["sweep", str(tmp_path / "cfg.json"), "--grid", str(tmp_path / "bad.json")]) == 2
    assert "did you mean 'fast'" in capsys.readouterr().err
    run = backtest_flow([CFG])[0]["run_id"]
    (tmp_path / "goldens.json").write_text(json.dumps([{"run_id": run}]))
    assert cli(["regress", str(tmp_path / "goldens.json")]) == 0
    assert "all within tolerance" in capsys.readouterr().out


def test_dask_runner_gives_the_same_results_as_the_default(prefect_harness, local_settings, tmp_path):
    from flows._common import task_runner

    lakes = {}
    for name in ("thread", "dask"):
        uri = str(tmp_path / f"lake-{name}")
        lk = Lake(Settings(lake_uri=uri))
        ingest_bars(lk, synthetic_bars(("SYN0", "SYN1"), periods=500, seed=2))
        flow_obj = (sweep_flow if name == "thread"
                    else sweep_flow.with_options(task_runner=task_runner("dask", n_workers=2)))
        out = flow_obj(CFG, GRID, chunk_size=4, lake_uri=uri)
        lakes[name] = (out, lk.read("trials").drop("parent_id").sort("trial"))
    assert lakes["thread"][0] == lakes["dask"][0]
    assert lakes["thread"][1].equals(lakes["dask"][1])


def test_optimize_walk_forward_monte_carlo_flows(prefect_harness, lake: Lake, tmp_path, capsys):
    from flows.cli import main as cli
    from flows.research import monte_carlo_flow, optimize_flow, walk_forward_flow

    opt = optimize_flow(CFG, {"fast": {"low": 3, "high": 15}, "slow": {"low": 20, "high": 60, "step": 10}},
                        n_trials=8, seed=1)
    assert opt["n_trials"] == 8 and 0 <= opt["pbo"] <= 1
    trials = lake.read("trials", where={"parent_id": opt["run_id"]})
    assert trials.height == 8 and trials["flagged"].dtype == pl.Boolean
    seen: list[progress.Progress] = []
    with progress.listening(seen.append):
        wfr = walk_forward_flow(CFG, {"fast": [3, 8], "slow": [20, 40]}, train=200, test=100)
    assert [(e.job, e.done, e.total, e.unit) for e in seen] == [
        (f"walk-forward {wfr['run_id'][:12]}", k, 3, "windows") for k in range(4)]
    windows = lake.read("windows", where={"parent_id": wfr["run_id"]})
    assert windows.height == len(wfr["windows"]) == 3
    stitched = lake.read("equity", where={"run_id": wfr["run_id"]})
    assert stitched.height == 300 and stitched["equity"][0] == 10_000
    seen.clear()
    with progress.listening(seen.append):
        mcr = monte_carlo_flow(CFG, method="return_shuffle", n_paths=50, seeds=[0, 1])
    assert [(e.job, e.done, e.total, e.unit) for e in seen] == [
        (f"monte-carlo {mcr['run_id'][:12]}", k, 2, "seeds") for k in range(3)]
    assert mcr["n_paths"] == 100 and mcr["ci"]["total_return"][0] <= mcr["ci"]["total_return"][2]
    kinds = lake.read("runs").sort("kind")["kind"].to_list()
    assert kinds == ["monte_carlo", "optimize", "walk_forward"]
    # rerunning a job on the same data is the same run: nothing new
    before = lake.version("runs")
    assert monte_carlo_flow(CFG, method="return_shuffle", n_paths=50, seeds=[0, 1])["status"] == "existing"
    assert lake.version("runs") == before
    # bad input: clear errors before any task
    for call, msg in [
        (lambda: optimize_flow(CFG, {"fast": {"low": 3, "high": 9}}, n_trials=0), "n_trials"),
        (lambda: optimize_flow(CFG, {"fast": {"low": 3, "high": 9}}, objective="sharp"), "did you mean 'sharpe'"),
        (lambda: walk_forward_flow(CFG, {"fast": [3]}, train=5000, test=100), "train"),
        (lambda: monte_carlo_flow(CFG, seeds=[]), "seed"),
        (lambda: monte_carlo_flow(CFG, method="bootstrap"), "unknown method"),
    ]:
        with pytest.raises(Exception, match=msg):
            call()
    (tmp_path / "cfg.json").write_text(json.dumps(CFG))
    assert cli(["monte-carlo", str(tmp_path / "cfg.json"), "--paths", "20", "--seeds", "3", "--progress", "never"]) == 0
    out, err = capsys.readouterr()
    assert "probability of a drawdown" in out and "seeds" not in err
