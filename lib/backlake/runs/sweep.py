"""A sweep as a lake run: plan (pin the data, split the grid into chunks), compute chunks
(each one ``backlake.sweep`` call, fanned out by the flow), commit the trials in a few
batches, then the parent ``runs`` row last.

- ``run_id``: the run protocol's id (``backlake.runs.ids``) of the config, grid and objective
  on the fingerprint of the bars it reads: the same sweep on the same data is the same run (a
  completed one is not recomputed).
- trials are committed in at most ``max_batches`` commits, each recorded as a Delta
  application transaction (``trials:<run_id>:<batch>``), so a retried or resumed sweep never
  writes a batch twice;
- the parent row (kind ``sweep``, params = the best combination, headline metrics of the best)
  lands last: until then the sweep is not visible in ``runs``.

Example::

    plan = plan_sweep(lake, cfg, {"fast": [5, 10], "slow": [20, 50]})
    frames = [run_chunk(lake, plan, k) for k in range(len(plan.chunks))]
    summary = finish_sweep(lake, plan, frames, started_at, attempt=attempt, generation=gen)
"""

from __future__ import annotations

import datetime as dt
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import polars as pl

from backlake._suggest import unknown_name_message
from backlake.config import BacktestConfig
from backlake.errors import ConfigError
from backlake.lake.store import Lake
from backlake.research.sweep import SWEEP_METRICS, SweepReport, expand_grid, sweep
from backlake.runs.checks import check_configs
from backlake.runs.commit import MAX_TRIAL_BATCHES, RunRecord, commit, completed_runs
from backlake.runs.data import pin
from backlake.runs.events import Attempt
from backlake.runs.ids import run_id

__all__ = ["SweepPlan", "plan_sweep", "run_chunk", "commit_trial_batch", "finish_sweep", "batches",
           "stored_summary", "summary", "SWEEP_OBJECTIVES"]

SWEEP_OBJECTIVES = ("sharpe", "sortino", "calmar", "total_return", "cagr")  # higher is better


@dataclass(frozen=True)
class SweepPlan:
    run_id: str
    config: BacktestConfig
    grid: dict[str, list[Any]]
    combos: list[dict[str, Any]]
    chunks: list[list[int]]  # indices into combos
    data_versions: dict[str, int]
    objective: str
    report: SweepReport
    fingerprint: str
    bars: pl.DataFrame | None = field(default=None, repr=False)  # the pinned bars (None once shipped to tasks)
    done: bool = False
    keys: list[str] = field(default_factory=list)


def plan_sweep(
    lake: Lake, cfg: BacktestConfig, grid: Mapping[str, Iterable[Any]], *, chunk_size: int = 1000,
    objective: str = "sharpe",
) -> SweepPlan:
    """Validate everything and pin the data before any work starts."""
    if objective not in SWEEP_OBJECTIVES:
        raise ConfigError(unknown_name_message("objective", objective, SWEEP_OBJECTIVES))
    if chunk_size < 1:
        raise ConfigError(f"chunk_size={chunk_size} must be at least 1")
    combos, report = expand_grid(cfg, grid)  # ConfigError when a value is no list or nothing is valid
    lists = {k: list(v) for k, v in grid.items()}
    check_configs(lake, [cfg])  # symbols, timeframe, dates, benchmark against the lake
    pinned = pin(lake, cfg)
    rid = run_id("sweep", {"config": cfg.model_dump(mode="json"), "grid": lists, "objective": objective},
                 pinned.fingerprint)
    chunks = [list(range(i, min(i + chunk_size, len(combos)))) for i in range(0, len(combos), chunk_size)]
    done = rid in completed_runs(lake, [rid])
    return SweepPlan(rid, cfg, lists, combos, chunks, pinned.versions, objective, report, pinned.fingerprint,
                     pinned.bars, done, list(lists))


def batches(n_chunks: int, max_batches: int = MAX_TRIAL_BATCHES) -> list[list[int]]:
    """Chunk indices grouped into at most ``max_batches`` commits (deterministic)."""
    per = max(1, math.ceil(n_chunks / max_batches))
    return [list(range(i, min(i + per, n_chunks))) for i in range(0, n_chunks, per)]


