"""Prefect flows ``optimize``, ``walk_forward`` and ``monte_carlo``: thin wrappers that fan the
work out as tasks and write each job as a run of its own (see backlake.research.persist)."""

from __future__ import annotations

import datetime as dt
import importlib
from typing import Any

import polars as pl
from prefect import flow, get_run_logger, task
from prefect.cache_policies import NO_CACHE

from backlake import progress
from backlake.config import BacktestConfig
from backlake.engine import run_backtest
from backlake.errors import ConfigError
from backlake.lake.runs import load_bars
from backlake.research.optimize import check_objective
from backlake.research.persist import already_done, commit_research_run, research_run_id
from flows._common import Opaque, PinnedBars, STOP_HOOKS, open_lake, record_start

# the modules (backlake.research re-exports functions of the same names)
opt = importlib.import_module("backlake.research.optimize")
mc = importlib.import_module("backlake.research.monte_carlo")
wf = importlib.import_module("backlake.research.walk_forward")


def _start(lake, kind: str, cfg: BacktestConfig, request: dict) -> tuple[str, dict, pl.DataFrame]:
    versions = {"bars": lake.version("bars")}
    run_id = research_run_id(kind, {"config": cfg.model_dump(mode="json"), **request}, versions)
    bars = load_bars(lake, cfg, versions["bars"])
    return run_id, versions, bars


def _stored(lake, run_id: str) -> dict:
    row = lake.read("runs", where={"run_id": run_id}).row(0, named=True)
    return {"run_id": run_id, "status": "existing", "params": row["params"], "sharpe": row["sharpe"]}


def _results(futures: list, job: str, unit: str) -> list:
    """The futures' results in order, reporting ``job``'s progress (one ``unit`` per future)
    as each one is in."""
    out: list = []
    progress.report(job, 0, len(futures), unit)
    for f in futures:
        out.append(f.result())
        progress.report(job, len(out), len(futures), unit)
    return out


# -- optimize ----------------------------------------------------------------------------------
@task(cache_policy=NO_CACHE, task_run_name="trial-{number}")
def trial_task(cfg: BacktestConfig, params: dict, bars: PinnedBars, split: dt.datetime, objective: str, number: int):
    """One Optuna trial: a backtest over the bars, scored in- and out-of-sample."""
    return opt.evaluate_trial(cfg, params, bars.value, split=split, objective=objective, number=number)


@task(cache_policy=NO_CACHE)
def study_task(plan: Opaque, bars: PinnedBars, job: str):
    """The whole study in one task, one trial after another (``parallel=1``: no per-trial task
    overhead, which outweighs a backtest of a few milliseconds)."""
    return opt.run_study(plan.value, opt.sequential_evaluator(plan.value, bars.value),
                         on_trial=lambda rec, done, total: progress.report(job, done, total, "trials"))


