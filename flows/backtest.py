"""Prefect flow ``backtest``: one config or a list, each run a task, results batched into the lake."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from prefect import flow, get_run_logger, task, unmapped
from prefect.cache_policies import NO_CACHE

from backlake.config import BacktestConfig
from backlake.errors import BacktestError
from backlake.runs.backtest import PlannedRun, RunOutcome, execute_run, plan_runs, run_submitted
from backlake.runs.checks import check_configs
from backlake.runs.commit import commit
from flows._common import (
    STOP_HOOKS,
    Opaque,
    config_strategies,
    current_attempt,
    flow_run_namer,
    label_flow_run,
    open_lake,
    publish_runs,
    start_runs,
)


@task(cache_policy=NO_CACHE, task_run_name="backtest-{planned.run_id}")
def backtest_task(planned: PlannedRun, lake_uri: str | None) -> RunOutcome:
    """Run one backtest on its pinned data (pure compute; the flow writes the results)."""
    return execute_run(open_lake(lake_uri), planned)


@task(cache_policy=NO_CACHE, retries=3, retry_delay_seconds=2)
def commit_task(records: Opaque, lake_uri: str | None) -> None:
    """Write a batch of results (idempotent per run, so retries duplicate nothing)."""
    commit(open_lake(lake_uri), records.value, current_attempt())


@flow(name="backtest", flow_run_name=flow_run_namer("backtest"), **STOP_HOOKS)
def backtest_flow(configs: list[dict[str, Any]] | dict[str, Any], lake_uri: str | None = None) -> list[dict]:
    """Run backtests and record them; returns one summary dict per run (new or already stored)."""
    label_flow_run("backtest", config_strategies(configs))
    log = get_run_logger()
    raw = [configs] if isinstance(configs, dict) else list(configs)
    cfgs = [BacktestConfig.model_validate(c) for c in raw]  # ConfigError before any task starts
    lake = open_lake(lake_uri)
    check_configs(lake, cfgs)  # symbols, timeframes, dates, benchmark: ConfigError before any task or write
    plan = plan_runs(lake, cfgs)
    todo = list({p.run_id: p for p in plan if not p.done}.values())
    started = start_runs(lake, [p.run_id for p in todo])
    mine = [p for p in todo if p.run_id in started.claimed]
    log.info("%d run(s): %d new, %d already in the lake, %d being run by another attempt",
             len(plan), len(mine), sum(p.done for p in plan), len(started.busy))
    futures = backtest_task.map(mine, unmapped(lake_uri))
    outcomes = [f.result() for f in futures]
    commit_task(Opaque([o.record(started.claimed[o.planned.run_id]) for o in outcomes]), lake_uri)
    by_id = {o.planned.run_id: o for o in outcomes}
    out = []
    for p in plan:
        o = by_id.get(p.run_id)
        if p.done:
            status = "existing"
        elif p.run_id in started.busy:
            status = "running elsewhere"
        else:
            status = o.status if o else "unknown"
        if o is not None and o.error:
            log.error("run %s failed: %s", p.run_id, o.error)
        out.append({"run_id": p.run_id, "config_id": p.config.id, "status": status,
                    "error": o.error if o else None})
    publish_runs(lake, "backtest", [p.run_id for p in plan])
    failed = [r for r in out if r["status"] == "failed"]
    if failed:  # recorded in the lake as failed runs; the flow run itself ends Failed
        raise BacktestError(
            f"{len(failed)} of {len(out)} run(s) failed: "
            + "; ".join(f"{r['run_id']}: {r['error'].splitlines()[0]}" for r in failed)
        )
    return out


@flow(name="backtest", flow_run_name=flow_run_namer("backtest"), **STOP_HOOKS)
def submitted_backtest_flow(configs: dict[str, Any], owner: str, cancelled: Callable[[], bool] | None = None,
                            lake_uri: str | None = None) -> dict[str, Any]:
    """One backtest submitted from the dashboard by ``owner`` (the signed-in user, recorded as
    ``created_by`` and tagged ``user:<owner>``), in the dashboard's process: ``cancelled()``
    (the job queue's flag) is asked before it runs and before its commit, so a cancelled job
    writes nothing. Returns ``{"status", "run_id", "message"}``."""
    label_flow_run("backtest", config_strategies(configs), user=owner)
    cfg = BacktestConfig.model_validate(configs)
    lake = open_lake(lake_uri)
    status, run_id, message = run_submitted(lake, cfg, created_by=owner, cancelled=cancelled or (lambda: False),
                                            attempt=current_attempt())
    if run_id is not None and status != "cancelled":
        publish_runs(lake, "backtest", [run_id])
    get_run_logger().info("submitted by %s: %s %s %s", owner, status, run_id or "", message)
    return {"status": status, "run_id": run_id, "message": message}