def run_chunk(lake: Lake, plan: SweepPlan, chunk: int, bars: pl.DataFrame | None = None) -> pl.DataFrame:
    """Compute one chunk (one ``backlake.sweep`` call) on the pinned bars; returns trial rows
    without parent_id: trial, the swept params, and SWEEP_METRICS."""
    if bars is None:
        bars = plan.bars if plan.bars is not None else pin(lake, plan.config, plan.data_versions["bars"]).bars
    idx = plan.chunks[chunk]
    combos = [plan.combos[i] for i in idx]
    df = sweep(plan.config, combos, bars, validated=True)
    return df.with_columns(pl.Series("trial", idx, dtype=pl.Int64))


def trials_rows(plan: SweepPlan, frames: Sequence[pl.DataFrame]) -> pl.DataFrame:
    df = pl.concat(frames, how="vertical_relaxed").sort("trial")
    base = {k: v for k, v in plan.config.params.items() if k not in plan.keys}
    params = df.select(
        pl.struct([*(pl.lit(v).alias(k) for k, v in base.items()), *plan.keys]).struct.json_encode()
    ).to_series()
    metrics = df.select(pl.struct(list(SWEEP_METRICS)).struct.json_encode()).to_series()
    return pl.DataFrame({
        "parent_id": plan.run_id, "trial": df["trial"], "params": params,
        "objective": df[plan.objective], "is_score": df[plan.objective], "oos_score": None,
        "overfit_score": None, "flagged": None,
        "total_return": df["total_return"], "sharpe": df["sharpe"], "max_drawdown": df["max_drawdown"],
        "n_trades": df["n_trades"].cast(pl.Int64), "metrics": metrics,
    }, schema_overrides={"oos_score": pl.Float64, "overfit_score": pl.Float64, "flagged": pl.Boolean})


def commit_trial_batch(lake: Lake, plan: SweepPlan, batch: int, frames: Sequence[pl.DataFrame]) -> bool:
    """Write one batch of trials once (idempotent on ``trials:<run_id>:<batch>``)."""
    return lake.append_once("trials", trials_rows(plan, frames), f"trials:{plan.run_id}:{batch}")


def best_trial(plan: SweepPlan, frames: Sequence[pl.DataFrame]) -> dict[str, Any]:
    df = pl.concat(frames, how="vertical_relaxed").filter(pl.col(plan.objective).is_not_null())
    if df.is_empty():
        return {}
    return df.sort([plan.objective, "trial"], descending=[True, False]).row(0, named=True)


def finish_sweep(
    lake: Lake, plan: SweepPlan, frames: Sequence[pl.DataFrame], started_at: dt.datetime, *, attempt: Attempt,
    generation: int, user: str | None = None,
) -> dict[str, Any]:
    """The parent ``runs`` row (last) and the completed event; returns the summary."""
    best = best_trial(plan, frames)
    best_params = {k: best[k] for k in plan.keys} if best else {}
    record = RunRecord(
        run_id=plan.run_id, kind="sweep", config=plan.config, data_versions=plan.data_versions,
        fingerprint=plan.fingerprint, started_at=started_at, generation=generation,
        params={**plan.config.params, **best_params}, request={"grid": plan.grid, "objective": plan.objective},
        headline={m: best.get(m) for m in SWEEP_METRICS} if best else {},
    )
    commit(lake, [record], attempt, created_by=user)
    return summary(plan, best)


def summary(plan: SweepPlan, best: dict[str, Any]) -> dict[str, Any]:
    return {
        "run_id": plan.run_id, "n_combinations": plan.report.n_combinations, "n_valid": plan.report.n_valid,
        "n_skipped": plan.report.n_skipped, "objective": plan.objective,
        "best_params": {k: best[k] for k in plan.keys} if best else None,
        "best": {m: best.get(m) for m in SWEEP_METRICS} if best else None,
    }


def stored_summary(lake: Lake, plan: SweepPlan) -> dict[str, Any]:
    """The summary of a sweep already completed in the lake (from its trials)."""
    trials = lake.read("trials", where={"parent_id": plan.run_id})
    if trials.is_empty():
        return summary(plan, {})
    best = trials.filter(pl.col("objective").is_not_null()).sort(
        ["objective", "trial"], descending=[True, False]).row(0, named=True)
    params = json.loads(best["params"])
    metrics = json.loads(best["metrics"])
    return summary(plan, {**{k: params[k] for k in plan.keys}, **metrics})
