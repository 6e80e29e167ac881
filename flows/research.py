"""Prefect flows ``optimize``, ``walk_forward`` and ``monte_carlo``: thin wrappers that check and
pin a job (``backlake.runs.jobs``, every check before any task), fan its work out as tasks and
commit it as one run (``backlake.runs.commit``)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

import backlake.research.monte_carlo as mc
import backlake.research.optimize as opt
import backlake.research.walk_forward as wf
from backlake import progress
from backlake.config import BacktestConfig
from backlake.engine import run_backtest
from backlake.runs import jobs
from backlake.runs.commit import commit
from backlake.runs.events import End, finish
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
    publish_runs,
    start_runs,
)


def _results(futures: list, job: str, unit: str) -> list:
    """The futures' results in order, reporting ``job``'s progress (one ``unit`` per future)
    as each one is in."""
    out: list = []
    progress.report(job, 0, len(futures), unit)
    for f in futures:
        out.append(f.result())
        progress.report(job, len(out), len(futures), unit)
    return out


def _run(lake, job: jobs.Job, work, details=None) -> dict:
    """Claim the job's run, do ``work(pinned_bars, started_at, generation)`` (which commits),
    and end the run ``failed`` if the work raises. The run, new or stored, is published as the
    flow run's artifact, with ``details(result)`` (the job's own figures)."""
    if job.done:
        out = jobs.stored_result(lake, job.run_id)
        publish_runs(lake, job.kind, [job.run_id])
        return out
    claimed = start_runs(lake, [job.run_id])
    if job.run_id in claimed.busy:
        return {"run_id": job.run_id, "status": "running elsewhere", "attempt": claimed.busy[job.run_id]}
    gen = claimed.claimed[job.run_id]
    started = dt.datetime.now(dt.UTC)
    pinned = PinnedBars(job.bars, lake.settings.lake_uri, job.config, job.data_versions["bars"])
    try:
        with lake_progress(lake, job.kind, job.run_id):  # the job's reports, for the runs page
            out = work(pinned, started, gen)
    except Exception as e:
        finish(lake, [End(job.run_id, gen, "failed", f"{type(e).__name__}: {e}")], current_attempt())
        raise
    publish_runs(lake, job.kind, [job.run_id], details=details(out) if details else None)
    return out


# -- optimize ----------------------------------------------------------------------------------
@task(cache_policy=NO_CACHE, task_run_name="trial-{number}")
def trial_task(cfg: BacktestConfig, params: dict, bars: PinnedBars, split: dt.datetime, objective: str, number: int):
    """One Optuna trial: a backtest over the bars, scored in- and out-of-sample."""
    return opt.evaluate_trial(cfg, params, bars.value, split=split, objective=objective, number=number,
                              validated=True)


@task(cache_policy=NO_CACHE)
def study_task(plan: Opaque, bars: PinnedBars, job: str):
    """The whole study in one task, one trial after another (``parallel=1``: no per-trial task
    overhead, which outweighs a backtest of a few milliseconds)."""
    return opt.run_study(plan.value, opt.sequential_evaluator(plan.value, bars.value),
                         on_trial=lambda rec, done, total: progress.report(job, done, total, "trials"))


@flow(name="optimize", flow_run_name=flow_run_namer("optimize"), **STOP_HOOKS)
def optimize_flow(config: dict[str, Any], space: dict[str, Any], objective: str = "sharpe", n_trials: int = 50,
                  sampler: str = "tpe", oos_fraction: float = 0.3, seed: int = 0, parallel: int = 1,
                  lake_uri: str | None = None) -> dict:
    """Optuna search with IS/OOS scores, overfitting flags, PBO and deflated Sharpe, into the lake.

    ``parallel=1`` (default) runs the study in one task, one trial after another. With
    ``parallel=N`` the study asks N trials at a time and runs them as N parallel tasks (TPE's
    constant liar keeps a batch's proposals apart): worth it when a trial takes far longer
    than a task's overhead, or on a Dask cluster. The same seed and ``parallel`` give the same
    study (for TPE the batch size is part of the run's identity)."""
    label_flow_run("optimize", config_strategies(config))
    cfg = BacktestConfig.model_validate(config)
    lake = open_lake(lake_uri)
    job = jobs.plan_optimize(lake, cfg, space, objective=objective, n_trials=n_trials, sampler=sampler,
                             oos_fraction=oos_fraction, seed=seed, parallel=parallel)
    log = get_run_logger()
    plan, name = job.plan, f"optimize {job.run_id[:12]}"

    def work(shared: PinnedBars, started: dt.datetime, gen: int) -> dict:
        def evaluate(batch):
            futures = [trial_task.submit(cfg, params, shared, plan.split, objective, n) for n, params in batch]
            return [f.result() for f in futures]

        def told(rec, done: int, total: int) -> None:
            progress.report(name, done, total, "trials")
            if done % parallel == 0 or done == total:  # a line per batch
                log.info("optimize %s: %d / %d trials", job.run_id, done, total)

        progress.report(name, 0, plan.n_trials, "trials")
        if parallel == 1:
            study = study_task.submit(Opaque(plan), shared, name).result()  # on the task runner (Dask too)
        else:
            study = opt.run_study(plan, evaluate, batch_size=parallel, on_trial=told)
        commit(lake, [jobs.optimize_record(job, study, started, gen)], current_attempt())
        out = {"run_id": job.run_id, "best_params": study.best_params,
               "is_score": study.best.is_score if study.best else None,
               "oos_score": study.best.oos_score if study.best else None, **jobs.study_metrics(study)}
        log.info("optimize %s: %s", job.run_id, out)
        return out

    return _run(lake, job, work, lambda out: {
        "objective": objective, "IS score": out.get("is_score"), "OOS score": out.get("oos_score"),
        "PBO": out.get("pbo"), "deflated Sharpe": out.get("deflated_sharpe"),
        **{k: int(out[n]) for k, n in (("trials", "n_trials"), ("flagged trials", "n_flagged"))
           if out.get(n) is not None}})


# -- walk-forward ------------------------------------------------------------------------------
@task(cache_policy=NO_CACHE, task_run_name="window-{window.index}")
def window_task(cfg: BacktestConfig, grid: dict, bars: PinnedBars, window, objective: str):
    """Optimise on one train window, evaluate on its test window."""
    return wf.evaluate_window(cfg, grid, bars.value, window, objective=objective, validated=True)


@flow(name="walk_forward", flow_run_name=flow_run_namer("walk_forward"), **STOP_HOOKS)
def walk_forward_flow(config: dict[str, Any], grid: dict[str, list], train: int | str, test: int | str,
                      step: int | str | None = None, mode: str = "rolling", objective: str = "sharpe",
                      lake_uri: str | None = None) -> dict:
    """Rolling or anchored walk-forward; windows in parallel; the stitched OOS equity is a run."""
    label_flow_run("walk_forward", config_strategies(config))
    cfg = BacktestConfig.model_validate(config)
    lake = open_lake(lake_uri)
    job = jobs.plan_walk_forward(lake, cfg, grid, train=train, test=test, step=step, mode=mode, objective=objective)

    def work(pinned: PinnedBars, started: dt.datetime, gen: int) -> dict:
        futures = [window_task.submit(cfg, grid, pinned, w, objective) for w in job.plan]
        results = _results(futures, f"walk-forward {job.run_id[:12]}", "windows")
        record, res = jobs.walk_forward_record(job, results, started, gen)
        commit(lake, [record], current_attempt())
        return {"run_id": job.run_id, "windows": res.windows_frame(job.run_id).drop("parent_id").to_dicts(),
                "oos_sharpe": res.oos_metrics.get("sharpe"), "oos_total_return": res.oos_metrics.get("total_return")}

    return _run(lake, job, work, lambda out: {
        "windows": len(out.get("windows") or []), "mode": mode, "objective": objective,
        "figures": "stitched out-of-sample"})


# -- Monte Carlo -------------------------------------------------------------------------------
@task(cache_policy=NO_CACHE, task_run_name="mc-seed-{seed}")
def paths_task(base: Opaque, bars: PinnedBars, method: str, n_paths: int, seed: int, block_size: int) -> pl.DataFrame:
    """One seed's paths."""
    return mc.simulate_paths(base.value, bars.value, method=method, n_paths=n_paths, seed=seed,
                             block_size=block_size).with_columns(pl.lit(seed).alias("seed"))


@flow(name="monte_carlo", flow_run_name=flow_run_namer("monte_carlo"), **STOP_HOOKS)
def monte_carlo_flow(config: dict[str, Any], method: str = "trade_bootstrap", n_paths: int = 1000,
                     seeds: list[int] | None = None, block_size: int = 20, confidence: float = 0.95,
                     ruin_drawdown: float = 0.5, lake_uri: str | None = None) -> dict:
    """Resample a backtest per seed (fanned out); confidence intervals and probability of ruin."""
    label_flow_run("monte_carlo", config_strategies(config))
    cfg = BacktestConfig.model_validate(config)
    lake = open_lake(lake_uri)
    job = jobs.plan_monte_carlo(lake, cfg, method=method, n_paths=n_paths, seeds=seeds, block_size=block_size,
                                confidence=confidence, ruin_drawdown=ruin_drawdown)

    def work(pinned: PinnedBars, started: dt.datetime, gen: int) -> dict:
        base = run_backtest(cfg, job.bars, validated=True)
        futures = [paths_task.submit(Opaque(base), pinned, method, n_paths, s, block_size)
                   for s in job.request["seeds"]]
        paths = pl.concat(_results(futures, f"monte-carlo {job.run_id[:12]}", "seeds"))
        record, summ = jobs.monte_carlo_record(job, base, paths, started, gen)
        commit(lake, [record], current_attempt())
        return {"run_id": job.run_id, "n_paths": summ.n_paths, "ci": {k: list(v) for k, v in summ.ci.items()},
                "prob_ruin": summ.prob_ruin}

    return _run(lake, job, work, lambda out: {
        "method": method, "paths": out.get("n_paths"), "probability of ruin": out.get("prob_ruin"),
        **{f"{m.replace('_', ' ')} CI ({confidence:.0%})": " / ".join(_pct(x) for x in v)
           for m, v in (out.get("ci") or {}).items() if m in ("total_return", "max_drawdown")}})


def _pct(x) -> str:
    return "–" if x is None else f"{x:.2%}"
