"""Prefect flow ``sweep``: a parameter grid split into chunks fanned out as tasks (each one
``backlake.sweep`` call), trials committed in a few batches, the parent run last."""

from __future__ import annotations

import dataclasses
import datetime as dt
from typing import Any

from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from backlake import progress
from backlake.config import BacktestConfig
from backlake.runs.events import End, finish
from backlake.runs.sweep import (
    batches,
    commit_trial_batch,
    finish_sweep,
    plan_sweep,
    run_chunk,
    stored_summary,
)
from flows._common import (
    STOP_HOOKS,
    Opaque,
    PinnedBars,
    config_strategies,
    current_attempt,
    flow_run_namer,
    label_flow_run,
    lake_progress,
    open_lake,
    progress_job,
    publish_runs,
    start_runs,
)


@task(cache_policy=NO_CACHE, retries=2, retry_delay_seconds=1, task_run_name="sweep-chunk-{chunk}")
def sweep_chunk_task(plan: Opaque, chunk: int, bars: PinnedBars, lake_uri: str | None):
    """One chunk of combinations on the pinned bars (compute only)."""
    return run_chunk(open_lake(lake_uri), plan.value, chunk, bars.value)


@task(cache_policy=NO_CACHE, retries=3, retry_delay_seconds=2, task_run_name="commit-trials-{batch}")
def commit_trials_task(plan: Opaque, batch: int, frames: Opaque, lake_uri: str | None) -> bool:
    """Write one batch of trials (idempotent: a retry after the commit landed writes nothing)."""
    return commit_trial_batch(open_lake(lake_uri), plan.value, batch, frames.value)


@flow(name="sweep", flow_run_name=flow_run_namer("sweep"), **STOP_HOOKS)
def sweep_flow(
    config: dict[str, Any],
    grid: dict[str, list],
    chunk_size: int = 1000,
    objective: str = "sharpe",
    lake_uri: str | None = None,
) -> dict:
    """Sweep ``grid`` over ``config`` into the lake; returns the best parameters and counts."""
    label_flow_run("sweep", config_strategies(config))
    log = get_run_logger()
    cfg = BacktestConfig.model_validate(config)
    lake = open_lake(lake_uri)
    plan = plan_sweep(lake, cfg, grid, chunk_size=chunk_size, objective=objective)  # errors before any task
    if plan.done:
        log.info("sweep %s is already in the lake", plan.run_id)
        return _published(lake, stored_summary(lake, plan))
    started = dt.datetime.now(dt.UTC)
    claimed = start_runs(lake, [plan.run_id])
    if plan.run_id in claimed.busy:
        log.warning("sweep %s is being run by attempt %s; leaving it to that attempt", plan.run_id,
                    claimed.busy[plan.run_id])
        return {**stored_summary(lake, plan), "status": "running elsewhere"}
    gen = claimed.claimed[plan.run_id]
    log.info("sweep %s: %d combinations (%d skipped as invalid) in %d chunk(s)",
             plan.run_id, plan.report.n_valid, plan.report.n_skipped, len(plan.chunks))
    bars = plan.bars  # read once at the pinned version
    plan = dataclasses.replace(plan, bars=None)  # tasks get the bars through PinnedBars
    # Opaque: Prefect need not walk the plan (thousands of combinations) or frames for futures
    job, total = progress_job("sweep", plan.run_id), len(plan.chunks)
    pinned = PinnedBars(bars, lake.settings.lake_uri, cfg, plan.data_versions["bars"])
    frames: list = []
    try:
        with lake_progress(lake, "sweep", plan.run_id):  # the reports, for the runs page
            progress.report(job, 0, total, "chunks")
            futures = [sweep_chunk_task.submit(Opaque(plan), k, pinned, lake_uri) for k in range(total)]
            for b, chunk_ids in enumerate(batches(total)):
                batch_frames = []
                for k in chunk_ids:  # awaited in order: the bar counts the chunks finished so far
                    batch_frames.append(futures[k].result())
                    progress.report(job, k + 1, total, "chunks")
                commit_trials_task(Opaque(plan), b, Opaque(batch_frames), lake_uri)
                frames.extend(batch_frames)
                log.info("sweep %s: %d / %d chunks committed", plan.run_id, chunk_ids[-1] + 1, total)
    except Exception as e:
        finish(lake, [End(plan.run_id, gen, "failed", f"{type(e).__name__}: {e}")], current_attempt())
        raise
    return _published(lake, finish_sweep(lake, plan, frames, started, attempt=current_attempt(), generation=gen))


def _published(lake, out: dict) -> dict:
    """``out``, once the sweep's parent run is published as the flow run's artifact."""
    publish_runs(lake, "sweep", [out["run_id"]], details={
        "best by": out["objective"], "combinations": f"{out['n_valid']} valid, {out['n_skipped']} skipped"})
    return out


__all__ = ["sweep_flow"]