@flow(name="optimize", **STOP_HOOKS)
def optimize_flow(config: dict[str, Any], space: dict[str, Any], objective: str = "sharpe", n_trials: int = 50,
                  sampler: str = "tpe", oos_fraction: float = 0.3, seed: int = 0, parallel: int = 1,
                  lake_uri: str | None = None) -> dict:
    """Optuna search with IS/OOS scores, overfitting flags, PBO and deflated Sharpe, into the lake.

    ``parallel=1`` (default) runs the study in one task, one trial after another. With
    ``parallel=N`` the study asks N trials at a time and runs them as N parallel tasks (TPE's
    constant liar keeps a batch's proposals apart): worth it when a trial takes far longer
    than a task's overhead, or on a Dask cluster. The batch size shapes TPE's proposals, so
    for TPE it is part of the run's identity: the same seed and ``parallel`` give the same
    study (grid and random studies do not depend on it)."""
    cfg = BacktestConfig.model_validate(config)
    check_objective(objective)
    if isinstance(parallel, bool) or not isinstance(parallel, int) or parallel < 1:
        raise ConfigError(f"parallel={parallel!r}: trials evaluated at once must be a whole number >= 1, e.g. 4")
    lake = open_lake(lake_uri)
    request = {"space": space, "objective": objective, "n_trials": n_trials, "sampler": sampler,
               "oos_fraction": oos_fraction, "seed": seed}
    if sampler == "tpe" and parallel > 1:  # only TPE's proposals depend on the batch size
        request["parallel"] = parallel
    run_id, versions, bars = _start(lake, "optimize", cfg, request)
    plan = opt.plan_study(cfg, space, bars, objective=objective, n_trials=n_trials, sampler=sampler,
                          oos_fraction=oos_fraction, seed=seed)  # every bad input fails before any task
    if already_done(lake, run_id):
        return _stored(lake, run_id)
    log = get_run_logger()
    started = dt.datetime.now(dt.timezone.utc)
    record_start(lake, [run_id])
    shared = PinnedBars(bars, lake.settings.lake_uri, cfg, versions["bars"])
    job = f"optimize {run_id[:12]}"

    def evaluate(jobs):
        futures = [trial_task.submit(cfg, params, shared, plan.split, objective, n) for n, params in jobs]
        return [f.result() for f in futures]

    def told(rec, done: int, total: int) -> None:
        progress.report(job, done, total, "trials")
        if done % parallel == 0 or done == total:  # a line per batch
            log.info("optimize %s: %d / %d trials", run_id, done, total)

    progress.report(job, 0, plan.n_trials, "trials")
    if parallel == 1:
        study = study_task.submit(Opaque(plan), shared, job).result()  # on the task runner (Dask too)
    else:
        study = opt.run_study(plan, evaluate, batch_size=parallel, on_trial=told)
    best = {**cfg.params, **(study.best_params or {})}
    full = run_backtest(cfg.model_copy(update={"params": best}), bars, oos_start=study.split)
    study_metrics = {"pbo": study.pbo, "deflated_sharpe": study.deflated_sharpe, "n_trials": float(study.n_trials),
                     "n_failed": float(study.n_failed), "n_pruned": float(study.n_pruned),
                     "n_flagged": float(sum(bool(t.flagged) for t in study.trials))}
    commit_research_run(
        lake, run_id=run_id, kind="optimize", cfg=cfg, request=request, data_versions=versions, started_at=started,
        params=best, segments={**full.segments, "study": study_metrics}, headline=full.metrics,
        equity=full.equity, trades=full.trades, trials=study.trials_frame(),
    )
    out = {"run_id": run_id, "best_params": study.best_params, "is_score": study.best.is_score if study.best else None,
           "oos_score": study.best.oos_score if study.best else None, **study_metrics}
    log.info("optimize %s: %s", run_id, out)
    return out


# -- walk-forward ------------------------------------------------------------------------------
@task(cache_policy=NO_CACHE, task_run_name="window-{window.index}")
def window_task(cfg: BacktestConfig, grid: dict, bars: PinnedBars, window, objective: str):
    """Optimise on one train window, evaluate on its test window."""
    return wf.evaluate_window(cfg, grid, bars.value, window, objective=objective)


@flow(name="walk_forward", **STOP_HOOKS)
def walk_forward_flow(config: dict[str, Any], grid: dict[str, list], train: int | str, test: int | str,
                      step: int | str | None = None, mode: str = "rolling", objective: str = "sharpe",
                      lake_uri: str | None = None) -> dict:
    """Rolling or anchored walk-forward; windows in parallel; the stitched OOS equity is a run."""
    cfg = BacktestConfig.model_validate(config)
    check_objective(objective)
    lake = open_lake(lake_uri)
    request = {"grid": grid, "train": train, "test": test, "step": step, "mode": mode, "objective": objective}
    run_id, versions, bars = _start(lake, "walk_forward", cfg, request)
    from backlake.engine.core import prepare
    from backlake.research.sweep import expand_grid

    expand_grid(cfg, grid)  # a grid with no valid combination fails before any task
    windows = wf.make_windows(prepare(cfg, bars).ts.to_list(), train=train, test=test, step=step, mode=mode)
    if already_done(lake, run_id):
        return _stored(lake, run_id)
    started = dt.datetime.now(dt.timezone.utc)
    record_start(lake, [run_id])
    pinned = PinnedBars(bars, lake.settings.lake_uri, cfg, versions["bars"])
    futures = [window_task.submit(cfg, grid, pinned, w, objective) for w in windows]
    results = _results(futures, f"walk-forward {run_id[:12]}", "windows")
    res = wf.aggregate_windows(cfg, results, objective=objective)
    commit_research_run(
        lake, run_id=run_id, kind="walk_forward", cfg=cfg, request=request, data_versions=versions,
        started_at=started, params={"windows": len(windows)}, segments={"oos": res.oos_metrics},
        headline=res.oos_metrics, equity=res.equity.select("ts", "equity", "ret"),
        windows=res.windows_frame(run_id),
    )
    return {"run_id": run_id, "windows": res.windows_frame(run_id).drop("parent_id").to_dicts(),
            "oos_sharpe": res.oos_metrics.get("sharpe"), "oos_total_return": res.oos_metrics.get("total_return")}


