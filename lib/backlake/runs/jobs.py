"""Research jobs as runs: optimize, walk-forward and Monte Carlo, each written as one run of its
own under the run protocol. Everything a job needs is checked and pinned by ``plan_*`` before
any task starts; the ``*_record`` functions turn the computed results into the record that
:func:`backlake.runs.commit.commit` writes. The flows only fan the work out between the two.

Example::

    job = plan_monte_carlo(lake, cfg, method="block_bootstrap", n_paths=500, seeds=[0, 1])
    base = run_backtest(job.config, job.bars, validated=True)
    paths = ...  # simulate_paths per seed, fanned out
    commit(lake, [monte_carlo_record(job, base, paths, started_at, generation)], attempt)
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field
from typing import Any, Literal

import polars as pl

from backlake.config import BacktestConfig
from backlake.engine import BacktestResult, run_backtest
from backlake.engine.core import prepare
from backlake.lake.store import Lake
from backlake.research import monte_carlo as mc, optimize as opt, walk_forward as wf
from backlake.research.overfitting import logit_distribution
from backlake.research.sweep import expand_grid
from backlake.runs.checks import check_configs
from backlake.runs.commit import RunRecord, completed_runs
from backlake.runs.data import pin
from backlake.runs.ids import run_id

__all__ = ["Job", "plan_job", "plan_optimize", "plan_walk_forward", "plan_monte_carlo", "stored_result",
           "optimize_record", "walk_forward_record", "monte_carlo_record"]


@dataclass(frozen=True)
class Job:
    """A research job, pinned: its run id, config, request (what besides the config makes
    the job), the bars it reads and their versions / fingerprint, whether it is done, and the
    job's own validated plan (a study plan, the windows...)."""

    run_id: str
    kind: str
    config: BacktestConfig
    request: dict[str, Any]
    bars: pl.DataFrame = field(repr=False)  # read from the lake: validated by ingest
    data_versions: dict[str, int]
    fingerprint: str
    done: bool
    plan: Any = None

    def record(self, started_at: dt.datetime, generation: int, **fields: Any) -> RunRecord:
        return RunRecord(run_id=self.run_id, kind=self.kind, config=self.config, data_versions=self.data_versions,
                         fingerprint=self.fingerprint, started_at=started_at, generation=generation,
                         request=self.request, **fields)


def plan_job(lake: Lake, kind: str, cfg: BacktestConfig, request: dict[str, Any]) -> Job:
    """Check ``cfg`` against the lake, pin the bars it reads and name the run from (kind,
    config + request, fingerprint)."""
    check_configs(lake, [cfg])
    pinned = pin(lake, cfg)
    rid = run_id(kind, {"config": cfg.model_dump(mode="json"), **request}, pinned.fingerprint)
    done = rid in completed_runs(lake, [rid])
    return Job(rid, kind, cfg, request, pinned.bars, pinned.versions, pinned.fingerprint, done)


def stored_result(lake: Lake, rid: str) -> dict[str, Any]:
    """What a flow returns for a job already completed in the lake."""
    row = lake.read("runs", where={"run_id": rid, "status": "completed"}).row(0, named=True)
    return {"run_id": rid, "status": "existing", "params": row["params"], "sharpe": row["sharpe"]}


# -- optimize ----------------------------------------------------------------------------------
def plan_optimize(
    lake: Lake, cfg: BacktestConfig, space: dict[str, Any], *, objective: str = "sharpe", n_trials: int = 50,
    sampler: str = "tpe", oos_fraction: float = 0.3, seed: int = 0, parallel: int = 1,
) -> Job:
    """Check the study and pin its data. For TPE the batch size (``parallel``) shapes the
    proposals, so it is part of the run's identity; grid and random studies do not depend on it."""
    opt.check_objective(objective)
    mc.check_whole_number("parallel", parallel, 1, "trials evaluated at once, e.g. 4")
    request: dict[str, Any] = {"space": space, "objective": objective, "n_trials": n_trials, "sampler": sampler,
                               "oos_fraction": oos_fraction, "seed": seed}
    if sampler == "tpe" and parallel > 1:
        request["parallel"] = parallel
    job = plan_job(lake, "optimize", cfg, request)
    plan = opt.plan_study(cfg, space, job.bars, objective=objective, n_trials=n_trials, sampler=sampler,
                          oos_fraction=oos_fraction, seed=seed, validated=True)
    return Job(**{**job.__dict__, "plan": plan})