# -- Monte Carlo -------------------------------------------------------------------------------
@task(cache_policy=NO_CACHE, task_run_name="mc-seed-{seed}")
def paths_task(base: Opaque, bars: PinnedBars, method: str, n_paths: int, seed: int, block_size: int) -> pl.DataFrame:
    """One seed's paths."""
    return mc.simulate_paths(base.value, bars.value, method=method, n_paths=n_paths, seed=seed,
                             block_size=block_size).with_columns(pl.lit(seed).alias("seed"))


@flow(name="monte_carlo", **STOP_HOOKS)
def monte_carlo_flow(config: dict[str, Any], method: str = "trade_bootstrap", n_paths: int = 1000,
                     seeds: list[int] | None = None, block_size: int = 20, confidence: float = 0.95,
                     ruin_drawdown: float = 0.5, lake_uri: str | None = None) -> dict:
    """Resample a backtest per seed (fanned out); confidence intervals and probability of ruin."""
    cfg = BacktestConfig.model_validate(config)
    seeds = list(seeds) if seeds is not None else [0, 1, 2, 3]
    if method not in mc.METHODS:
        from backlake._suggest import unknown_name_message

        raise ConfigError(unknown_name_message("method", method, mc.METHODS))
    if n_paths < 1 or not seeds:
        raise ConfigError(f"n_paths={n_paths}, seeds={seeds}: need at least one path and one seed")
    if not 0 < confidence < 1:
        raise ConfigError(f"confidence={confidence} must be between 0 and 1, e.g. 0.95")
    lake = open_lake(lake_uri)
    request = {"method": method, "n_paths": n_paths, "seeds": seeds, "block_size": block_size,
               "confidence": confidence, "ruin_drawdown": ruin_drawdown}
    run_id, versions, bars = _start(lake, "monte_carlo", cfg, request)
    if already_done(lake, run_id):
        return _stored(lake, run_id)
    started = dt.datetime.now(dt.timezone.utc)
    base = run_backtest(cfg, bars)
    record_start(lake, [run_id])
    pinned = PinnedBars(bars, lake.settings.lake_uri, cfg, versions["bars"])
    futures = [paths_task.submit(Opaque(base), pinned, method, n_paths, s, block_size) for s in seeds]
    paths = pl.concat(_results(futures, f"monte-carlo {run_id[:12]}", "seeds"))
    summ = mc.summarize(paths, confidence=confidence, ruin_drawdown=ruin_drawdown)
    ci = {f"{m}_{q}": v for m, (lo, med, hi) in summ.ci.items() for q, v in (("low", lo), ("median", med), ("high", hi))}
    trials = paths.with_row_index("trial").select(
        pl.col("trial").cast(pl.Int64),
        pl.format('{{"seed": {}, "path": {}}}', "seed", "path").alias("params"),
        "total_return", "sharpe", "max_drawdown",
    )
    commit_research_run(
        lake, run_id=run_id, kind="monte_carlo", cfg=cfg, request=request, data_versions=versions,
        started_at=started, params=cfg.params, segments={"full": base.metrics, "mc": {**ci, "prob_ruin": summ.prob_ruin}},
        headline=base.metrics, equity=base.equity, trades=base.trades, trials=trials,
    )
    return {"run_id": run_id, "n_paths": summ.n_paths, "ci": {k: list(v) for k, v in summ.ci.items()},
            "prob_ruin": summ.prob_ruin}