def optimize_record(job: Job, study: opt.StudyResult, started_at: dt.datetime, generation: int) -> RunRecord:
    """The study's run: the best parameters re-run over the whole period (IS/OOS segments),
    the study's own figures as segment ``study``, every trial."""
    cfg = job.config
    best = {**cfg.params, **(study.best_params or {})}
    full = run_backtest(cfg.model_copy(update={"params": best}), job.bars, oos_start=study.split, validated=True)
    segments = {**full.segments, "study": study_metrics(study)}
    if study.pbo_detail is not None:  # the PBO's logit distribution: logit -> share of the CSCV splits
        segments["pbo_logits"] = dict(logit_distribution(study.pbo_detail))
    return job.record(started_at, generation, params=best, segments=segments,
                      headline=full.metrics, equity=full.equity, trades=full.trades, trials=study.trials_frame())


def study_metrics(study: opt.StudyResult) -> dict[str, float | None]:
    return {"pbo": study.pbo, "deflated_sharpe": study.deflated_sharpe, "n_trials": float(study.n_trials),
            "n_failed": float(study.n_failed), "n_pruned": float(study.n_pruned),
            "n_flagged": float(sum(bool(t.flagged) for t in study.trials))}


# -- walk-forward ------------------------------------------------------------------------------
def plan_walk_forward(
    lake: Lake, cfg: BacktestConfig, grid: dict[str, list[Any]], *, train: int | str, test: int | str,
    step: int | str | None = None, mode: Literal["rolling", "anchored"] = "rolling", objective: str = "sharpe",
) -> Job:
    """Check the grid, objective and windows, and pin the data; ``plan`` is the windows."""
    opt.check_objective(objective)
    request = {"grid": grid, "train": train, "test": test, "step": step, "mode": mode, "objective": objective}
    job = plan_job(lake, "walk_forward", cfg, request)
    expand_grid(cfg, grid)  # a grid with no valid combination fails here
    ts = prepare(cfg, job.bars, validated=True).ts.to_list()
    windows = wf.make_windows(ts, train=train, test=test, step=step, mode=mode)
    return Job(**{**job.__dict__, "plan": windows})


def walk_forward_record(job: Job, results: list[wf.WindowResult], started_at: dt.datetime,
                        generation: int) -> tuple[RunRecord, wf.WalkForwardResult]:
    """The stitched out-of-sample run and its windows."""
    res = wf.aggregate_windows(job.config, results, objective=job.request["objective"])
    rec = job.record(started_at, generation, params={"windows": len(results)}, segments={"oos": res.oos_metrics},
                     headline=res.oos_metrics, equity=res.equity.select("ts", "equity", "ret"),
                     windows=res.windows_frame(job.run_id))
    return rec, res


# -- Monte Carlo -------------------------------------------------------------------------------
def plan_monte_carlo(
    lake: Lake, cfg: BacktestConfig, *, method: str = "trade_bootstrap", n_paths: int = 1000,
    seeds: list[int] | None = None, block_size: int = 20, confidence: float = 0.95, ruin_drawdown: float = 0.5,
) -> Job:
    """Check every argument (the same checks as ``backlake.research.monte_carlo``) and pin the data."""
    seeds = mc.check_args(method=method, n_paths=n_paths, seeds=[0, 1, 2, 3] if seeds is None else seeds,
                          block_size=block_size, confidence=confidence, ruin_drawdown=ruin_drawdown)
    request = {"method": method, "n_paths": n_paths, "seeds": seeds, "block_size": block_size,
               "confidence": confidence, "ruin_drawdown": ruin_drawdown}
    return plan_job(lake, "monte_carlo", cfg, request)


def monte_carlo_record(job: Job, base: BacktestResult, paths: pl.DataFrame, started_at: dt.datetime,
                       generation: int) -> tuple[RunRecord, mc.McSummary]:
    """The base backtest with the paths' confidence intervals and probability of ruin."""
    r = job.request
    summ = mc.summarize(paths, confidence=r["confidence"], ruin_drawdown=r["ruin_drawdown"])
    ci = {f"{m}_{q}": v for m, (lo, med, hi) in summ.ci.items()
          for q, v in (("low", lo), ("median", med), ("high", hi))}
    trials = paths.with_row_index("trial").select(
        pl.col("trial").cast(pl.Int64),
        pl.format('{{"seed": {}, "path": {}}}', "seed", "path").alias("params"),
        "total_return", "sharpe", "max_drawdown",
    )
    rec = job.record(started_at, generation, params=job.config.params,
                     segments={"full": base.metrics, "mc": {**ci, "prob_ruin": summ.prob_ruin}},
                     headline=base.metrics, equity=base.equity, trades=base.trades, trials=trials)
    return rec, summ
